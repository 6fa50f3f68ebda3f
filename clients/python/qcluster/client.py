"""QCluster: the seed's Python API over a QCluster agent.

``QCluster(**configuration)`` starts a local ``qcluster agent`` for the
seed's JSON config and follows it; ``QCluster.connect(address)`` follows an
agent that already runs (a sidecar, another container). Either way a
background thread keeps a copy of the agent's state, so that
:meth:`QCluster.is_leader` and :meth:`QCluster.get_leader_info` answer
locally, without a request per call.
"""

import logging
import math
import socket
import threading
import time
import weakref
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple, Union

from ._agent import LocalAgent, parse_duration
from ._http import Endpoint, TLSArg
from ._lease import Lease
from ._leadership import LeaderScope, run_while_leader
from .errors import (
    ClosedError,
    NoLeaderError,
    NotLeaderError,
    ProtocolError,
    QClusterError,
    UnreachableError,
)
from .kv import KV, Lock, Session, SessionLock, take_lock, take_session_lock
from .types import Member, Peer, State, Status, TransferResult

__all__ = ["QCluster", "DEFAULT_ELECTION_TIMEOUT", "DEFAULT_MARGIN"]

log = logging.getLogger("qcluster")

#: The cluster's election timeout when the config does not set one (the
#: agent's default, 150 ms), in seconds.
DEFAULT_ELECTION_TIMEOUT = 0.150

#: What is taken off every lease the agent reports, in seconds (see
#: :mod:`qcluster._lease`).
DEFAULT_MARGIN = 0.005

# Followers follow their agent with blocking queries: the agent answers at
# once when its state changes, else after this long.
_FOLLOW_WAIT = 1.0
# How much longer than that an answer may take before the agent counts as
# not answering.
_FOLLOW_GRACE = 1.0
# How long a leader's poll may take beyond its lease before it counts as
# not answering.
_POLL_GRACE = 0.25
# The shortest time between two polls of a leader.
_POLL_MIN = 0.005
# Reconnection back-off after a failed request.
_BACKOFF_MIN, _BACKOFF_MAX = 0.02, 0.5

_Callback = Callable[[State], Any]


def _leader_key(st: State) -> Tuple[bool, Optional[str], int]:
    return (st.is_leader, st.leader.identifier if st.leader else None, st.term)


