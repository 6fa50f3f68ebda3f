"""QCluster objects in this process, each with a real local agent built from
this tree: the seed's API and everything beyond it."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, List, Optional

import qcluster
from qcluster import AsyncQCluster, QCluster, State

from .support import MEASURED, cluster_configs, process_gone, qcluster_binary, wait_for


class AgentsTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        qcluster_binary()

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="qcluster-pytest-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start(self, n: int = 3, **extra: Any) -> List[QCluster]:
        clusters = []
        for conf in cluster_configs(n, self.dir, **extra):
            c = QCluster(**conf)
            self.addCleanup(c.close)
            clusters.append(c)
        return clusters

    def agreed(self, clusters: List[QCluster]) -> Optional[QCluster]:
        leaders = [c for c in clusters if c.is_leader()]
        if len(leaders) != 1:
            return None
        lead = leaders[0]
        infos = [c.get_leader_info() for c in clusters]
        if all(p is not None and p.identifier == lead.identifier for p in infos):
            return lead
        return None


class SeedAPITest(AgentsTestCase):
    def test_three_peers(self) -> None:
        clusters = self.start(3)
        lead = wait_for(lambda: self.agreed(clusters), 30, "one agreed leader")
        info = lead.get_leader_info()
        assert info is not None
        self.assertEqual(info.host, "127.0.0.1")
        self.assertEqual(info.port, int(lead.address.rsplit(":", 1)[1]))
        self.assertEqual(set(info.metadata), {"server_port"})
        for c in clusters:
            self.assertEqual(c.get_leader_info(), info)
            self.assertRegex(
                repr(c), r"^<QCluster server_[abc] at http://127\.0\.0\.1:\d+: "
                r"(leader|following server_[abc]|no leader)>$"
            )
        wait_for(lambda: len({c.term() for c in clusters}) == 1, 10, "one term")

        members = lead.peers()
        self.assertEqual([m.identifier for m in members], ["server_a", "server_b", "server_c"])
        self.assertEqual([m.identifier for m in members if m.is_leader], [lead.identifier])
        self.assertTrue(all(m.voter and m.metadata.get("server_port") for m in members))
        st = lead.status()
        self.assertTrue(st.is_leader)
        self.assertGreater(st.lease_remaining_ms, 0)
        self.assertLessEqual(st.lease_remaining_ms, 150)

        # Watch and callbacks from a follower.
        follower = next(c for c in clusters if c is not lead)
        seen = []  # type: List[State]
        remove = follower.on_leader_change(seen.append)
        wait_for(lambda: seen and seen[0].leader == info, 10, "the callback's current state")
        states = follower.watch(timeout=30)
        self.assertEqual(next(states).leader, info)

        # resign: the leader's is_leader() is false once the call returns
        # (it dropped its copy of the lease before asking).
        old_term = lead.term()
        res = lead.resign()
        self.assertFalse(lead.is_leader())
        self.assertEqual(res.from_identifier, lead.identifier)
        self.assertIsNotNone(res.leader)
        self.assertGreater(res.term, old_term)
        for st2 in states:
            if st2.leader is not None and st2.leader.identifier != lead.identifier:
                break
        new = wait_for(lambda: self.agreed(clusters), 30, "a new agreed leader")
        self.assertNotEqual(new.identifier, lead.identifier)
        self.assertGreater(new.term(), old_term)
        wait_for(lambda: seen[-1].leader is not None and seen[-1].leader.identifier == new.identifier, 10,
                 "the callback's new leader")
        remove()

        # transfer from a follower that is not the target: it follows the
        # not_leader answer to the leader.
        target = next(c for c in clusters if c is not new)
        asker = next(c for c in clusters if c is not new and c is not target)
        res = asker.transfer(to=target.identifier)
        self.assertEqual(res.leader.identifier if res.leader else None, target.identifier)
        wait_for(lambda: self.agreed(clusters) is target, 30, "the target to lead")

        # set_metadata on the leader reaches every peer's get_leader_info().
        target.set_metadata({"server_port": 1234, "zone": "b"})
        wait_for(
            lambda: all((c.get_leader_info() or info).metadata == {"server_port": 1234, "zone": "b"} for c in clusters),
            10,
            "the new metadata everywhere",
        )
        with self.assertRaises(qcluster.UnknownPeerError):
            target.transfer(to="server_x")
        with self.assertRaises(qcluster.NotLeaderError):
            asker.resign()

    def test_leave_and_close(self) -> None:
        clusters = self.start(3)
        lead = wait_for(lambda: self.agreed(clusters), 30, "one agreed leader")
        leaver = next(c for c in clusters if c is not lead)
        proc = leaver._core.agent.proc  # type: ignore[union-attr]
        log_dir = os.path.dirname(leaver.agent_log_path or "")
        self.assertEqual(leaver.leave(), leaver.identifier)
        self.assertEqual(proc.wait(10), 0)
        self.assertFalse(os.path.exists(log_dir), "close() removes the agent's files")
        with self.assertRaises(qcluster.ClosedError):
            leaver.peers()
        with self.assertRaises(qcluster.ClosedError):
            leaver.wait_for_leader(1)
        wait_for(lambda: leaver.identifier not in lead.status().voters, 10, "the leaver out of the voters")
        gone = [m for m in lead.peers() if m.identifier == leaver.identifier]
        self.assertTrue(all(m.state == "left" and not m.voter for m in gone), gone)

        # close(): the agent stops cleanly and the context manager closes.
        other = next(c for c in clusters if c is not lead and c is not leaver)
        with other:
            pid = other.agent_pid
            assert pid is not None
        self.assertTrue(process_gone(pid))
        self.assertFalse(other.is_leader())
        self.assertEqual(other.state().error, "closed")
        other.close()  # idempotent
        self.assertEqual(list(other.watch(timeout=1))[-1].error, "closed")

    @unittest.skipUnless(hasattr(signal, "SIGSTOP"), "SIGSTOP")
    def test_paused_agent_loses_the_lease_within_an_election_timeout(self) -> None:
        (c,) = self.start(1)
        wait_for(c.is_leader, 30, "the single peer to lead")
        pid = c.agent_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        self.addCleanup(os.kill, pid, signal.SIGCONT)
        late = 0.0
        while time.monotonic() - stopped < 0.6:
            before = time.monotonic()
            if c.is_leader():
                late = max(late, before - stopped)
        os.kill(pid, signal.SIGCONT)
        MEASURED.append(
            "SIGSTOP of the leader's agent: is_leader() last true {:.0f} ms after the stop".format(late * 1000)
        )
        self.assertLess(late, 0.150, "is_leader() was true {:.0f} ms after the agent was paused".format(late * 1000))
        wait_for(c.is_leader, 30, "the lease again after SIGCONT")

    def test_token(self) -> None:
        (c,) = self.start(1, api_token="s3cret")
        wait_for(c.is_leader, 30, "the single peer to lead")
        with self.assertRaises(qcluster.NoTransfereeError):
            c.resign()  # with the config's token, and no other voter
        with QCluster.connect(c.address) as anon:
            self.assertEqual(anon.wait_for_leader(10).identifier, "server_a")  # reads are open
            with self.assertRaises(qcluster.UnauthorizedError):
                anon.resign()
        with QCluster.connect(c.address, token="s3cret") as admin:
            with self.assertRaises(qcluster.NoTransfereeError):
                admin.resign()

    def test_async(self) -> None:
        conf = cluster_configs(1, self.dir)[0]

        async def main() -> None:
            cluster = await AsyncQCluster.create(**conf)
            async with cluster:
                leader = await cluster.wait_for_leader(timeout=30)
                self.assertEqual(leader.identifier, "server_a")
                self.assertTrue(cluster.is_leader())
                async for st in cluster.watch(timeout=10):
                    self.assertTrue(st.is_leader)
                    break
                seen = asyncio.Queue()  # type: asyncio.Queue

                async def cb(st: State) -> None:
                    await seen.put(st)

                remove = cluster.on_leader_change(cb)
                self.assertTrue((await asyncio.wait_for(seen.get(), 10)).is_leader)
                remove()
                self.assertEqual([m.identifier for m in await cluster.peers()], ["server_a"])
                with self.assertRaises(qcluster.NoTransfereeError):
                    await cluster.transfer()
            self.assertFalse(cluster.is_leader())
            with self.assertRaises(qcluster.ClosedError):
                await cluster.wait_for_leader(1)

        asyncio.run(main())


class TLSTest(AgentsTestCase):
    def test_tls_files(self) -> None:
        conf = cluster_configs(1, self.dir)[0]
        path = os.path.join(self.dir, "a.json")
        with open(path, "w") as f:
            json.dump(conf, f)
        certs = os.path.join(self.dir, "certs")
        bin_ = qcluster_binary()
        for args in (
            ["tls", "init", "--config", path, "--out", certs],
            ["tls", "issue", "--ca-dir", certs, "--identifier", "admin"],
        ):
            subprocess.run([bin_] + args, check=True, stdout=subprocess.DEVNULL)
        ca = os.path.join(certs, "ca.pem")
        conf["tls"] = {
            "ca_file": ca,
            "cert_file": os.path.join(certs, "server_a.pem"),
            "key_file": os.path.join(certs, "server_a-key.pem"),
        }
        with open(os.path.join(certs, "gossip.key")) as f:
            conf["gossip_key"] = f.read().strip()
        with QCluster(**conf) as c:
            self.assertTrue(c.address.startswith("https://"))
            self.assertEqual(c.wait_for_leader(30).identifier, "server_a")
            admin_tls = (ca, os.path.join(certs, "admin.pem"), os.path.join(certs, "admin-key.pem"))
            with QCluster.connect(c.address, tls=admin_tls) as admin:
                self.assertEqual(admin.wait_for_leader(10).identifier, "server_a")
                self.assertEqual(admin.status().role, "leader")
            with QCluster.connect(c.address, tls=(ca, None, None)) as anon:
                with self.assertRaises(qcluster.UnreachableError) as cm:
                    anon.status()  # the agents require a client certificate
                self.assertIn("TLS", str(cm.exception))
            with QCluster.connect(c.address.replace("https://", "http://")) as plain:
                with self.assertRaises(qcluster.APIError) as cm2:
                    plain.status()  # a plain-text 400, which the error shows
                self.assertEqual(cm2.exception.status, 400)
                self.assertIn("requires TLS", str(cm2.exception))


    def test_cluster_key(self) -> None:
        key = subprocess.run([qcluster_binary(), "tls", "key"], check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        clusters = self.start(3, cluster_key=key)
        lead = wait_for(lambda: self.agreed(clusters), 30, "one agreed leader over TLS")
        for c in clusters:
            self.assertTrue(c.address.startswith("https://"), c.address)
            self.assertEqual(c.term(), lead.term())
        # The key never reached a command line, and the issued key file is
        # private to this user.
        agent = clusters[0]._core.agent  # type: ignore[attr-defined]
        self.assertNotIn(key, " ".join(agent.proc.args))
        self.assertEqual(os.stat(agent.client_tls[2]).st_mode & 0o077, 0)
        # Another key's client certificate is refused.
        other = subprocess.run([qcluster_binary(), "tls", "key"], check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        out = os.path.join(self.dir, "other")
        env = dict(os.environ, QCLUSTER_CLUSTER_KEY=other)
        subprocess.run([qcluster_binary(), "tls", "issue", "--identifier", "x", "--out", out], check=True, env=env, stdout=subprocess.DEVNULL)
        tls = (os.path.join(out, "ca.pem"), os.path.join(out, "x.pem"), os.path.join(out, "x-key.pem"))
        with QCluster.connect(lead.address, tls=tls) as stranger:
            with self.assertRaises(qcluster.UnreachableError):
                stranger.status()


class StartErrorsTest(AgentsTestCase):
    def test_bad_config_reports_the_agent_message(self) -> None:
        conf = cluster_configs(1, self.dir)[0]
        conf["listen_prot"] = 7001
        with self.assertRaises(qcluster.AgentError) as cm:
            QCluster(**conf)
        self.assertIn("listen_prot", str(cm.exception))
        self.assertIn('did you mean "listen_port"', str(cm.exception))

    def test_missing_binary_says_how_to_get_it(self) -> None:
        conf = cluster_configs(1, self.dir)[0]
        env = dict(os.environ)
        self.addCleanup(os.environ.update, env)  # cleanups run last first
        self.addCleanup(os.environ.clear)
        os.environ["QCLUSTER_BIN"] = os.path.join(self.dir, "nope")
        with self.assertRaises(qcluster.AgentNotFoundError) as cm:
            QCluster(**conf)
        self.assertIn("QCLUSTER_BIN", str(cm.exception))
        del os.environ["QCLUSTER_BIN"]
        os.environ["PATH"] = self.dir
        with self.assertRaises(qcluster.AgentNotFoundError) as cm:
            QCluster(**conf)
        for want in [
            "go build -o qcluster ./cmd/qcluster",
            "go install github.com/qcluster/qcluster/cmd/qcluster@latest",
        ]:
            self.assertIn(want, str(cm.exception))
        self.assertIsInstance(cm.exception, FileNotFoundError)

    def test_missing_fields(self) -> None:
        with self.assertRaises(ValueError):
            QCluster(listen_port=7001)
        with self.assertRaises(ValueError):
            QCluster(identifier="a", listen_port="7001")


if __name__ == "__main__":
    unittest.main(argv=sys.argv)
