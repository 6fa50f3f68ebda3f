"""run_while_leader: leader-scoped work with real agents built from this
tree."""

import asyncio
import os
import shutil
import signal
import tempfile
import threading
import time
import unittest
from typing import Any, List, Optional

import qcluster
import qcluster.client
from qcluster import LeaderScope, QCluster

from .support import MEASURED, cluster_configs, qcluster_binary, wait_for


class _Run:
    """One call of the work: who, when (time.monotonic), its scope."""

    def __init__(self, peer: str, scope: LeaderScope) -> None:
        self.peer = peer
        self.start = time.monotonic()
        self.scope = scope
        self.lease_end_at_loss = None  # type: Optional[float]


class LeadershipTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        qcluster_binary()

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="qcluster-pytest-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.runs = []  # type: List[_Run]
        self.runs_lock = threading.Lock()

    def start(self, n: int, **extra: Any) -> List[QCluster]:
        clusters = []
        for conf in cluster_configs(n, self.dir, **extra):
            c = QCluster(**conf)
            self.addCleanup(c.close)
            clusters.append(c)
        return clusters

    def work_on(self, c: QCluster, with_stop: bool = True) -> threading.Event:
        """Runs run_while_leader on c in a thread: each call records itself
        and waits for its scope to end. Returns the stop event (passed on
        only with_stop: else the call ends at close); the cleanup sets it
        and checks how the thread ended."""
        stop = threading.Event()
        outcome = []  # type: List[Any]

        def work(scope: LeaderScope) -> None:
            r = _Run(c.identifier or "?", scope)
            with self.runs_lock:
                self.runs.append(r)
            scope.wait()
            r.lease_end_at_loss = c._core.lease.valid_until()

        def run() -> None:
            try:
                c.run_while_leader(work, stop if with_stop else None)
                outcome.append(None)
            except qcluster.ClosedError as e:
                outcome.append(e)
            except BaseException as e:  # reported by the cleanup
                outcome.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()

        def cleanup() -> None:
            stop.set()
            if not with_stop:
                c.close()
            t.join(10)
            self.assertFalse(t.is_alive(), "run_while_leader did not return after stop_event was set")
            self.assertTrue(outcome[0] is None or isinstance(outcome[0], qcluster.ClosedError), outcome)

        self.addCleanup(cleanup)
        return stop

    def runs_of(self, peer: Optional[str] = None) -> List[_Run]:
        with self.runs_lock:
            return [r for r in self.runs if peer is None or r.peer == peer]

    def check_no_overlap(self) -> None:
        with self.runs_lock:
            runs = sorted(self.runs, key=lambda r: r.start)
        for prev, nxt in zip(runs, runs[1:]):
            self.assertIsNotNone(prev.scope.ended_at, "{}'s scope lasts while {}'s work began".format(prev.peer, nxt.peer))
            self.assertLess(
                prev.scope.ended_at, nxt.start, "{}'s scope overlaps {}'s work".format(prev.peer, nxt.peer)
            )
            MEASURED.append(
                "run_while_leader: {}'s scope ended {:.1f} ms before {}'s work began".format(
                    prev.peer, (nxt.start - prev.scope.ended_at) * 1000, nxt.peer
                )
            )


