"""The SDK against a fake agent (http.server): what goes on the wire, how
answers and errors decode, and how the local lease follows the agent's
answers. No Go binary needed."""

import json
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Tuple

import qcluster
from qcluster import QCluster
from qcluster._agent import api_host, parse_duration
from qcluster._http import Endpoint
from qcluster.types import Member, Peer, Status

from .support import wait_for

Answer = Tuple[int, Any, Dict[str, str]]


def _not_found(method: str, path: str, body: bytes) -> Answer:
    return 404, {"error": "no such endpoint", "code": "not_found"}, {}


class FakeAgent:
    """An HTTP server answering like an agent. ``route(method, path)`` is
    set by each test; every request is recorded."""

    def __init__(self) -> None:
        self.requests = []  # type: List[Dict[str, Any]]
        self.lock = threading.Lock()
        self.route = _not_found  # type: Callable[[str, str, bytes], Answer]
        self.paused = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with fake.lock:
                    fake.requests.append(
                        {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                    )
                while fake.paused.is_set():  # a paused agent: no answer
                    time.sleep(0.005)
                status, obj, headers = fake.route(self.command, self.path, body)
                raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that go away mid-answer are expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return "http://127.0.0.1:{}".format(self.port)

    def close(self) -> None:
        self.paused.clear()
        self.server.shutdown()
        self.server.server_close()

    def mutating(self) -> List[Dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] != "GET"]


def status_json(
    ident: str = "server_a",
    is_leader: bool = False,
    lease_ms: float = 0.0,
    term: int = 2,
    index: int = 7,
    leader: Any = None,
) -> Dict[str, Any]:
    return {
        "identifier": ident,
        "role": "leader" if is_leader else "follower",
        "term": term,
        "leader": leader,
        "is_leader": is_leader,
        "lease_remaining_ms": lease_ms,
        "index": index,
        "voters": ["server_a", "server_b", "server_c"],
        "mode": "leader",
        "joined": True,
        "some_future_field": {"ignored": True},
    }


PEER_A = {"identifier": "server_a", "host": "127.0.0.1", "port": 7001, "metadata": {"server_port": 8001}}
PEER_B = {"identifier": "server_b", "host": "127.0.0.1", "port": 7002, "metadata": {"server_port": 8002}}


class FakeAgentTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.agent = FakeAgent()
        self.addCleanup(self.agent.close)

    def connect(self, **kw: Any) -> QCluster:
        c = QCluster.connect(self.agent.address, **kw)
        self.addCleanup(c.close)
        return c


