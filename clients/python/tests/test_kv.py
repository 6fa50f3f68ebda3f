"""The KV store and locks (cluster.kv, cluster.lock) against real agents
built from this tree (three-agent clusters, as test_agents starts them),
and the event streams' wire format against a fake agent."""

import asyncio
import json
import os
import signal
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import qcluster
from qcluster import AsyncQCluster, QCluster

from .support import MEASURED, cluster_configs, wait_for
from .test_agents import AgentsTestCase


def bounded(test: unittest.TestCase, w: "qcluster.KVWatch", seconds: float = 60) -> "qcluster.KVWatch":
    """Closes w after seconds: a missing event fails the test (next()
    raises StopIteration) instead of hanging it."""
    t = threading.Timer(seconds, w.close)
    t.daemon = True
    t.start()
    test.addCleanup(t.cancel)
    test.addCleanup(w.close)
    return w


class KVTest(AgentsTestCase):
    def three(self, **extra: Any) -> List[QCluster]:
        clusters = self.start(3, **extra)
        wait_for(lambda: self.agreed(clusters), 30, "one agreed leader")
        return clusters

    def test_put_get_list_across_agents(self) -> None:
        a, b, c = self.three()
        res = a.kv.put("config/db", b"hello")
        self.assertIsNone(res.prev)
        assert res.kv is not None
        self.assertEqual((res.kv.key, res.kv.value, res.kv.version), ("config/db", b"hello", 1))
        self.assertEqual(res.kv.create_revision, res.kv.mod_revision)
        self.assertEqual(res.revision, res.kv.mod_revision)
        self.assertIsNone(res.kv.owner)

        got = b.kv.get("config/db")  # linearizable: through the leader
        self.assertEqual(got, res.kv)
        wait_for(lambda: self._stale(c, "config/db") == res.kv, 10, "the key in c's own copy")

        res2 = c.kv.put("config/db", "wörld")  # a str goes as UTF-8
        assert res2.kv is not None and res2.prev is not None
        self.assertEqual(res2.prev, res.kv)
        self.assertEqual(res2.kv.value, "wörld".encode("utf-8"))
        self.assertEqual(res2.kv.version, 2)
        self.assertEqual(res2.kv.create_revision, res.kv.create_revision)
        self.assertGreater(res2.kv.mod_revision, res.kv.mod_revision)
        self.assertEqual(a.kv.get("config/db").value, "wörld".encode("utf-8"))

        # Keys with slashes, empty segments and characters that need
        # escaping; an empty value; a binary value.
        odd = ["a//b", "/lead", "trail/", "sp ace?x=1&y#z%2F", "ü/…", ".", "..", "a/../b", "a/./b", "%2E"]
        for i, k in enumerate(odd):
            a.kv.put(k, bytes([i, 0, 255]))
        for i, k in enumerate(odd):
            self.assertEqual(b.kv.get(k).value, bytes([i, 0, 255]), k)
        a.kv.put("config/empty", b"")
        self.assertEqual(c.kv.get("config/empty").value, b"")

        items, rev = b.kv.list("config/")
        self.assertEqual([kv.key for kv in items], ["config/db", "config/empty"])
        self.assertGreaterEqual(rev, items[-1].mod_revision)
        everything = c.kv.list()
        self.assertEqual(sorted(kv.key for kv in everything.items), sorted(odd + ["config/db", "config/empty"]))
        self.assertEqual(c.kv.list("nothing/").items, [])
        wait_for(lambda: len(c.kv.list("config/", stale=True).items) == 2, 10, "c's own copy to list both")

        with self.assertRaises(qcluster.KeyNotFoundError) as cm:
            b.kv.get("config/none")
        self.assertEqual((cm.exception.status, cm.exception.code), (404, "key_not_found"))
        with self.assertRaises(qcluster.TooLargeError):
            a.kv.put("big", b"x" * ((1 << 20) + 1))
        with self.assertRaises(ValueError):
            a.kv.get("")
        with self.assertRaises(TypeError):
            a.kv.put("k", 42)  # type: ignore[arg-type]

    def bounded(self, w: "qcluster.KVWatch", seconds: float = 60) -> "qcluster.KVWatch":
        return bounded(self, w, seconds)

    @staticmethod
    def _stale(c: QCluster, key: str) -> Optional[qcluster.KeyValue]:
        try:
            return c.kv.get(key, stale=True)
        except qcluster.KeyNotFoundError:
            return None

    def test_compare_and_swap(self) -> None:
        a, b, c = self.three()
        first = a.kv.put("job/owner", b"a", cas=0)  # create only if absent
        assert first.kv is not None
        with self.assertRaises(qcluster.CompareFailedError) as cm:
            b.kv.put("job/owner", b"b", cas=0)
        e = cm.exception
        self.assertEqual((e.status, e.code), (409, "compare_failed"))
        self.assertEqual(e.kv, first.kv, "the error carries the key as it is")

        second = b.kv.put("job/owner", b"b", cas=first.kv.mod_revision)
        assert second.kv is not None
        self.assertEqual(second.kv.value, b"b")
        with self.assertRaises(qcluster.CompareFailedError) as cm:
            c.kv.put("job/owner", b"c", cas=first.kv.mod_revision)  # a stale revision
        self.assertEqual(cm.exception.kv, second.kv)
        with self.assertRaises(qcluster.CompareFailedError) as cm:
            c.kv.put("job/absent", b"c", cas=7)
        self.assertIsNone(cm.exception.kv)

        with self.assertRaises(qcluster.CompareFailedError):
            c.kv.delete("job/owner", cas=first.kv.mod_revision)
        self.assertEqual(a.kv.get("job/owner"), second.kv)
        gone = c.kv.delete("job/owner", cas=second.kv.mod_revision)
        self.assertEqual(gone.prev, second.kv)
        self.assertIsNone(gone.kv)
        with self.assertRaises(qcluster.KeyNotFoundError):
            a.kv.delete("job/owner")
        with self.assertRaises(ValueError):
            a.kv.put("k", b"", cas=-1)

    def test_ephemeral_key_goes_when_its_member_leaves(self) -> None:
        a, b, c = self.three()
        res = b.kv.put("services/b", b"127.0.0.1:8002", ephemeral=True)
        assert res.kv is not None
        self.assertEqual(res.kv.owner, b.identifier)
        persistent = b.kv.put("services/b-notes", b"stays")
        assert persistent.kv is not None
        self.assertIsNone(persistent.kv.owner)
        self.assertEqual(a.kv.get("services/b").owner, b.identifier)

        w = self.bounded(a.kv.watch("services/", from_revision=persistent.revision + 1))
        b.leave()

        def gone() -> bool:
            try:
                a.kv.get("services/b")
                return False
            except qcluster.KeyNotFoundError:
                return True

        wait_for(gone, 30, "the ephemeral key deleted after its member left")
        ev = next(w)
        self.assertEqual((ev.type, ev.kv.key), ("delete", "services/b"))
        self.assertEqual(c.kv.get("services/b-notes").value, b"stays")

    def test_watch_in_order_and_resumed_without_loss(self) -> None:
        a, b, c = self.three()
        start = a.kv.put("other", b"x").revision
        revs = []
        for i in range(5):
            revs.append(a.kv.put("w/{}".format(i), str(i)).revision)
        revs.append(b.kv.delete("w/0").revision)

        # From a revision: every change under the prefix, in order.
        with self.bounded(c.kv.watch("w/", from_revision=start)) as w:
            got = [next(w) for _ in range(6)]
        self.assertEqual([ev.revision for ev in got], revs)
        self.assertEqual([ev.type for ev in got], ["put"] * 5 + ["delete"])
        self.assertEqual([ev.kv.key for ev in got], ["w/0", "w/1", "w/2", "w/3", "w/4", "w/0"])
        self.assertEqual(got[1].kv.value, b"1")
        assert got[5].prev is not None
        self.assertEqual(got[5].prev.value, b"0")
        self.assertEqual(got[5].kv.mod_revision, revs[5])

        # From now, across broken connections: nothing lost or repeated.
        w = self.bounded(b.kv.watch("n/"), 90)
        seen = []  # type: List[qcluster.KVEvent]
        done = threading.Event()

        def read() -> None:
            for ev in w:
                seen.append(ev)
                if len(seen) == 30:
                    break
            done.set()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        want = []
        breaks = 0
        for i in range(30):
            want.append(c.kv.put("n/{}".format(i % 7), str(i)).revision)
            if i % 6 == 3:
                s = w._stream
                if s is not None:
                    s.interrupt()  # as a broken network would
                    breaks += 1
        self.assertTrue(done.wait(60), "the watch delivered {} of 30 events".format(len(seen)))
        self.assertGreater(breaks, 0)
        self.assertEqual([ev.revision for ev in seen], want)
        self.assertEqual([ev.kv.value for ev in seen], [str(i).encode() for i in range(30)])
        self.assertEqual(w.revision, want[-1])
        w.close()
        t.join(10)

        # close() from another thread ends an iteration blocked in it.
        w2 = a.kv.watch("quiet/")
        threading.Timer(0.2, w2.close).start()
        self.assertEqual(list(w2), [])

    def test_watch_survives_an_agent_restart_of_the_cluster_leader(self) -> None:
        # The watching process's own agent stays; the leader changes under
        # it: the stream goes on.
        clusters = self.three()
        lead = wait_for(lambda: self.agreed(clusters), 30, "one agreed leader")
        watcher = next(c for c in clusters if c is not lead)
        writer = next(c for c in clusters if c is not lead and c is not watcher)
        w = self.bounded(watcher.kv.watch("t/"))
        r1 = writer.kv.put("t/1", b"1").revision
        lead.resign()
        r2 = writer.kv.put("t/2", b"2").revision
        self.assertEqual([next(w).revision, next(w).revision], [r1, r2])

    def test_lock_exclusion_tokens_and_release(self) -> None:
        a, b, c = self.three()
        order = []  # type: List[str]
        with a.lock("backup") as la:
            self.assertTrue(la.held)
            self.assertGreater(la.token, 0)
            with self.assertRaises(qcluster.TimeoutError) as cm:
                b.lock("backup", timeout=0.5)
            self.assertEqual((cm.exception.status, cm.exception.code), (408, "timeout"))
            self.assertIsInstance(cm.exception, TimeoutError)
            self.assertIn("backup", str(cm.exception))

            # c waits for it meanwhile.
            got = {}  # type: Dict[str, Any]

            def wait_c() -> None:
                lk = c.lock("backup", timeout=60)
                order.append("c acquired")
                got["lock"] = lk

            t = threading.Thread(target=wait_c, daemon=True)
            t.start()
            other = b.lock("other", timeout=10)  # another name is free
            other.release()
            time.sleep(0.3)  # let c's request wait at the agent (no synchronization depends on it)
            self.assertNotIn("lock", got, "c took the lock while a held it")
            order.append("a releases")
        self.assertFalse(la.held)
        self.assertFalse(la.lost.is_set(), "a release is not a loss")
        t.join(60)
        lc = got["lock"]
        self.assertEqual(order, ["a releases", "c acquired"])
        self.assertGreater(lc.token, la.token, "a later holder has a larger fencing token")
        self.assertFalse(lc.lost.is_set())
        lc.release()
        lc.release()  # idempotent
        with b.lock("backup", timeout=30) as lb:
            self.assertGreater(lb.token, lc.token)
        self.assertIn("released", repr(lb))

    def test_lock_lost_when_the_holders_agent_stops(self) -> None:
        a, b, c = self.three()
        lk = b.lock("job")
        self.addCleanup(lk.release)
        self.assertFalse(lk.lost.wait(0.2))
        pid = b.agent_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        self.assertTrue(lk.lost.wait(30), "lost not set after the agent was killed")
        MEASURED.append("lock lost noticed {:.0f} ms after SIGKILL of its agent".format((time.monotonic() - t0) * 1000))
        self.assertFalse(lk.held)
        self.assertIsNotNone(lk.lost_reason)

    def test_lock_lost_when_the_holder_is_removed(self) -> None:
        clusters = self.three()
        lead = wait_for(lambda: self.agreed(clusters), 30, "one agreed leader")
        holder = next(c for c in clusters if c is not lead)
        third = next(c for c in clusters if c is not lead and c is not holder)
        lk = holder.lock("job")
        self.addCleanup(lk.release)
        # Removing the holder's member deletes its lock key: the agent says
        # "lost" (or its stream ends as it stops).
        lead._request("DELETE", "/v1/peers/" + (holder.identifier or ""))
        self.assertTrue(lk.lost.wait(30), "lost not set after the holder was removed")
        # Normally the agent's "lost" event (the stream breaking, should
        # the removed agent stop first, is a loss too).
        self.assertIsNotNone(lk.lost_reason)
        with third.lock("job", timeout=30) as lt:
            self.assertGreater(lt.token, lk.token)

    def test_session_keys_go_when_the_session_ends(self) -> None:
        a, b, _ = self.three()
        with self.assertRaises(qcluster.BadRequestError):
            a.kv.session(0.001)
        s = a.kv.session(1.0)  # renewed by its thread
        self.addCleanup(s.close)
        res = b.kv.put("svc/kept", b"1", session=s)
        assert res.kv is not None
        self.assertEqual(res.kv.session, s.id)
        manual = a.kv.session(1.0, keepalive=False)
        b.kv.put("svc/left", b"1", session=manual.id)
        self.assertEqual({x["id"] for x in b.kv.sessions()}, {s.id, manual.id})
        # The session nobody renews expires and takes its key along; the
        # renewed one stays (3 TTLs and more by then).
        wait_for(lambda: not self._exists(a, "svc/left"), 30, "the unrenewed session's key to go")
        with self.assertRaises(qcluster.SessionNotFoundError):
            manual.renew()
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            self.assertFalse(s.done.is_set())
            self.assertTrue(self._exists(a, "svc/kept"))
            time.sleep(0.1)
        # A lock bound to a session nobody renews: released when it
        # expires; the next holder gets a greater token.
        short = a.kv.session(1.0, keepalive=False)
        lk = a.lock("job", session=short)
        self.assertTrue(lk.held)
        self.assertEqual(lk.session, short.id)
        with b.lock("job", timeout=60) as lk2:
            self.assertGreater(lk2.token, lk.token)
        kept = a.lock("job", session=s)  # in the renewed session: held
        self.assertIs(kept.lost, s.done)
        kept.release()
        kept.release()
        s.close()
        self.assertTrue(s.done.is_set())
        self.assertFalse(self._exists(a, "svc/kept"))
        with self.assertRaises(qcluster.SessionNotFoundError):
            b.kv.put("svc/late", b"1", session=s)

    def _exists(self, c: QCluster, key: str) -> bool:
        try:
            c.kv.get(key)
            return True
        except qcluster.KeyNotFoundError:
            return False

    def test_async(self) -> None:
        conf = cluster_configs(1, self.dir)[0]

        async def main() -> None:
            cluster = await AsyncQCluster.create(**conf)
            async with cluster:
                await cluster.wait_for_leader(timeout=30)
                res = await cluster.kv.put("a/1", b"one", cas=0)
                self.assertEqual((await cluster.kv.get("a/1")).value, b"one")
                items, rev = await cluster.kv.list("a/")
                self.assertEqual([kv.key for kv in items], ["a/1"])
                with self.assertRaises(qcluster.CompareFailedError):
                    await cluster.kv.put("a/1", b"x", cas=0)
                async with cluster.kv.watch("a/", from_revision=res.revision) as w:
                    await cluster.kv.put("a/2", "two")
                    await cluster.kv.delete("a/1")
                    evs = []
                    async for ev in w:
                        evs.append((ev.type, ev.kv.key))
                        if len(evs) == 3:
                            break
                self.assertEqual(evs, [("put", "a/1"), ("put", "a/2"), ("delete", "a/1")])
                async with cluster.lock("L") as lk:
                    self.assertGreater(lk.token, rev)
                    with self.assertRaises(qcluster.TimeoutError):
                        await cluster.lock("L", timeout=0.3)
                self.assertFalse(lk.held)
                lk2 = await cluster.lock("L", timeout=10)
                self.assertGreater(lk2.token, lk.token)
                lk2.release()

        asyncio.run(asyncio.wait_for(main(), 120))