class _Core:
    """The state shared by a QCluster and its background threads.

    The threads hold no reference to the QCluster, so an abandoned QCluster
    is garbage-collected and its finalizer closes the core.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        hold: float,
        margin: float,
        agent: Optional[LocalAgent],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.lease = Lease(clock, hold, margin)
        # While the agent leads, the poller asks again this long before the
        # copy of the lease would end, so that only a stall longer than
        # that (an answer that slow, or this process not scheduled on a
        # busy machine) makes is_leader() flap; but at least _POLL_MIN and
        # at most poll_max after its last request. The agent renews its
        # lease every heartbeat and reports 75-125 ms with the default
        # timings, so a leader is asked about 20 times a second.
        self.refresh_ahead = max(0.06, hold * 0.4)
        self.poll_max = hold / 2
        self.agent = agent
        self.cond = threading.Condition()
        # (latest Status or None, error or None): read as one value.
        self.view = (None, "the agent has not answered yet")  # type: Tuple[Optional[Status], Optional[str]]
        self.state = State(False, None, 0, "", 0, self.view[1])
        self.version = 0
        self.closed = False
        self.requests = 0  # answers the poller received (bench, tests)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._conn = None  # type: Any
        self._conn_lock = threading.Lock()
        self._wakers = set()  # type: set
        self._callbacks = []  # type: List[List[Any]]
        # The live scopes of run_while_leader (guarded by cond).
        self.scopes = set()  # type: set
        self._dispatcher = None  # type: Optional[threading.Thread]
        self._poller = threading.Thread(target=self._run, name="qcluster-poller", daemon=True)
        # The TTL health check's report (set_health) and its heartbeat.
        self.health = ("passing", "")  # type: Tuple[str, str]
        self.health_ttl = None  # type: Optional[float]
        self._heartbeat_thread = None  # type: Optional[threading.Thread]
        self._health_wake = threading.Event()

    def start(self) -> None:
        self._poller.start()

    # ---- the TTL health heartbeat -----------------------------------

    def start_heartbeat(self, ttl: float) -> None:
        """Reports ``self.health`` to the agent (PUT /v1/self/health) at
        once and then three times per ``ttl``, from a thread of this
        process: when this process hangs (SIGSTOP, a deadlock that stops
        every thread), the agent's TTL expires and it stops being a
        candidate for leadership."""
        self.health_ttl = ttl
        self._heartbeat_thread = threading.Thread(target=self._heartbeat, name="qcluster-health", daemon=True)
        self._heartbeat_thread.start()

    def _heartbeat(self) -> None:
        period = self.health_ttl / 3
        while not self._stop.is_set():
            status, output = self.health
            try:
                self.endpoint.request("PUT", "/v1/self/health", {"status": status, "output": output}, period)
            except Exception as e:  # the agent is down or closing: try again
                log.debug("health report failed: %s", e)
            self._health_wake.wait(period)
            self._health_wake.clear()

    # ---- the poller -------------------------------------------------

    def _connection(self, timeout: float) -> Tuple[Any, bool]:
        """The poller's keep-alive connection, and whether it was open."""
        with self._conn_lock:
            c = self._conn
            if c is None:
                c = self.endpoint.connect(timeout)
                self._conn = c
                return c, False
            c.timeout = timeout
            if c.sock is not None:
                c.sock.settimeout(timeout)
                return c, True
            return c, False

    def _drop_connection(self) -> None:
        with self._conn_lock:
            c, self._conn = self._conn, None
        if c is not None:
            c.close()

    def _interrupt(self) -> None:
        """Makes a request the poller is blocked in return at once."""
        with self._conn_lock:
            c = self._conn
            sock = c.sock if c is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _poll(self, path: str, timeout: float) -> Tuple[Status, float]:
        """One GET of the status; returns it and when it was sent. A
        request on a kept-alive connection that fails is retried once on a
        new one (the agent may have closed the idle connection)."""
        for attempt in (1, 2):
            conn, reused = self._connection(timeout)
            sent = self.clock()
            try:
                body, _ = self.endpoint.request("GET", path, timeout=timeout, conn=conn)
            except UnreachableError:
                self._drop_connection()
                if reused and attempt == 1 and not self._stop.is_set():
                    continue
                raise
            try:
                return Status.from_json(body), sent
            except ValueError as e:
                raise ProtocolError("GET {}{}: {}".format(self.endpoint.url, path, e)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self) -> None:
        index = None  # type: Optional[int]
        backoff = 0.0
        while not self._stop.is_set():
            with self.cond:
                if not self.closed:
                    self._publish_locked()  # e.g. the new-term wait just ended
            status = self.view[0]
            leading = status is not None and status.is_leader and self.view[1] is None
            if leading or index is None:
                path = "/v1/status"
                until = self.lease.valid_until()
                timeout = (max(0.0, until - self.clock()) if math.isfinite(until) else 0.75) + _POLL_GRACE
            else:
                path = "/v1/status?index={}&wait={}ms".format(index, int(_FOLLOW_WAIT * 1000))
                timeout = _FOLLOW_WAIT + _FOLLOW_GRACE
            try:
                status, sent = self._poll(path, timeout)
            except QClusterError as e:
                self._drop_connection()
                if self._stop.is_set():
                    break
                self.lease.observe(0.0, 0.0, False, 0, 0.0)
                self._set(self.view[0], str(e))
                index = None
                backoff = min(max(backoff * 2, _BACKOFF_MIN), _BACKOFF_MAX)
                self._stop.wait(backoff)
                continue
            except Exception as e:  # a bug: report it as the state, keep going
                log.exception("qcluster: the poller failed")
                self._drop_connection()
                self._set(self.view[0], "internal error in the SDK's poller: {!r}".format(e))
                self._stop.wait(_BACKOFF_MAX)
                continue
            received = self.clock()
            backoff = 0.0
            self.requests += 1
            self.lease.observe(sent, received, status.is_leader, status.term, status.lease_remaining_ms)
            self._set(status, None)
            index = status.index
            if status.is_leader:
                now = self.clock()
                until = self.lease.valid_until()
                next_at = sent + self.poll_max
                if math.isfinite(until):
                    next_at = min(next_at, until - self.refresh_ahead)
                else:
                    next_at = sent  # no copy (given away): ask again soon
                next_at = max(next_at, sent + _POLL_MIN)
                start = self.lease.valid_from()
                if now < start < next_at:
                    next_at = start  # report the lease as soon as it counts
                if next_at > now:
                    self._wake.wait(next_at - now)
                    self._wake.clear()
        self._drop_connection()

    # ---- state ------------------------------------------------------

    def _set(self, status: Optional[Status], error: Optional[str]) -> None:
        with self.cond:
            if self.closed:
                return
            self.view = (status, error)
            self._publish_locked()

    def _publish_locked(self) -> None:
        now = self.clock()
        status, error = self.view
        st = State(
            self.lease.valid(now) and not self.closed,
            self.leader_at(now),
            status.term if status else 0,
            status.role if status and error is None else "",
            status.index if status and error is None else 0,
            error,
        )
        old = self.state
        self.state = st
        if st[:4] + (st.error,) != old[:4] + (old.error,):
            self.version += 1
            self.cond.notify_all()
            for wake in list(self._wakers):
                wake()

    def leader_at(self, now: Optional[float] = None) -> Optional[Peer]:
        status, error = self.view
        if self.closed or error is not None or status is None or status.leader is None:
            return None
        if status.leader.identifier == status.identifier:
            # The agent names itself: only while this process holds the
            # lease (as the Go SDK's Leader()).
            return status.leader if self.lease.valid(now) else None
        return status.leader

    def wait_state(self, version: int, timeout: Optional[float]) -> Tuple[State, int]:
        """Returns the state once its version differs from ``version``, or
        the current one after ``timeout`` seconds or at close."""
        deadline = None if timeout is None else self.clock() + timeout
        with self.cond:
            if not self.closed:
                self._publish_locked()  # the lease may have started or ended since the last answer
            while self.version == version and not self.closed:
                if deadline is None:
                    self.cond.wait()
                else:
                    left = deadline - self.clock()
                    if left <= 0:
                        break
                    self.cond.wait(left)
            return self.state, self.version

    def revoke(self) -> None:
        """Drops this process's copy of the lease (before it asks its
        agent to hand leadership over) and tells every waiter at once."""
        with self.cond:
            self.lease.revoke()
            self._end_scopes("lost")
            if not self.closed:
                self._publish_locked()
            self.cond.notify_all()

    def _end_scopes(self, reason: str) -> None:
        """Ends the scopes of run_while_leader at once (self.cond held)."""
        now = self.clock()
        for scope in list(self.scopes):
            scope._finish(reason, now)

    def add_waker(self, wake: Callable[[], None]) -> Callable[[], None]:
        with self.cond:
            self._wakers.add(wake)

        def remove() -> None:
            with self.cond:
                self._wakers.discard(wake)

        return remove

    # ---- callbacks --------------------------------------------------

    def add_callback(self, fn: _Callback) -> Callable[[], None]:
        entry = [fn, None]
        with self.cond:
            if self.closed:
                raise ClosedError("the QCluster is closed")
            self._callbacks.append(entry)
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(target=self._dispatch, name="qcluster-callbacks", daemon=True)
                self._dispatcher.start()
            self.cond.notify_all()

        def remove() -> None:
            with self.cond:
                if entry in self._callbacks:
                    self._callbacks.remove(entry)

        return remove

    def _dispatch(self) -> None:
        while True:
            with self.cond:
                while True:
                    st = self.state
                    key = _leader_key(st)
                    todo = [e for e in self._callbacks if e[1] != key]
                    if todo or self.closed:
                        break
                    self.cond.wait()
                for e in todo:
                    e[1] = key
                if not todo and self.closed:
                    return
            for e in todo:
                try:
                    e[0](st)
                except Exception:
                    log.exception("qcluster: an on_leader_change callback raised")

    # ---- closing ----------------------------------------------------

    def close(self, agent_timeout: float = 10.0) -> Optional[int]:
        with self.cond:
            if self.closed:
                return None
            self.lease.revoke()
            self._end_scopes("closed")
            self.view = (self.view[0], "closed")
            self.closed = True
            self._publish_locked()
            self.version += 1
            self.cond.notify_all()
            for wake in list(self._wakers):
                wake()
        self._stop.set()
        self._wake.set()
        self._interrupt()
        code = None
        if self.agent is not None:
            code = self.agent.stop(agent_timeout)
        self._health_wake.set()
        me = threading.current_thread()
        for t in (self._poller, self._dispatcher, self._heartbeat_thread):
            if t is not None and t is not me and t.ident is not None:
                t.join(5.0)
        return code