class RunWhileLeaderTest(LeadershipTestCase):
    def test_hand_over_and_back(self) -> None:
        """resign ends the leader's scope before the request leaves;
        another process's work begins after; leadership transferred back
        runs the first process's work again; scopes never overlap."""
        clusters = self.start(3)
        for c in clusters:
            self.work_on(c)
        first = wait_for(lambda: self.runs_of(), 30, "a leader's work")[0]
        lead = next(c for c in clusters if c.identifier == first.peer)
        self.assertEqual(first.scope.term, lead.term())
        left = first.scope.deadline() - time.monotonic()
        self.assertLessEqual(left, 0.150 + 0.05)
        # (On a loaded machine the lease copy may lapse and come back: the
        # leader's work then runs again, in a new scope. Every scope of it
        # must end before resign() returns.)
        t0 = time.monotonic()
        lead.resign()
        mine = self.runs_of(lead.identifier)
        for r in mine:
            self.assertTrue(r.scope.is_set(), "a scope lasts after resign() returned")
        last = mine[-1]
        self.assertEqual(last.scope.reason, "lost")
        MEASURED.append("run_while_leader: resign() set the scope {:.3f} ms after the call".format(
            (last.scope.ended_at - t0) * 1000))
        second = wait_for(lambda: [r for r in self.runs_of() if r.peer != lead.identifier], 30,
                          "another process's work")[0]
        nxt = next(c for c in clusters if c.identifier == second.peer)
        wait_for(lambda: lead.get_leader_info() and lead.get_leader_info().identifier == nxt.identifier, 30,
                 "the old leader to follow the new one")
        t1 = time.monotonic()
        nxt.transfer(to=lead.identifier)
        wait_for(lambda: [r for r in self.runs_of(lead.identifier) if r.start > t1], 30,
                 "the first process's work again")
        for r in self.runs_of(nxt.identifier):
            self.assertTrue(r.scope.is_set())
        self.check_no_overlap()

    def test_paused_agent_lease_runs_out(self) -> None:
        """The agent stops answering (SIGSTOP): no answer says anything,
        yet the scope is set when this process's copy of the lease runs
        out. The poller is made to wait 5 s before it gives the agent up,
        so only the lease's own timing can set the scope in time."""
        saved = qcluster.client._POLL_GRACE
        qcluster.client._POLL_GRACE = 5.0
        self.addCleanup(setattr, qcluster.client, "_POLL_GRACE", saved)
        (c,) = self.start(1)
        # No stop_event: nothing but the lease's end and state changes
        # wakes the scope's watcher.
        self.work_on(c, with_stop=False)
        wait_for(lambda: self.runs_of(), 30, "the work")
        pid = c.agent_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(os.kill, pid, signal.SIGCONT)
        run = self.runs_of()[-1]
        self.assertTrue(run.scope.wait(30), "the scope was not set while the agent is stopped")
        wait_for(lambda: run.lease_end_at_loss is not None, 5, "the work to see its scope end")
        lag = run.scope.ended_at - run.lease_end_at_loss
        MEASURED.append("run_while_leader: paused agent: scope set {:.2f} ms after the lease copy's end".format(lag * 1000))
        self.assertEqual(run.scope.reason, "lost")
        self.assertFalse(c.is_leader())
        self.assertGreaterEqual(lag, -0.001)
        self.assertLess(lag, 2.0, "the scope was set long after the lease ran out (at the poller's timeout?)")
        self.assertIsNone(c.state().error, "the poller gave up before the scope was set")
        t1 = time.monotonic()
        os.kill(pid, signal.SIGCONT)
        wait_for(lambda: [r for r in self.runs_of() if r.start > t1], 30, "the work again once the agent answers")

    def test_return_raise_stop_close(self) -> None:
        (c,) = self.start(1)
        wait_for(c.is_leader, 30, "the lease")
        # Returning: done for this tenure, not called again while it lasts.
        calls = []  # type: List[LeaderScope]
        stop = threading.Event()
        t = threading.Thread(target=c.run_while_leader, args=(calls.append, stop), daemon=True)
        t.start()
        wait_for(lambda: calls and calls[0].is_set(), 10, "the first call to return")
        self.assertEqual(calls[0].reason, "returned")
        # Several renewals of a 150 ms lease. A call per real lapse of the
        # lease copy is right (a loaded machine may starve the poller for
        # longer than the 60 ms it renews ahead); a spin makes thousands.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self.assertLessEqual(len(calls), 5, "called again and again while the lease lasts")
            time.sleep(0.02)
        if len(calls) > 1:
            MEASURED.append("run_while_leader: {} calls in 1 s of one leadership (lease copy lapses)".format(len(calls)))
        stop.set()
        t.join(5)
        self.assertFalse(t.is_alive(), "run_while_leader did not return after stop_event")

        # stop_event while working: the scope is set, then it returns.
        stop = threading.Event()
        scopes = []  # type: List[LeaderScope]

        def wait_scope(scope: LeaderScope) -> None:
            scopes.append(scope)
            scope.wait()

        t = threading.Thread(target=c.run_while_leader, args=(wait_scope, stop), daemon=True)
        t.start()
        wait_for(lambda: scopes, 10, "the call")
        stop.set()
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertEqual(scopes[-1].reason, "stopped")

        # resign() with no one to hand over to: the scope ends before the
        # request leaves (the call fails, and the lease comes back at once,
        # in the same term: only the scope's own end explains it).
        scopes.clear()
        stop = threading.Event()
        t = threading.Thread(target=c.run_while_leader, args=(wait_scope, stop), daemon=True)
        t.start()
        wait_for(lambda: scopes, 10, "the call")
        n = len(scopes)
        cur = scopes[-1]
        with self.assertRaises(qcluster.NoTransfereeError):
            c.resign()
        self.assertTrue(cur.is_set(), "the scope lasts after resign() was sent")
        self.assertEqual(cur.reason, "lost")
        wait_for(lambda: len(scopes) > n, 10, "a new call once the lease is back")
        stop.set()
        t.join(5)
        self.assertFalse(t.is_alive())

        # Raising: the scope is set and the exception propagates.
        seen = []  # type: List[LeaderScope]

        def boom(scope: LeaderScope) -> None:
            seen.append(scope)
            raise ValueError("boom")

        with self.assertRaises(ValueError):
            c.run_while_leader(boom)
        self.assertTrue(seen[0].is_set())

        # close: the scope is set ("closed"), run_while_leader raises.
        scopes.clear()
        errors = []  # type: List[BaseException]

        def run() -> None:
            try:
                c.run_while_leader(wait_scope)
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        wait_for(lambda: scopes, 10, "the call")
        c.close()
        t.join(10)
        self.assertFalse(t.is_alive())
        self.assertEqual(scopes[-1].reason, "closed")
        self.assertIsInstance(errors[0], qcluster.ClosedError)
        with self.assertRaises(qcluster.ClosedError):
            c.run_while_leader(wait_scope)


class AsyncRunWhileLeaderTest(LeadershipTestCase):
    def test_task_cancelled_at_the_loss(self) -> None:
        """The work's task is cancelled the moment leadership is lost (here:
        resign() drops the lease before its request leaves), runs again at
        the next gain, and stop_event ends it all."""
        (c,) = self.start(1)
        ac = qcluster.AsyncQCluster(c)
        events = []  # type: List[Any]

        async def work(scope: LeaderScope) -> None:
            events.append(("start", scope.term))
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                events.append(("cancelled", scope.reason))
                raise

        async def main() -> None:
            stop = asyncio.Event()
            runner = asyncio.ensure_future(ac.run_while_leader(work, stop))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while len(events) < 1:
                self.assertLess(loop.time(), deadline, "no first call")
                await asyncio.sleep(0.01)
            with self.assertRaises(qcluster.NoTransfereeError):
                await ac.resign()
            while len(events) < 3:
                self.assertLess(loop.time(), deadline, "no cancellation and second call: {}".format(events))
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(runner, 10)

        asyncio.run(main())
        self.assertEqual(events[0][0], "start")
        self.assertEqual(events[1], ("cancelled", "lost"))
        self.assertEqual(events[2][0], "start")
        self.assertEqual(events[-1], ("cancelled", "stopped"))


if __name__ == "__main__":
    unittest.main()
