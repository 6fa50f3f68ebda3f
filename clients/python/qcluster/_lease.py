"""The leader lease across the process boundary: pure arithmetic on a clock.

An agent holds the leader lease: its ``is_leader`` is true only while a
majority acknowledged a heartbeat it sent recently enough that no other peer
can have been elected since (see the Go package internal/consensus). Its
``GET /v1/status`` says ``is_leader`` and ``lease_remaining_ms``, computed
when it answered. This module turns those answers into a local lease that
:meth:`QCluster.is_leader` reads without any I/O, and that is never valid
while another process's is:

1. Validity. An answer to a request sent at local time ``sent`` grants the
   lease until ``sent + min(remaining, hold) - margin``. The agent computed
   ``remaining`` after ``sent`` (the request had to arrive first), so this
   ends no later than the agent's own lease, however long the answer took
   to come back. ``margin`` absorbs clock-rate differences between the two
   machines (none on one machine) and rounding.

2. Revocation. An agent's lease can end early: a leadership transfer drops
   it at once, so that the new leader need not wait for it to run out. The
   copy of it in this process cannot be revoked remotely; it runs until its
   end. By (1) that end is at most ``hold`` after the agent last said it
   led. So a process whose agent becomes leader in a new term waits
   ``hold`` after it first saw that (``received``, not ``sent``: the agent
   became leader before it answered) before it reports the lease. Any other
   process's copy of an earlier leadership has then run out: that
   leadership's agent stopped leading before this one started (the agents'
   own guarantee), and its copies end at most ``hold`` after that.
   Within one term only one peer ever leads, so a lease that lapses and is
   renewed in the same term needs no new wait. ``hold`` must be at least
   the cluster's election timeout (every agent's lease is shorter) and the
   same in every process; the cap in (1) keeps a larger lease from
   outlasting it.

3. Local revocation. Before this process asks its agent to hand leadership
   over (``transfer``, ``resign``, ``leave``) it drops its copy, and no
   answer to a request sent before that may grant it again.

The cost of (2): a new leader's process reports it ``hold`` (150 ms by
default) after its agent does.
"""

import math
import threading
from typing import Callable, Optional, Tuple

_INF = math.inf


class Lease:
    """This process's copy of its agent's leader lease.

    ``valid()`` is lock-free (one attribute read and two comparisons);
    ``observe`` and ``revoke`` may be called from any thread.

    Args:
        clock: the local monotonic clock, in seconds (``time.monotonic``).
        hold: the longest lease any agent of the cluster may hold, in
            seconds: its election timeout (see the module doc).
        margin: subtracted from every lease, in seconds.
    """

    def __init__(self, clock: Callable[[], float], hold: float, margin: float) -> None:
        if not hold > 0:
            raise ValueError("hold must be positive, got {!r}".format(hold))
        if not margin >= 0:
            raise ValueError("margin must not be negative, got {!r}".format(margin))
        self._clock = clock
        self.hold = float(hold)
        self.margin = float(margin)
        self._lock = threading.Lock()
        # (valid_from, valid_until): valid while valid_from <= now < valid_until.
        self._window = (_INF, -_INF)  # type: Tuple[float, float]
        self._term = None  # type: Optional[int]
        self._hold_until = _INF
        self._revoked_at = -_INF

    def valid(self, now: Optional[float] = None) -> bool:
        """Reports whether the lease is valid at ``now`` (default: the clock)."""
        start, end = self._window
        if now is None:
            now = self._clock()
        return start <= now < end

    def valid_term(self, now: Optional[float] = None) -> Optional[int]:
        """The term of the lease when it is valid at ``now`` (default: the
        clock), else None."""
        with self._lock:
            (start, end), term = self._window, self._term
        if now is None:
            now = self._clock()
        return term if start <= now < end else None

    def valid_until(self) -> float:
        """The clock time the current grant ends (``-inf`` without one)."""
        return self._window[1]

    def valid_from(self) -> float:
        """The clock time the current lease starts counting (after the
        new-term wait), or ``inf`` without one."""
        return self._window[0]

    def observe(self, sent: float, received: float, is_leader: bool, term: int, remaining_ms: float) -> None:
        """Takes in the agent's answer to a request sent at clock time
        ``sent`` and received at ``received``: its ``is_leader``, ``term``
        and ``lease_remaining_ms``. Answers must be observed in the order
        their requests were sent."""
        with self._lock:
            if not is_leader or not remaining_ms > 0:
                self._window = (_INF, -_INF)
                return
            if sent <= self._revoked_at:
                return  # sent before this process gave leadership away
            if term != self._term:
                self._term = term
                self._hold_until = received + self.hold
            until = sent + min(remaining_ms / 1000.0, self.hold) - self.margin
            self._window = (self._hold_until, until)

    def revoke(self) -> None:
        """Drops the lease now; answers to requests sent until now cannot
        grant it again."""
        with self._lock:
            self._revoked_at = self._clock()
            self._window = (_INF, -_INF)