class WireTest(FakeAgentTestCase):
    def test_mutating_requests_send_json_with_content_type_and_no_origin(self) -> None:
        transfer = {"from": "server_a", "leader": PEER_B, "term": 3, "index": 9, "duration_ms": 4.5}
        member = dict(PEER_A, voter=True, is_leader=False, is_self=True, role="follower", state="alive")

        def route(method: str, path: str, body: bytes) -> Answer:
            if method == "GET":
                return 200, status_json(), {}
            if path.startswith("/v1/leader/"):
                return 200, transfer, {}
            if path == "/v1/self/metadata":
                return 200, member, {}
            if path == "/v1/self/leave":
                return 200, {"left": "server_a"}, {}
            return 404, {"error": "no", "code": "not_found"}, {}

        self.agent.route = route
        c = self.connect(token="s3cret")
        self.assertEqual(c.transfer("server_b").leader, Peer.from_json(PEER_B))
        c.transfer()
        c.resign()
        self.assertEqual(c.set_metadata({"zone": "b"}).identifier, "server_a")
        self.assertEqual(c.leave(), "server_a")
        reqs = self.agent.mutating()
        self.assertEqual(
            [(r["method"], r["path"], json.loads(r["body"])) for r in reqs],
            [
                ("POST", "/v1/leader/transfer", {"identifier": "server_b"}),
                ("POST", "/v1/leader/transfer", {}),
                ("POST", "/v1/leader/resign", {}),
                ("PUT", "/v1/self/metadata", {"metadata": {"zone": "b"}}),
                ("POST", "/v1/self/leave", {}),
            ],
        )
        for r in reqs:
            h = {k.lower(): v for k, v in r["headers"].items()}
            self.assertEqual(h.get("content-type"), "application/json", r)
            self.assertNotIn("origin", h, r)
            self.assertEqual(h.get("authorization"), "Bearer s3cret", r)
        # leave() closed it.
        with self.assertRaises(qcluster.ClosedError):
            c.peers()
        self.assertFalse(c.is_leader())

    def test_reads_send_the_token_too(self) -> None:
        self.agent.route = lambda m, p, b: (200, status_json(), {})
        c = self.connect(token="s3cret")
        c.status()
        with self.agent.lock:
            self.assertTrue(all(r["headers"].get("Authorization") == "Bearer s3cret" for r in self.agent.requests))

    def test_errors_are_named_after_their_codes(self) -> None:
        cases = [
            (400, "bad_request", qcluster.BadRequestError),
            (400, "unknown_peer", qcluster.UnknownPeerError),
            (401, "unauthorized", qcluster.UnauthorizedError),
            (404, "not_found", qcluster.NotFoundError),
            (405, "method_not_allowed", qcluster.MethodNotAllowedError),
            (409, "no_transferee", qcluster.NoTransfereeError),
            (409, "transfer_failed", qcluster.TransferFailedError),
            (409, "conflict", qcluster.ConflictError),
            (409, "wrong_cluster", qcluster.WrongClusterError),
            (409, "masterless", qcluster.MasterlessError),
            (413, "too_large", qcluster.TooLargeError),
            (500, "internal", qcluster.InternalError),
            (503, "no_leader", qcluster.NoLeaderError),
            (503, "not_joined", qcluster.NotJoinedError),
            (503, "unavailable", qcluster.UnavailableError),
            (504, "timeout", qcluster.TimeoutError),
            (418, "from_the_future", qcluster.APIError),
        ]
        answer = {}  # type: Dict[str, Any]
        self.agent.route = lambda m, p, b: (answer["status"], {"error": "msg", "code": answer["code"]}, {})
        ep = Endpoint.parse(self.agent.address, None, None)
        for status, code, cls in cases:
            answer.update(status=status, code=code)
            with self.assertRaises(cls) as cm:
                ep.request("POST", "/v1/leader/resign")
            self.assertIs(type(cm.exception), cls)
            self.assertEqual((cm.exception.status, cm.exception.code, cm.exception.message), (status, code, "msg"))
        self.assertTrue(issubclass(qcluster.TimeoutError, TimeoutError))
        self.assertNotIn("TimeoutError", qcluster.__all__)

    def test_transfer_follows_not_leader_to_the_leader(self) -> None:
        leader = FakeAgent()
        self.addCleanup(leader.close)
        leader.route = lambda m, p, b: (
            200,
            {"from": "server_b", "leader": PEER_A, "term": 4, "index": 1, "duration_ms": 1.0},
            {},
        )
        named = dict(PEER_B, port=leader.port)
        self.agent.route = lambda m, p, b: (
            (200, status_json(leader=named), {})
            if m == "GET"
            else (409, {"error": "not the leader", "code": "not_leader", "leader": named}, {})
        )
        c = self.connect()
        res = c.transfer("server_a")
        self.assertEqual((res.from_identifier, res.term), ("server_b", 4))
        self.assertEqual([r["path"] for r in leader.mutating()], ["/v1/leader/transfer"])
        # resign() does not follow: it is about this peer.
        with self.assertRaises(qcluster.NotLeaderError) as cm:
            c.resign()
        self.assertEqual(cm.exception.leader, Peer.from_json(named))

    def test_hostile_answers_are_protocol_errors(self) -> None:
        ep = Endpoint.parse(self.agent.address, None, None)
        for body in [b"<html>hello</html>", b"x" * (5 << 20)]:
            self.agent.route = lambda m, p, b, body=body: (200, body, {})
            with self.assertRaises(qcluster.ProtocolError):
                ep.request("GET", "/v1/status")
        # A status with a wrong type never becomes the state.
        bad = status_json(is_leader=True, lease_ms=100)
        bad["term"] = "2"
        self.agent.route = lambda m, p, b: (200, bad, {})
        c = self.connect()
        st = wait_for(lambda: c.state() if "term" in (c.state().error or "") else None, 10, "an error state")
        self.assertFalse(st.is_leader)
        self.assertIsNone(c.get_leader_info())
        with self.assertRaises(qcluster.ProtocolError):
            c.status()

    def test_unreachable(self) -> None:
        self.agent.close()
        c = QCluster.connect(self.agent.address)
        self.addCleanup(c.close)
        with self.assertRaises(qcluster.UnreachableError):
            c.peers()
        st = wait_for(lambda: c.state() if "refused" in (c.state().error or "") else None, 10, "a refused state")
        self.assertIsNone(st.leader)
        with self.assertRaises(qcluster.NoLeaderError):
            c.wait_for_leader(timeout=0.05)