class _SSEHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script = None  # type: Any

    def log_message(self, *args: Any) -> None:
        pass

    def handle_any(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/v1/status"):  # the SDK's poller: not what these tests look at
            raw = b'{"error": "fake", "code": "unavailable"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        self.server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})  # type: ignore[attr-defined]
        status, blocks = self.server.script(len(self.server.requests), self.command, self.path, dict(self.headers))  # type: ignore[attr-defined]
        if status != 200:
            raw = json.dumps(blocks).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("X-QCluster-Index", "41")
        self.send_header("Connection", "close")
        self.end_headers()
        for b in blocks:
            self.wfile.write(b.encode())
            self.wfile.flush()
        # then the stream ends: the client sees a break

    do_GET = do_POST = handle_any


class FakeStreamTest(unittest.TestCase):
    """What goes on the wire: Last-Event-ID on reconnection, the token and
    Content-Type of a lock request, and the compacted event."""

    def serve(self, script: Any) -> QCluster:
        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        srv = Server(("127.0.0.1", 0), _SSEHandler)
        srv.requests = []  # type: ignore[attr-defined]
        srv.script = script  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        self.srv = srv
        c = QCluster.connect("http://127.0.0.1:{}".format(srv.server_address[1]), token="s3cret")
        self.addCleanup(c.close)
        return c

    @staticmethod
    def ev(rev: int, key: str, eid: str) -> str:
        kv = {"key": key, "value": "eA==", "create_revision": rev, "mod_revision": rev, "version": 1}
        return "id: {}\nevent: put\ndata: {}\n\n".format(eid, json.dumps({"type": "put", "revision": rev, "kv": kv}))

    def test_watch_resumes_with_last_event_id_then_compacted(self) -> None:
        def script(n: int, method: str, path: str, headers: Dict[str, str]) -> Any:
            if n == 1:
                return 200, ["retry: 1000\n\n", self.ev(42, "k/a", "42"), ": keep-alive\n\n", self.ev(43, "k/b", "43")]
            if n == 2:
                return 200, ["retry: 1000\n\n", self.ev(43, "k/c", "43.1")]
            return 200, ['event: compacted\ndata: {"oldest": 50}\n\n']

        c = self.serve(script)
        w = bounded(self, c.kv.watch("k/"), 30)
        self.assertEqual([next(w).kv.key for _ in range(3)], ["k/a", "k/b", "k/c"])
        with self.assertRaises(qcluster.CompactedError) as cm:
            next(w)
        self.assertEqual(cm.exception.oldest, 50)
        reqs = self.srv.requests  # type: ignore[attr-defined]
        self.assertEqual(reqs[0]["path"], "/v1/kv-watch?prefix=k%2F")
        self.assertNotIn("Last-Event-ID", reqs[0]["headers"])
        self.assertEqual(reqs[1]["headers"].get("Last-Event-ID"), "43")
        self.assertEqual(reqs[2]["headers"].get("Last-Event-ID"), "43.1")
        self.assertEqual(reqs[0]["headers"].get("Authorization"), "Bearer s3cret")
        with self.assertRaises(StopIteration):
            next(w)

    def test_watch_refuses_an_event_that_is_not_a_kv_event(self) -> None:
        bad = 'id: 5\nevent: put\ndata: {"type":"put","revision":5,"kv":{"key":"k","value":"aG!k="}}\n\n'
        c = self.serve(lambda n, m, p, h: (200, ["retry: 1000\n\n", bad]))
        w = bounded(self, c.kv.watch(), 30)
        with self.assertRaises(qcluster.ProtocolError):
            next(w)
        with self.assertRaises(StopIteration):
            next(w)

    def test_watch_from_a_compacted_revision_raises_at_once(self) -> None:
        c = self.serve(lambda n, m, p, h: (200, ['event: compacted\ndata: {"oldest": 9}\n\n']))
        with self.assertRaises(qcluster.CompactedError) as cm:
            c.kv.watch(from_revision=3)
        self.assertEqual(cm.exception.oldest, 9)
        self.assertEqual(self.srv.requests[0]["path"], "/v1/kv-watch?from=3")  # type: ignore[attr-defined]

    def test_watch_from_now_goes_on_from_the_index(self) -> None:
        def script(n: int, method: str, path: str, headers: Dict[str, str]) -> Any:
            if n == 1:
                return 200, ["retry: 1000\n\n"]  # ends before any event
            return 200, ["retry: 1000\n\n", self.ev(42, "x", "42"), ": idle\n\n"]

        c = self.serve(script)
        w = bounded(self, c.kv.watch(), 30)
        self.assertEqual(next(w).revision, 42)
        self.assertEqual(self.srv.requests[1]["path"], "/v1/kv-watch?from=42")  # type: ignore[attr-defined]
        w.close()

    def test_lock_request_and_lost(self) -> None:
        def script(n: int, method: str, path: str, headers: Dict[str, str]) -> Any:
            if n == 1:
                return 408, {"error": "held by another", "code": "timeout"}
            return 200, [
                "retry: 1000\n\n",
                'event: acquired\ndata: {"name":"a b/c","token":12}\n\n',
                'event: lost\ndata: {"name":"a b/c","token":12}\n\n',
            ]

        c = self.serve(script)
        lk = c.lock("a b/c")  # no timeout: a 408 is asked again
        self.assertEqual(lk.token, 12)
        self.assertTrue(lk.lost.wait(10))
        self.assertEqual(lk.lost_reason, "the agent says the lock is lost")
        reqs = self.srv.requests  # type: ignore[attr-defined]
        self.assertEqual(len(reqs), 2)
        r = reqs[1]
        self.assertEqual(r["method"], "POST")
        self.assertTrue(r["path"].startswith("/v1/locks/a%20b%2Fc?wait="), r["path"])
        self.assertEqual(r["headers"].get("Content-Type"), "application/json")
        self.assertEqual(r["headers"].get("Authorization"), "Bearer s3cret")
        self.assertEqual(r["body"], b"{}")
        lk.release()

    def test_lock_refusals(self) -> None:
        c = self.serve(lambda n, m, p, h: (409, {"error": "masterless", "code": "masterless"}))
        with self.assertRaises(qcluster.MasterlessError):
            c.lock("x", timeout=5)
        c2 = self.serve(lambda n, m, p, h: (200, ['event: acquired\ndata: {"name":"other","token":3}\n\n']))
        with self.assertRaises(qcluster.ProtocolError):
            c2.lock("x", timeout=5)


if __name__ == "__main__":
    unittest.main()
