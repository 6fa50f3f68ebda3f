"""Leader-scoped work: :meth:`QCluster.run_while_leader`.

A tenure is a span during which this process's copy of the leader lease is
valid (:meth:`QCluster.is_leader` is true), in one term. The work of a
tenure gets a :class:`LeaderScope`, a ``threading.Event`` that is set the
moment the tenure ends:

- when the copy of the lease runs out: a thread waits on the core's
  condition with a timeout at the lease's end as last renewed, so the event
  is set at that instant even when the agent stops answering (paused,
  partitioned, dead) and no new answer says so;
- at once when a state change says so: an answer that this peer no longer
  leads, or leads in another term;
- synchronously, in the calling thread, when this process hands leadership
  over (``transfer``, ``resign``, ``leave`` drop the copy of the lease, and
  end every scope, before the request leaves) or closes.

Since the copies of two processes' leases never overlap (see
:mod:`qcluster._lease`), neither do two processes' tenures.
"""

import math
import threading
from typing import Any, Callable, List, Optional

from .errors import ClosedError

__all__ = ["LeaderScope"]

# How often a wait looks at a stop_event (it cannot be waited on together
# with the core's condition), in seconds.
_STOP_POLL = 0.05
# The longest wait for a gain without a state change, in seconds (the
# lease of a new term starts counting at a set time; see Lease.valid_from).
_GAIN_POLL = 0.5

#: The reasons a LeaderScope ends (LeaderScope.reason).
LOST, RETURNED, STOPPED, CLOSED = "lost", "returned", "stopped", "closed"


class LeaderScope(threading.Event):
    """The scope of one tenure of leadership, handed to the work of
    :meth:`QCluster.run_while_leader`: a ``threading.Event`` that is set the
    moment this process stops holding the leader lease, when the work
    returns, when ``stop_event`` is set, or at :meth:`QCluster.close`.

    Attributes:
        term: the Raft term of this tenure, a fencing token: pass it to the
            systems the work writes to, so they can refuse a deposed
            leader's late writes.
        reason: why it ended (None while it lasts): ``"lost"`` (the lease
            ran out, was handed over, or another term began), ``"returned"``
            (the work returned), ``"stopped"`` (``stop_event``) or
            ``"closed"``.
        ended_at: when it ended, on the ``time.monotonic()`` clock (None
            while it lasts).
    """

    def __init__(self, core: Any, term: int) -> None:
        super().__init__()
        self._core = core
        self.term = term
        self.reason = None  # type: Optional[str]
        self.ended_at = None  # type: Optional[float]
        self._end = core.lease.valid_until()
        self._lock = threading.Lock()
        self._on_end = []  # type: List[Callable[[], Any]]

    def deadline(self) -> float:
        """The lease's current end, on the ``time.monotonic()`` clock. It
        moves forward while the lease is renewed (about every heartbeat), so
        it only says how long this process is certain to lead; after the
        tenure ended it is the time it ended, at the latest."""
        if not self.is_set():
            lease = self._core.lease
            if lease.valid_term() == self.term:
                self._end = lease.valid_until()
        return self._end

    def _call_at_end(self, fn: Callable[[], Any]) -> None:
        """Calls fn when the scope ends (at once if it has): from the thread
        that ends it, so fn must be quick and must not block."""
        with self._lock:
            if not self.is_set():
                self._on_end.append(fn)
                return
        fn()

    def _finish(self, reason: str, now: float) -> None:
        """Ends the scope (core.cond held, or the scope's own thread)."""
        with self._lock:
            if self.is_set():
                return
            self.reason = reason
            self.ended_at = now
            self._end = min(self._end, now)
            self.set()
            on_end, self._on_end = self._on_end, []
        for fn in on_end:
            fn()


def _loss(core: Any, term: int, now: float) -> Optional[str]:
    """Why the tenure of term is over at now (core.cond held), or None."""
    if core.closed:
        return CLOSED
    if core.lease.valid_term(now) != term:
        return LOST
    return None


def _watch(core: Any, scope: LeaderScope, stop_event: Optional[threading.Event], done: threading.Event) -> None:
    """Sets scope at the tenure's end; returns then, or when done is set."""
    with core.cond:
        while not done.is_set():
            now = core.clock()
            reason = _loss(core, scope.term, now)
            if reason is None and stop_event is not None and stop_event.is_set():
                reason = STOPPED
            if reason is not None:
                scope._finish(reason, now)
                return
            # Wake at the lease's end as last renewed (a renewal moves it:
            # the next wait is armed at the new end), or at any change.
            wait = core.lease.valid_until() - now
            if stop_event is not None:
                wait = min(wait, _STOP_POLL)
            core.cond.wait(max(wait, 0.0))


def _wait_gain(core: Any, stop_event: Optional[threading.Event]) -> Optional[LeaderScope]:
    """Waits until this process holds the lease and returns the scope of
    that tenure, registered with core (core.revoke and core.close end it
    at once); None when stop_event is set first. Raises ClosedError at
    close."""
    with core.cond:
        while True:
            if core.closed:
                raise ClosedError("the QCluster is closed")
            if stop_event is not None and stop_event.is_set():
                return None
            core._publish_locked()
            now = core.clock()
            term = core.lease.valid_term(now)
            if term is not None:
                scope = LeaderScope(core, term)
                core.scopes.add(scope)
                return scope
            step = _GAIN_POLL
            start = core.lease.valid_from()
            if math.isfinite(start):
                step = min(step, max(0.001, start - now))
            if stop_event is not None:
                step = min(step, _STOP_POLL)
            core.cond.wait(step)


def _wait_loss(core: Any, term: int, stop_event: Optional[threading.Event]) -> None:
    """Waits until the tenure of term is over, or stop_event is set."""
    with core.cond:
        while _loss(core, term, core.clock()) is None:
            if stop_event is not None and stop_event.is_set():
                return
            wait = core.lease.valid_until() - core.clock()
            if stop_event is not None:
                wait = min(wait, _STOP_POLL)
            core.cond.wait(max(wait, 0.0))


def run_while_leader(core: Any, fn: Callable[[LeaderScope], Any], stop_event: Optional[threading.Event]) -> None:
    """See QCluster.run_while_leader."""
    while True:
        scope = _wait_gain(core, stop_event)
        if scope is None:
            return
        term = scope.term
        done = threading.Event()
        watcher = threading.Thread(
            target=_watch, args=(core, scope, stop_event, done), name="qcluster-leader-scope", daemon=True
        )
        watcher.start()
        try:
            fn(scope)
        finally:
            done.set()
            with core.cond:
                core.scopes.discard(scope)
                core.cond.notify_all()
            watcher.join()
            scope._finish(RETURNED, core.clock())
        if core.closed:
            raise ClosedError("the QCluster is closed")
        if stop_event is not None and stop_event.is_set():
            return
        # The work is done for this tenure: wait for its end, then for the
        # next gain (no new call while this lease lasts).
        _wait_loss(core, term, stop_event)