class LeaseOverHTTPTest(FakeAgentTestCase):
    def test_leader_lease_follows_the_agent(self) -> None:
        # The agent leads with 100 ms of lease left at every answer.
        answer = {"st": status_json(is_leader=True, lease_ms=100.0, leader=PEER_A)}
        self.agent.route = lambda m, p, b: (200, answer["st"], {"X-QCluster-Index": "7"})
        c = self.connect(election_timeout=0.15)
        t0 = time.monotonic()
        wait_for(c.is_leader, 10, "is_leader()")
        # Not before the new-term wait (one election timeout after the
        # first answer that said so).
        self.assertGreaterEqual(time.monotonic() - t0, 0.15)
        self.assertEqual(c.get_leader_info(), Peer.from_json(PEER_A))
        self.assertEqual(c.term(), 2)
        # A paused agent: is_leader() turns false within the lease.
        self.agent.paused.set()
        paused_at = time.monotonic()
        late_true = []
        while time.monotonic() - paused_at < 0.5:
            before = time.monotonic()
            if c.is_leader() and before > paused_at + 0.1:
                late_true.append(before - paused_at)
        self.assertEqual(late_true, [], "is_leader() stayed true after the agent's lease")
        self.assertIsNone(c.get_leader_info())  # it named itself: only with the lease
        self.agent.paused.clear()
        wait_for(c.is_leader, 10, "is_leader() again")

    def test_follower_and_watch(self) -> None:
        answer = {"st": status_json(leader=PEER_B)}
        self.agent.route = lambda m, p, b: (200, answer["st"], {})
        c = self.connect()
        seen = []  # type: List[qcluster.State]
        done = threading.Event()

        def cb(st: qcluster.State) -> None:
            seen.append(st)
            done.set()

        remove = c.on_leader_change(cb)
        self.assertEqual(c.wait_for_leader(10), Peer.from_json(PEER_B))
        self.assertFalse(c.is_leader())
        it = c.watch(timeout=10)
        first = next(it)
        self.assertEqual(first.leader, Peer.from_json(PEER_B))
        answer["st"] = status_json(leader=None, term=3, index=8)
        nxt = next(it)
        self.assertIsNone(nxt.leader)
        self.assertEqual(nxt.term, 3)
        wait_for(lambda: any(s.leader is None and s.term == 3 for s in seen), 10, "the callback's no-leader state")
        remove()
        self.assertIsNone(c.state().error)


class DecodeTest(unittest.TestCase):
    def test_peer_and_member_decoding_is_strict(self) -> None:
        self.assertEqual(Peer.from_json(PEER_A), Peer("127.0.0.1", 7001, "server_a", {"server_port": 8001}))
        self.assertEqual(Peer.from_json(dict(PEER_A, metadata=None)).metadata, {})
        for bad in [
            dict(PEER_A, port="7001"),
            dict(PEER_A, port=True),
            dict(PEER_A, host=None),
            dict(PEER_A, metadata=[1]),
            [PEER_A],
        ]:
            with self.assertRaises(ValueError, msg=bad):
                Peer.from_json(bad)
        m = Member.from_json(dict(PEER_B, voter=True, is_leader=True, is_self=False, role="leader", state="alive"))
        self.assertEqual(m.peer, Peer.from_json(PEER_B))
        with self.assertRaises(ValueError):
            Member.from_json(dict(PEER_B, voter="yes"))

    def test_status_decoding(self) -> None:
        st = Status.from_json(status_json(is_leader=True, lease_ms=99.5, leader=PEER_A))
        self.assertEqual((st.is_leader, st.lease_remaining_ms, st.leader.identifier), (True, 99.5, "server_a"))
        for field, value in [("lease_remaining_ms", -1), ("term", -1), ("is_leader", 1), ("voters", "a")]:
            bad = status_json()
            bad[field] = value
            with self.assertRaises(ValueError, msg=field):
                Status.from_json(bad)

    def test_parse_duration(self) -> None:
        for s, want in [
            ("150ms", 0.15),
            ("1.5s", 1.5),
            ("1m30s", 90.0),
            ("300us", 0.0003),
            ("300\u00b5s", 0.0003),
            ("2h", 7200.0),
            ("0", 0.0),
        ]:
            self.assertAlmostEqual(parse_duration(s), want, msg=s)
        for s in ["", "150", "ms", "1x", "1.5.s"]:
            with self.assertRaises(ValueError, msg=s):
                parse_duration(s)

    def test_endpoint_parse(self) -> None:
        ep = Endpoint.parse("http://127.0.0.1:7001", "t", None)
        got = (ep.host, ep.port, ep.ssl_context, ep.token, ep.url)
        self.assertEqual(got, ("127.0.0.1", 7001, None, "t", "http://127.0.0.1:7001"))
        ep = Endpoint.parse("[::1]:7001", None, None)
        self.assertEqual((ep.host, ep.url), ("::1", "http://[::1]:7001"))
        self.assertIsNotNone(Endpoint.parse("https://db1:7001", None, None).ssl_context)
        for bad in ["", "ftp://a:1", "http://a", "http://a:99999", "http://a:1/v1", "http://u:p@a:1"]:
            with self.assertRaises(ValueError, msg=bad):
                Endpoint.parse(bad, None, None)
        with self.assertRaises(ValueError):
            Endpoint.parse("http://a:1", None, ("ca.pem", None, None))

    def test_api_host(self) -> None:
        for listen, want in [
            (None, "127.0.0.1"),
            ("localhost", "127.0.0.1"),
            ("0.0.0.0", "127.0.0.1"),
            ("::", "::1"),
            ("10.1.2.3", "10.1.2.3"),
            ("db1.example.com", "db1.example.com"),
        ]:
            self.assertEqual(api_host(listen), want, listen)


if __name__ == "__main__":
    unittest.main()