class QCluster:
    """One peer of a QCluster cluster, as the seed describes it.

    ``QCluster(**configuration)`` takes the seed's JSON config (this peer's
    ``identifier``, ``listen_host``, ``listen_port``, its ``peers``, and any
    other field of the agent's config format) and starts a local ``qcluster
    agent`` for it: the binary in ``$QCLUSTER_BIN``, else the ``qcluster``
    in ``PATH``. The agent exits when this process does, even when it is
    killed (it watches a pipe on its stdin), or at :meth:`close`. It returns
    once the agent answers; the leader may not be known yet
    (:meth:`wait_for_leader`). ``QCluster.connect(address)`` follows an
    agent that already runs instead.

    Application fields may sit in the same config (the seed's examples keep
    ``server_port`` there): the agent keeps unknown top-level fields, but a
    misspelt QCluster field (``listen_prot``) is an error.

    It is a context manager (``with QCluster(**conf) as cluster:``) and safe
    to use from several threads.

    Raises:
        AgentNotFoundError: no ``qcluster`` binary (the message says how to
            get one).
        AgentError: the agent refused the config (its message is included)
            or did not answer within ``start_timeout`` seconds.
        ValueError: no ``identifier`` or ``listen_port``, or a config that
            is not JSON.
    """

    _core = None  # type: _Core

    def __init__(self, **configuration: Any) -> None:
        self._start_local(configuration)

    def _start_local(
        self,
        configuration: Mapping[str, Any],
        binary: Optional[str] = None,
        start_timeout: float = 30.0,
        margin: float = DEFAULT_MARGIN,
        health_heartbeat: bool = True,
    ) -> None:
        hold = DEFAULT_ELECTION_TIMEOUT
        et = configuration.get("election_timeout")
        if et is not None:
            try:
                hold = max(parse_duration(et), hold)
            except ValueError:
                pass  # the agent refuses the config and says why
        agent = LocalAgent(configuration, binary)
        try:
            endpoint = agent.endpoint()
            agent.wait_ready(endpoint, start_timeout)
        except BaseException:
            agent.stop()  # the error carries the end of its log
            raise
        core = _Core(endpoint, hold, margin, agent)
        self._init(core)
        ttl = _health_ttl(configuration)
        if ttl is not None and health_heartbeat:
            core.start_heartbeat(ttl)

    @classmethod
    def start(
        cls,
        configuration: Mapping[str, Any],
        *,
        binary: Optional[str] = None,
        start_timeout: float = 30.0,
        margin: float = DEFAULT_MARGIN,
        health_heartbeat: bool = True,
    ) -> "QCluster":
        """``QCluster(**configuration)`` with options: the agent ``binary``
        (default ``$QCLUSTER_BIN``, else ``PATH``), how long the agent may
        take to answer (``start_timeout``, seconds), the lease ``margin``
        (seconds), and whether this process sends the TTL health check's
        heartbeat (``health_heartbeat``; see :meth:`set_health`)."""
        self = cls.__new__(cls)
        self._start_local(configuration, binary, start_timeout, margin, health_heartbeat)
        return self

    @classmethod
    def connect(
        cls,
        address: str = "http://127.0.0.1:7001",
        token: Optional[str] = None,
        tls: TLSArg = None,
        *,
        election_timeout: float = DEFAULT_ELECTION_TIMEOUT,
        margin: float = DEFAULT_MARGIN,
    ) -> "QCluster":
        """Follows an agent that already runs, at ``address``
        (``http://host:port``, ``https://host:port``, or ``host:port``).

        Args:
            token: the agents' ``api_token``, sent as a bearer token.
            tls: an ``ssl.SSLContext``, or the paths ``(ca_file, cert_file,
                key_file)``: the cluster CA and a client certificate (as
                ``qcluster tls issue`` makes them); https is then implied.
            election_timeout: the cluster's (largest) ``election_timeout``,
                in seconds: how long a lease may last (see
                :mod:`qcluster._lease`). Every process of one cluster must
                use the same value or larger.
            margin: taken off every lease, in seconds: clock-rate
                differences between this machine and the agent's.

        It returns at once; the first state arrives moments later
        (:meth:`wait_for_leader`). An agent that does not answer shows as
        ``State.error``; calls that need it raise :class:`UnreachableError`.
        """
        if not election_timeout > 0:
            raise ValueError("election_timeout must be positive (seconds)")
        self = cls.__new__(cls)
        self._init(_Core(Endpoint.parse(address, token, tls), election_timeout, margin, None))
        return self

    def _init(self, core: _Core) -> None:
        self._core = core
        self._kv = KV(core)
        core.start()
        self._finalizer = weakref.finalize(self, core.close)

    # ---- the seed's API ---------------------------------------------

    def is_leader(self) -> bool:
        """Reports whether this peer is the leader and holds the leader
        lease now: at most one process of a cluster sees True at any
        instant.

        It answers locally, without I/O or locks, from the agent's latest
        answer: true only while ``time.monotonic()`` is before that request's
        send time plus the lease the agent reported, less a margin. An agent
        that stops answering (paused, partitioned, dead) makes it false
        within one election timeout. A newly elected leader's process sees
        True one election timeout after its agent became leader (a previous
        leader's process may still hold its copy of a lease until then).
        """
        return self._core.lease.valid()

    def get_leader_info(self) -> Optional[Peer]:
        """Returns the leader as a :class:`Peer` (``host``, ``port``,
        ``identifier``, ``metadata``), or None when no leader is known: no
        majority is reachable, an election is in progress, or the agent does
        not answer. On the leader itself it names this peer only while
        :meth:`is_leader` is true. Answered locally, without I/O."""
        return self._core.leader_at()

    # ---- beyond the seed --------------------------------------------

    @property
    def identifier(self) -> Optional[str]:
        """This peer's identifier (None until the agent first answered)."""
        status = self._core.view[0]
        return status.identifier if status else None

    @property
    def address(self) -> str:
        """The agent's API address, such as ``http://127.0.0.1:7001``."""
        return self._core.endpoint.url

    @property
    def agent_log_path(self) -> Optional[str]:
        """The log file of the local agent (None for ``connect``)."""
        return self._core.agent.log_path if self._core.agent else None

    @property
    def agent_pid(self) -> Optional[int]:
        """The local agent's process id (None for ``connect``)."""
        return self._core.agent.proc.pid if self._core.agent else None

    def state(self) -> State:
        """The current :class:`State` (as the latest item of :meth:`watch`,
        re-evaluated now)."""
        with self._core.cond:
            self._core._publish_locked()
            return self._core.state

    def term(self) -> int:
        """The Raft term the agent last reported (0 before its first
        answer). While :meth:`is_leader` is true it is a fencing token:
        strictly greater than any earlier leader's. Pass it to the systems
        the leader writes to, so they can refuse a deposed leader's
        writes."""
        status = self._core.view[0]
        return status.term if status else 0

    def status(self, timeout: float = 10.0) -> Status:
        """Asks the agent for its view now (``GET /v1/status``)."""
        body, _ = self._request("GET", "/v1/status", timeout=timeout)
        return self._decode(Status.from_json, body)

    def peers(self, timeout: float = 10.0) -> List[Member]:
        """Every member of the cluster, sorted by identifier, with its role
        and health as the agent sees them (``GET /v1/peers``)."""
        body, _ = self._request("GET", "/v1/peers", timeout=timeout)
        if not isinstance(body, dict) or not isinstance(body.get("peers"), list):
            raise ProtocolError("GET /v1/peers: want an object with a peers list, got {!r}".format(body))
        return [self._decode(Member.from_json, m) for m in body["peers"]]

    def wait_for_leader(self, timeout: Optional[float] = None) -> Peer:
        """Waits until a leader is known and returns it (what
        :meth:`get_leader_info` then returns).

        Raises:
            NoLeaderError: none within ``timeout`` seconds (None: no limit).
            ClosedError: the QCluster was closed.
        """
        core = self._core
        deadline = None if timeout is None else core.clock() + timeout
        with core.cond:
            while True:
                if core.closed:
                    raise ClosedError("the QCluster is closed")
                p = core.leader_at()
                if p is not None:
                    return p
                # The leader may be this peer, whose lease starts counting
                # at a set time: wake up for it too.
                step = 0.5
                start = core.lease.valid_from()
                if math.isfinite(start):
                    step = min(step, max(0.001, start - core.clock()))
                if deadline is not None:
                    left = deadline - core.clock()
                    if left <= 0:
                        msg = "no leader known within {:g}s".format(timeout)
                        if core.view[1]:
                            msg += " (the agent: {})".format(core.view[1])
                        raise NoLeaderError(0, "no_leader", msg)
                    step = min(step, left)
                core.cond.wait(step)

    def watch(self, timeout: Optional[float] = None) -> Iterator[State]:
        """Yields the current :class:`State`, then a new one at every change
        of leadership this process sees: the leader (including "no leader":
        ``leader`` None), :meth:`is_leader`, the term, the agent's role, or
        whether the agent answers (``error``). A reader that falls behind
        skips intermediate states, never the latest. It ends at
        :meth:`close`, or after ``timeout`` seconds."""
        core = self._core
        deadline = None if timeout is None else core.clock() + timeout
        version = -1
        while True:
            left = None if deadline is None else deadline - core.clock()
            if left is not None and left <= 0:
                return
            st, v = core.wait_state(version, left)
            if v == version:
                return  # timed out
            version = v
            yield st
            if core.closed:
                return

    def on_leader_change(self, callback: Callable[[State], Any]) -> Callable[[], None]:
        """Calls ``callback(state)`` with the current :class:`State`, then
        whenever the leader, :meth:`is_leader` or the term changes. Calls come from one background thread, never
        concurrently, in order; a slow callback makes later ones skip
        intermediate states, never the latest. At :meth:`close` they see
        ``is_leader`` False and no leader, if they had not already. An
        exception in a callback is logged (logger "qcluster") and ignored.
        Returns a function that removes the callback."""
        return self._core.add_callback(callback)

    def run_while_leader(
        self, fn: Callable[[LeaderScope], Any], stop_event: Optional[threading.Event] = None
    ) -> None:
        """Calls ``fn(scope)`` each time this process gains leadership
        (:meth:`is_leader` turns true), in the calling thread, and returns
        when ``stop_event`` is set.

        ``scope`` is a :class:`LeaderScope`, a ``threading.Event`` that is
        set the moment leadership is lost: when this process's copy of the
        lease runs out (a thread waits for the lease's end as last renewed,
        so an agent that stops answering — paused, partitioned, dead — ends
        it on time, without a new answer), or at once when an answer says
        another term or no leadership, when this process hands leadership
        over (:meth:`transfer`, :meth:`resign`, :meth:`leave`), or at
        :meth:`close`. It is also set when ``fn`` returns, and when
        ``stop_event`` is set (looked at every 50 ms). ``scope.term`` is a
        fencing token; ``scope.deadline()`` is the lease's current end on
        the ``time.monotonic()`` clock, which moves forward as the lease is
        renewed. The work should check ``scope.is_set()`` (or
        ``scope.wait(...)``) between steps and stop when it is set. Two
        processes' scopes are never unset at once (their leases never
        overlap), and ``fn`` never runs twice at once here.

        When ``fn`` returns, the work is done for this tenure: ``fn`` is
        called again only after leadership is lost and gained again (no
        spinning). When ``fn`` raises, the scope is set and the exception
        propagates.

        Raises:
            ClosedError: the QCluster is closed (or closes meanwhile).
        """
        run_while_leader(self._core, fn, stop_event)

    @property
    def kv(self) -> KV:
        """The cluster's replicated key-value store (leader mode): get, list,
        put (with compare-and-swap and ephemeral keys), delete and watch,
        through this process's agent. See :class:`qcluster.KV`."""
        return self._kv

    def lock(self, name: str, timeout: Optional[float] = None, session: "Union[Session, int, None]" = None) -> "Union[Lock, SessionLock]":
        """Takes the named lock (``POST /v1/locks/{name}``) through this
        process's agent and returns it held: a :class:`qcluster.Lock`, also a
        context manager that releases it::

            with cluster.lock("backup") as lk:
                run_backup(lk.token, stop=lk.lost)

        The lock stays held while its request stays open (a background
        thread reads it); ``lk.token`` is the fencing token, ``lk.lost`` a
        ``threading.Event`` set if the lock is lost before it is released
        (the agent says so, or the stream breaks: the agent stopped or is
        unreachable). A lock is an ephemeral key of the agent's member: it
        goes when that member leaves or is removed.

        Args:
            timeout: how long to wait, in seconds, while another holder has
                it (None: as long as it takes).
            session: bind the lock to a :class:`qcluster.Session` (or a
                session ID) instead: no request stays open, and a
                :class:`qcluster.SessionLock` is returned, held until its
                ``release()`` or the end of the session
                (``SessionNotFoundError`` when the session is over).

        Raises:
            qcluster.TimeoutError: still held by another after ``timeout``
                (the API's 408 ``timeout``).
            MasterlessError, UnauthorizedError, NoLeaderError,
            UnreachableError, ClosedError.
        """
        if session is not None:
            return take_session_lock(self._core, name, timeout, session)
        return take_lock(self._core, name, timeout)

    def transfer(self, to: Optional[str] = None, timeout: float = 30.0) -> TransferResult:
        """Hands leadership to the member named ``to`` (None: the best other
        voter) and returns once it leads (any other peer when ``to`` is
        None). It may be called on any peer: a follower's ``not_leader``
        answer is followed to the leader.
        If this peer leads, :meth:`is_leader` turns false before the
        request leaves.

        Raises:
            UnknownPeerError: ``to`` is not another member.
            NoTransfereeError: there is no other voter.
            NoLeaderError: no leader is known.
            TransferFailedError: the target did not take over (it is down),
                or another member won an election meanwhile.
            TimeoutError: the hand-over did not complete in time.
        """
        body = {"identifier": to} if to else {}
        self._core.revoke()
        try:
            res, _ = self._request("POST", "/v1/leader/transfer", body, timeout)
        except NotLeaderError as e:
            if e.leader is None:
                raise
            to_leader = self._core.endpoint.with_host(e.leader.host, e.leader.port)
            res, _ = self._request("POST", "/v1/leader/transfer", body, timeout, to_leader)
        return self._decode(TransferResult.from_json, res)

    def resign(self, timeout: float = 30.0) -> TransferResult:
        """Makes this peer, which must be the leader, hand leadership to the
        best other voter without waiting for an election timeout; returns
        once another peer leads. :meth:`is_leader` turns false before the
        request leaves. Use it before stopping a leader for maintenance.

        Raises:
            NotLeaderError: this peer does not lead (``leader`` names the
                one that does).
            NoTransfereeError: there is no other voter.
        """
        self._core.revoke()
        res, _ = self._request("POST", "/v1/leader/resign", None, timeout)
        return self._decode(TransferResult.from_json, res)

    def set_metadata(self, metadata: Mapping[str, Any], timeout: float = 30.0) -> Member:
        """Replaces this peer's metadata (the whole of it; ``{}`` clears it)
        and returns the member once the cluster records it: every peer's
        ``get_leader_info()`` and ``peers()`` then show it. Numbers come back
        as floats from other peers' views.

        Raises:
            BadRequestError: metadata the agent refuses.
            NoLeaderError: no leader to commit it (the agent keeps it and
                commits it once there is one).
        """
        if not isinstance(metadata, Mapping):
            raise TypeError("metadata must be a mapping (a JSON object), not {}".format(type(metadata).__name__))
        res, _ = self._request("PUT", "/v1/self/metadata", {"metadata": dict(metadata)}, timeout)
        member = self._decode(Member.from_json, res)
        self._core._wake.set()
        return member

    def set_health(self, status: str, output: str = "", timeout: float = 10.0) -> Status:
        """Reports the application's health for the config's TTL health
        check (``"health_check": {"ttl": "3s"}``): ``status`` is
        ``"passing"`` or ``"failing"``, ``output`` a short text for humans.
        While it fails, this peer is no candidate for leadership: a leader
        hands over at once, a follower does not campaign.

        With a TTL check, ``QCluster(**conf)`` reports ``"passing"`` from a
        thread of this process three times per TTL (so a hung process loses
        leadership within the TTL); ``set_health`` changes what that thread
        reports, and reports it at once. Returns the agent's status.

        Raises:
            ValueError: a status other than "passing" or "failing".
            BadRequestError: the agent's config has no ``health_check.ttl``,
                or the output is too long.
        """
        if status not in ("passing", "failing"):
            raise ValueError('status must be "passing" or "failing", not {!r}'.format(status))
        self._core.health = (status, output)
        res, _ = self._request("PUT", "/v1/self/health", {"status": status, "output": output}, timeout)
        return self._decode(Status.from_json, res)

    def leave(self, timeout: float = 60.0) -> str:
        """Makes this peer leave the cluster gracefully (a leader hands
        over first; the others see it leave, not fail), then closes this
        QCluster: the agent stops. To come back it must join again.
        Returns its identifier.

        Raises:
            ConflictError: the last voter cannot leave.
            NoLeaderError: no leader to remove it.
        """
        self._core.revoke()
        res, _ = self._request("POST", "/v1/self/leave", None, timeout)
        left = res.get("left") if isinstance(res, dict) else None
        self.close()
        if not isinstance(left, str):
            raise ProtocolError("POST /v1/self/leave: want {{\"left\": ...}}, got {!r}".format(res))
        return left

    def close(self) -> None:
        """Stops following the agent and, for a local agent, stops it
        (cleanly: its peers see it go at once) and removes its files.
        :meth:`is_leader` is false from the start of the call. Idempotent."""
        self._finalizer()

    def __enter__(self) -> "QCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        st = self.state()
        if self._core.closed:
            what = "closed"
        elif st.is_leader:
            what = "leader"
        elif st.leader:
            what = "following " + st.leader.identifier
        else:
            what = "no leader"
        return "<QCluster {} at {}: {}>".format(self.identifier or "?", self.address, what)

    # ---- helpers ----------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[Mapping[str, Any]] = None,
        timeout: float = 30.0,
        endpoint: Optional[Endpoint] = None,
    ) -> Tuple[Any, int]:
        if self._core.closed:
            raise ClosedError("the QCluster is closed")
        return (endpoint or self._core.endpoint).request(method, path, body, timeout)

    @staticmethod
    def _decode(fn: Callable[[Any], Any], body: Any) -> Any:
        try:
            return fn(body)
        except ValueError as e:
            raise ProtocolError("the agent's answer does not decode: {}".format(e)) from None


def _health_ttl(configuration: Mapping[str, Any]) -> Optional[float]:
    """The config's ``health_check.ttl`` in seconds, or None."""
    hc = configuration.get("health_check")
    if not isinstance(hc, Mapping) or hc.get("ttl") is None:
        return None
    try:
        ttl = parse_duration(hc["ttl"])
    except ValueError:
        return None  # the agent refused the config already
    return ttl if ttl > 0 else None
