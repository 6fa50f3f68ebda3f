"""The replicated key-value store and named locks of a cluster in leader
mode, over the agent's HTTP API: ``cluster.kv`` (:class:`KV`) and
``cluster.lock(name)`` (:class:`Lock`).

::

    res = cluster.kv.put("config/db", b"hello", cas=0)    # create only if absent
    kv = cluster.kv.get("config/db")                       # KeyValue, or KeyNotFoundError
    items, rev = cluster.kv.list("config/")
    for ev in cluster.kv.watch("config/", from_revision=rev + 1):
        print(ev.type, ev.kv.key, ev.kv.value)

    with cluster.lock("backup") as lk:                     # held while the block runs
        run_backup(fencing_token=lk.token, stop=lk.lost)
"""

import base64
import json
import logging
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from ._http import Endpoint, Event, Stream
from .errors import (
    APIError,
    ClosedError,
    CompactedError,
    ProtocolError,
    QClusterError,
    TimeoutError,
    UnreachableError,
)
from .types import KeyValue, KVEvent, KVList, KVResult

__all__ = ["KV", "KVWatch", "Lock", "Session", "SessionLock"]

log = logging.getLogger("qcluster")

# A list answer may hold many values of up to 1 MiB each.
_MAX_LIST_BODY = 256 << 20
# One key's answer: a 1 MiB value in base64 and the JSON around it.
_MAX_GET_BODY = 4 << 20
# The agents send a keep-alive comment every 15 s on an idle stream; a
# stream silent for this long is broken (a paused agent, a lost network).
_STREAM_IDLE = 35.0
# How long the answer to a request may take beyond the wait it asks for.
_GRACE = 10.0
# The longest wait one lock request asks for (the agents' maximum, 5m).
_MAX_LOCK_WAIT = 300.0
# Reconnection back-off of a watch.
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 1.0


def key_path(key: str) -> str:
    """The path of ``key``: every byte but letters, digits and ``-_~``
    escaped, slashes and dots included (the agent unescapes the path; an
    unescaped ``.`` or ``..`` segment would be cleaned away)."""
    return "/v1/kv/" + _escape(key)


def _escape(s: str) -> str:
    return urllib.parse.quote(s.encode("utf-8"), safe="").replace(".", "%2E")


def _check_key(key: Any, what: str = "key", empty_ok: bool = False) -> str:
    if not isinstance(key, str):
        raise TypeError("{} must be a str, not {}".format(what, type(key).__name__))
    if not key and not empty_ok:
        raise ValueError("{} must not be empty".format(what))
    return key


def _check_rev(rev: Any, what: str) -> int:
    if isinstance(rev, bool) or not isinstance(rev, int) or not 0 <= rev < 1 << 64:
        raise ValueError("{} must be a revision: an int from 0 to 2**64-1, not {!r}".format(what, rev))
    return rev


def _decode(fn: Callable[[Any], Any], body: Any, what: str) -> Any:
    try:
        return fn(body)
    except ValueError as e:
        raise ProtocolError("{}: the agent's answer does not decode: {}".format(what, e)) from None


class _Closer:
    """Calls ``on_close`` when the QCluster closes (it ends a stream)."""

    def __init__(self, core: Any, on_close: Callable[[], None]) -> None:
        self._core = core
        self._on_close = on_close
        self._remove = core.add_waker(self._wake)  # type: Optional[Callable[[], None]]

    def _wake(self) -> None:  # under core.cond, at every change of state: cheap
        if self._core.closed:
            self._on_close()

    def remove(self) -> None:
        r, self._remove = self._remove, None
        if r is not None:
            r()


class KV:
    """The cluster's replicated key-value store: ``cluster.kv``.

    Every call goes to this process's agent, which forwards what needs the
    leader. Reads are linearizable unless ``stale=True`` (the agent's own
    copy, which needs no leader and may be behind). Changes carry the API
    token and return once applied. Errors: :class:`KeyNotFoundError`,
    :class:`CompareFailedError` (with ``.kv``, the key as it is),
    :class:`QuotaError`, :class:`TooLargeError`, :class:`NoLeaderError`,
    :class:`MasterlessError`, :class:`UnauthorizedError`,
    :class:`BadRequestError`, :class:`UnreachableError`,
    :class:`ClosedError`.
    """

    def __init__(self, core: Any) -> None:
        self._core = core

    @property
    def _endpoint(self) -> Endpoint:
        if self._core.closed:
            raise ClosedError("the QCluster is closed")
        return self._core.endpoint

    def get(self, key: str, stale: bool = False, timeout: float = 30.0) -> KeyValue:
        """Returns the key as a :class:`KeyValue` (``GET /v1/kv/{key}``).

        Raises:
            KeyNotFoundError: the key does not exist.
            NoLeaderError: a linearizable read without a leader.
        """
        _check_key(key)
        path = key_path(key) + ("?stale" if stale else "")
        body, _ = self._endpoint.request("GET", path, timeout=timeout, max_body=_MAX_GET_BODY)
        lst = _decode(KVList.from_json, body, "GET " + path)
        if len(lst.items) != 1:
            raise ProtocolError("GET {}: {} keys in the answer, want 1".format(path, len(lst.items)))
        return lst.items[0]

    def list(self, prefix: str = "", stale: bool = False, timeout: float = 30.0) -> KVList:
        """Returns every key beginning with ``prefix`` (all keys when it is
        empty), sorted by key, and the store's revision: a
        :class:`KVList` that unpacks as ``items, revision``. Watch from
        ``revision + 1`` to see every change after it."""
        _check_key(prefix, "prefix", empty_ok=True)
        path = key_path(prefix) + "?prefix" + ("&stale" if stale else "")
        body, _ = self._endpoint.request("GET", path, timeout=timeout, max_body=_MAX_LIST_BODY)
        return _decode(KVList.from_json, body, "GET " + path)

    def put(
        self,
        key: str,
        value: Union[bytes, bytearray, memoryview, str],
        cas: Optional[int] = None,
        ephemeral: bool = False,
        timeout: float = 30.0,
        session: "Union[Session, int, None]" = None,
    ) -> KVResult:
        """Sets ``key`` to ``value`` (bytes, or a str sent as UTF-8) and
        returns the :class:`KVResult` once the change is applied.

        Args:
            cas: compare-and-swap: apply only if the key's ``mod_revision``
                is ``cas``; ``cas=0``: only if the key does not exist.
            ephemeral: bind the key to this agent's member: it is deleted
                when that member leaves or is removed.
            session: bind the key to a :class:`Session` (or a session ID):
                it is deleted when the session ends. Not with
                ``ephemeral``; :class:`SessionNotFoundError` when the
                session is over.

        Raises:
            CompareFailedError: ``cas`` does not hold; ``.kv`` is the key
                as it is (None when it does not exist).
            QuotaError: the store would go over its quota.
            TooLargeError: a value over 1 MiB.
        """
        _check_key(key)
        if isinstance(value, str):
            raw = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
        else:
            raise TypeError("value must be bytes or str, not {}".format(type(value).__name__))
        q = []
        if cas is not None:
            q.append("cas={}".format(_check_rev(cas, "cas")))
        if ephemeral:
            q.append("ephemeral")
        if session is not None:
            q.append("session={}".format(_session_id(session)))
        path = key_path(key) + ("?" + "&".join(q) if q else "")
        body, _ = self._endpoint.request(
            "PUT", path, {"value": base64.b64encode(raw).decode("ascii")}, timeout, max_body=_MAX_GET_BODY * 2
        )
        return _decode(KVResult.from_json, body, "PUT " + path)

    def delete(self, key: str, cas: Optional[int] = None, timeout: float = 30.0) -> KVResult:
        """Deletes ``key`` and returns the :class:`KVResult` (its ``prev``
        is the key as it was) once the change is applied.

        Raises:
            KeyNotFoundError: the key does not exist.
            CompareFailedError: ``cas`` (the key's ``mod_revision``) does
                not hold; ``.kv`` is the key as it is.
        """
        _check_key(key)
        path = key_path(key)
        if cas is not None:
            path += "?cas={}".format(_check_rev(cas, "cas"))
        body, _ = self._endpoint.request("DELETE", path, None, timeout, max_body=_MAX_GET_BODY * 2)
        return _decode(KVResult.from_json, body, "DELETE " + path)

    def session(self, ttl: float, keepalive: bool = True, timeout: float = 30.0) -> "Session":
        """Creates a session with a TTL of ``ttl`` seconds
        (``POST /v1/sessions``; from 1 s to 24 h) and returns it as a
        :class:`Session`. With ``keepalive`` (the default) a thread renews
        it every third of its TTL until :meth:`Session.close`; without,
        call :meth:`Session.renew` within every TTL. Keys put with
        ``session=`` go when it ends.

        Raises:
            BadRequestError: a TTL out of bounds.
        """
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError("ttl must be a positive number of seconds, not {!r}".format(ttl))
        body, _ = self._endpoint.request("POST", "/v1/sessions", {"ttl": "{}ms".format(int(ttl * 1000))}, timeout)
        sid, ttl_s, owner = _decode(_session_from_json, body, "POST /v1/sessions")
        return Session(self, sid, ttl_s, owner, keepalive)

    def sessions(self, stale: bool = False, timeout: float = 30.0) -> "List[Dict[str, Any]]":
        """The sessions (``GET /v1/sessions``), each a dict with ``id``,
        ``ttl`` (seconds) and ``owner``."""
        path = "/v1/sessions" + ("?stale" if stale else "")
        body, _ = self._endpoint.request("GET", path, timeout=timeout)
        items = body.get("sessions") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ProtocolError("GET /v1/sessions: the answer has no sessions list")
        out = []
        for it in items:
            sid, ttl_s, owner = _decode(_session_from_json, it, "GET /v1/sessions")
            out.append({"id": sid, "ttl": ttl_s, "owner": owner})
        return out

    def watch(self, prefix: str = "", from_revision: int = 0) -> "KVWatch":
        """Streams every change of the keys beginning with ``prefix``, in
        order, from revision ``from_revision`` (0: the changes after now),
        over ``GET /v1/kv-watch``: a :class:`KVWatch`, an iterator of
        :class:`KVEvent`.

        It connects before returning, so that a refusal raises here. When
        the stream breaks (the agent restarts, a network failure, no
        keep-alive within 35 s), it connects again, with ``Last-Event-ID``,
        from right after the last event received: no change is lost or
        repeated. Iteration ends at :meth:`KVWatch.close` or when the
        QCluster closes.

        Raises:
            CompactedError: ``from_revision`` (or, later, the revision to go
                on from) is older than the history the store keeps;
                ``.oldest`` says which revision is the oldest kept.
        """
        _check_key(prefix, "prefix", empty_ok=True)
        w = KVWatch(self._core, prefix, _check_rev(from_revision, "from_revision"))
        try:
            w._connect()
        except BaseException:
            w.close()
            raise
        return w


class KVWatch:
    """An iterator of :class:`KVEvent`: the changes of the keys under a
    prefix, in order, without loss across reconnections
    (:meth:`KV.watch`). Close it (or use it as a context manager) when done;
    :meth:`close` may be called from another thread, and ends an iteration
    blocked in it."""

    def __init__(self, core: Any, prefix: str, from_revision: int) -> None:
        self._core = core
        self.prefix = prefix
        self._from = from_revision  # before any event: where to start
        self._last_id = None  # type: Optional[str]
        self._stream = None  # type: Optional[Stream]
        self._closed = False
        self._busy = False  # __next__ runs (and will close the stream)
        self._stop = threading.Event()  # set by close(): ends a back-off
        self._lock = threading.Lock()
        self._closer = _Closer(core, self.close)
        #: The revision of the last event delivered (0 before the first).
        self.revision = 0

    def _path(self) -> str:
        q = {}  # type: Dict[str, str]
        if self.prefix:
            q["prefix"] = self.prefix
        if self._from > 0 and self._last_id is None:
            q["from"] = str(self._from)
        return "/v1/kv-watch" + ("?" + urllib.parse.urlencode(q) if q else "")

    def _connect(self) -> None:
        """Opens the stream and reads its first block (the retry hint, or
        "compacted")."""
        if self._core.closed:
            raise ClosedError("the QCluster is closed")
        headers = {"Last-Event-ID": self._last_id} if self._last_id else None
        s = self._core.endpoint.open_stream("GET", self._path(), _STREAM_IDLE, headers)
        with self._lock:
            if self._closed or self._core.closed:
                s.close()
                raise ClosedError("the watch is closed")
            self._stream = s
        if self._from == 0 and self._last_id is None:
            # From now: a reconnection goes on from where this one starts.
            self._from = s.index + 1
        ev = s.next()
        if ev.event == "compacted":
            self._drop()
            raise CompactedError(_oldest(ev, s.what))
        if ev.event:
            self._drop()
            raise ProtocolError("{}: the stream begins with a {!r} event, not the retry hint".format(s.what, ev.event))

    def _drop(self) -> None:
        with self._lock:
            s, self._stream = self._stream, None
        if s is not None:
            s.close()

    def __iter__(self) -> "KVWatch":
        return self

    def __next__(self) -> KVEvent:
        with self._lock:
            if self._busy:
                raise RuntimeError("KVWatch: one iteration at a time")
            self._busy = True
        try:
            return self._next()
        finally:
            with self._lock:
                self._busy = False
                closed = self._closed
            if closed:
                self._drop()

    def _next(self) -> KVEvent:
        backoff = 0.0
        while True:
            if self._closed or self._core.closed:
                self._drop()
                raise StopIteration
            s = self._stream
            if s is None:
                try:
                    self._connect()
                    backoff = 0.0
                    continue
                except CompactedError:
                    self.close()
                    raise
                except ClosedError:
                    continue
                except APIError as e:
                    if e.status < 500:
                        self.close()  # refused (unauthorized, bad request, masterless)
                        raise
                    log.debug("kv watch: %s; connecting again", e)
                except (UnreachableError, ProtocolError) as e:
                    log.debug("kv watch: %s; connecting again", e)
                backoff = min(max(backoff * 2, _BACKOFF_MIN), _BACKOFF_MAX)
                self._stop.wait(backoff)
                continue
            try:
                ev = s.next()
            except QClusterError as e:
                self._drop()
                log.debug("kv watch: %s; connecting again", e)
                continue
            if ev.event in ("put", "delete"):
                try:
                    kev = _decode_event(ev, s.what)
                except ProtocolError:
                    self.close()  # not the API's: say so, rather than skip a change
                    raise
                if ev.id:
                    self._last_id = ev.id
                self.revision = kev.revision
                return kev
            if ev.event == "compacted":
                self.close()
                raise CompactedError(_oldest(ev, s.what))
            # the retry hint, or an event this SDK does not know: skip it

    def close(self) -> None:
        """Ends the watch (from any thread); iteration then stops."""
        with self._lock:
            self._closed = True
            s = self._stream
            busy = self._busy
        self._stop.set()
        if s is not None:
            s.interrupt()
        if not busy:
            self._drop()  # else the iteration does, as it ends
        self._closer.remove()

    def __enter__(self) -> "KVWatch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _decode_event(ev: Event, what: str) -> KVEvent:
    try:
        return KVEvent.from_json(json.loads(ev.data))
    except ValueError as e:
        raise ProtocolError("{}: a {!r} event that is not a KVEvent: {}".format(what, ev.event, e)) from None


def _oldest(ev: Event, what: str) -> int:
    try:
        o = json.loads(ev.data)
        n = o["oldest"] if isinstance(o, dict) else None
    except (ValueError, KeyError):
        n = None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ProtocolError("{}: a compacted event without an oldest revision: {!r}".format(what, ev.data[:200]))
    return n


class Lock:
    """A held named lock (:meth:`QCluster.lock`): held while its request
    (``POST /v1/locks/{name}``) stays open, released by :meth:`release` or
    at the end of the ``with`` block.

    Attributes:
        name: the lock's name.
        token: the fencing token: the revision at which the lock was
            taken, larger for every later holder. Pass it to what the lock
            protects so that it can refuse a stale holder.
        lost: a ``threading.Event`` set when the lock is lost before it is
            released: the agent said so (its member was removed, the key
            deleted, the agent stopping), or the stream broke or went silent
            (the agent died, the network failed). Stop the guarded work
            then.
        lost_reason: why it was lost (None while it is not).
    """

    def __init__(self, core: Any, name: str, token: int, stream: Stream) -> None:
        self._core = core
        self.name = name
        self.token = token
        self.lost = threading.Event()
        self.lost_reason = None  # type: Optional[str]
        self._stream = stream
        self._released = False
        self._mu = threading.Lock()
        self._closer = _Closer(core, stream.interrupt)
        self._reader = threading.Thread(target=self._read, name="qcluster-lock-" + name[:32], daemon=True)
        self._reader.start()

    def _read(self) -> None:
        s = self._stream
        reason = "the stream ended"
        try:
            while True:
                ev = s.next()
                if ev.event == "lost":
                    reason = "the agent says the lock is lost"
                    break
        except QClusterError as e:
            reason = str(e)
        finally:
            s.close()
        with self._mu:
            if not self._released:
                if self._core.closed:
                    reason = "the QCluster was closed"
                self.lost_reason = reason
                self.lost.set()

    @property
    def held(self) -> bool:
        """True until the lock is released or lost."""
        return not self._released and not self.lost.is_set()

    def release(self, timeout: float = 10.0) -> None:
        """Releases the lock: closes its request (the agent releases it as
        soon as it sees the connection close). Returns once the request is
        closed. Safe more than once, and after the lock was lost."""
        with self._mu:
            if not self.lost.is_set():
                self._released = True
        self._stream.interrupt()
        self._closer.remove()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout)

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        what = "held" if self.held else ("lost" if self.lost.is_set() else "released")
        return "<qcluster.Lock {!r} token {}: {}>".format(self.name, self.token, what)


def _lock_deadline(name: str, timeout: Optional[float]) -> Optional[float]:
    """Checks a lock's name and timeout; returns the monotonic deadline
    (None: no timeout)."""
    if not isinstance(name, str):
        raise TypeError("name must be a str, not {}".format(type(name).__name__))
    if not name:
        raise ValueError("the lock name must not be empty")
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be positive (seconds), or None to wait as long as it takes")
    return None if timeout is None else time.monotonic() + timeout


def _lock_wait(core: Any, name: str, timeout: Optional[float], deadline: Optional[float]) -> float:
    """The wait of the next lock request (at most _MAX_LOCK_WAIT); raises
    ClosedError when core is closed, TimeoutError when deadline passed."""
    if core.closed:
        raise ClosedError("the QCluster is closed")
    wait = _MAX_LOCK_WAIT if deadline is None else min(_MAX_LOCK_WAIT, deadline - time.monotonic())
    if wait <= 0:
        raise TimeoutError(
            408, "timeout", "the lock {!r} is held by another holder; it was not released within {:g}s".format(name, timeout)
        )
    return wait


def take_lock(core: Any, name: str, timeout: Optional[float]) -> Lock:
    """Takes the lock ``name`` through ``core``'s agent (see
    :meth:`QCluster.lock`)."""
    deadline = _lock_deadline(name, timeout)
    path = "/v1/locks/" + _escape(name)
    while True:
        wait = _lock_wait(core, name, timeout, deadline)
        q = "?wait={}ms".format(max(1, int(wait * 1000)))
        try:
            s = core.endpoint.open_stream("POST", path + q, wait + _GRACE)
        except TimeoutError as e:
            if e.status == 408 and deadline is None:
                continue  # still held by another: ask again
            if e.status == 408:
                raise TimeoutError(
                    e.status,
                    e.code,
                    "the lock {!r} is held by another holder; it was not released within {:g}s (timeout=)".format(
                        name, timeout
                    ),
                ) from None
            raise
        try:
            s.sock.settimeout(_STREAM_IDLE)
            ev = s.next()
            while not ev.event:
                ev = s.next()  # the retry hint
            if ev.event != "acquired":
                raise ProtocolError("{}: the first event is {!r}, not \"acquired\"".format(s.what, ev.event))
            token = _lock_token(ev, name, s.what)
        except BaseException:
            s.close()
            raise
        return Lock(core, name, token, s)


def _lock_token(ev: Event, name: str, what: str) -> int:
    try:
        o = json.loads(ev.data)
    except ValueError:
        o = None
    tok = o.get("token") if isinstance(o, dict) else None
    if isinstance(tok, bool) or not isinstance(tok, int) or not 0 < tok < 1 << 64 or o.get("name") != name:
        raise ProtocolError("{}: an acquired event that is not this lock's: {!r}".format(what, ev.data[:200]))
    return tok


def _session_id(session: Any) -> int:
    sid = session.id if isinstance(session, Session) else session
    if isinstance(sid, bool) or not isinstance(sid, int) or not 0 < sid < 1 << 64:
        raise ValueError("session must be a Session or a session ID (a positive int), not {!r}".format(session))
    return sid


def _parse_duration(s: Any) -> float:
    """Seconds of a Go duration as the agents write it ("1m30s", "500ms")."""
    if not isinstance(s, str) or not s:
        raise ValueError("want a duration, got {!r}".format(s))
    units = (("h", 3600.0), ("ms", 0.001), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("m", 60.0), ("s", 1.0))
    total, rest = 0.0, s
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        if i == 0:
            raise ValueError("want a duration, got {!r}".format(s))
        num, rest = float(rest[:i]), rest[i:]
        for u, mult in units:
            if rest.startswith(u):
                total += num * mult
                rest = rest[len(u):]
                break
        else:
            raise ValueError("want a duration, got {!r}".format(s))
    return total


def _session_from_json(obj: Any) -> Tuple[int, float, str]:
    if not isinstance(obj, dict):
        raise ValueError("want a session object, got {!r}".format(obj))
    sid, owner = obj.get("id"), obj.get("owner")
    if isinstance(sid, bool) or not isinstance(sid, int) or not 0 < sid < 1 << 64 or not isinstance(owner, str):
        raise ValueError("not a session: {!r}".format(obj))
    return sid, _parse_duration(obj.get("ttl")), owner


class Session:
    """A session of the KV store (:meth:`KV.session`): it lives while
    renewed within its TTL; the keys put with ``session=`` go when it ends
    (closed, expired, or its member gone).

    Attributes:
        id: the session's ID.
        ttl: its TTL, in seconds.
        owner: the member that granted it.
        done: a ``threading.Event`` set once the session is over as far as
            this process knows: closed, found gone at a renewal, or no
            renewal succeeded for a whole TTL.
    """

    def __init__(self, kv: KV, sid: int, ttl: float, owner: str, keepalive: bool) -> None:
        self._kv = kv
        self.id = sid
        self.ttl = ttl
        self.owner = owner
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]
        if keepalive:
            self._thread = threading.Thread(target=self._keepalive, name="qcluster-session-{}".format(sid), daemon=True)
            self._thread.start()

    def renew(self, timeout: float = 30.0) -> None:
        """Renews the session (``PUT /v1/sessions/{id}/renew``).

        Raises:
            SessionNotFoundError: the session is over.
        """
        self._kv._endpoint.request("PUT", "/v1/sessions/{}/renew".format(self.id), None, timeout)

    def _keepalive(self) -> None:
        every = self.ttl / 3
        last_ok = time.monotonic()
        delay = every
        try:
            while not self._stop.wait(delay):
                start = time.monotonic()
                if start - last_ok >= self.ttl:
                    return  # no renewal for a whole TTL: over
                try:
                    self.renew(timeout=every)
                except APIError as e:
                    if e.code == "session_not_found":
                        return
                    delay = min(every / 2, max(every / 8, delay / 2))
                    continue
                except QClusterError:
                    delay = min(every / 2, max(every / 8, delay / 2))
                    continue
                last_ok, delay = start, max(0.0, every - (time.monotonic() - start))
        finally:
            self.done.set()

    def close(self, timeout: float = 30.0) -> None:
        """Stops renewing the session and revokes it
        (``DELETE /v1/sessions/{id}``), deleting its keys. A session
        already over is not an error."""
        self._stop.set()
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        try:
            self._kv._endpoint.request("DELETE", "/v1/sessions/{}".format(self.id), None, timeout)
        except APIError as e:
            if e.code != "session_not_found":
                raise
        self.done.set()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<qcluster.Session {} ttl {:g}s: {}>".format(self.id, self.ttl, "over" if self.done.is_set() else "live")


class SessionLock:
    """A named lock bound to a session (:meth:`QCluster.lock` with
    ``session=``): no request stays open; it is held until
    :meth:`release` or until the session ends (the agents then delete it).

    Attributes:
        name: the lock's name.
        token: the fencing token.
        session: the session's ID.
        lost: the session's ``done`` event when a :class:`Session` was
            given (set once the session is over: the lock is gone with it);
            an event never set for a bare session ID.
    """

    def __init__(self, core: Any, name: str, token: int, session: "Union[Session, int]") -> None:
        self._core = core
        self.name = name
        self.token = token
        self.session = _session_id(session)
        self.lost = session.done if isinstance(session, Session) else threading.Event()
        self._released = False

    @property
    def held(self) -> bool:
        """True until the lock is released or its session is over."""
        return not self._released and not self.lost.is_set()

    def release(self, timeout: float = 10.0) -> None:
        """Releases the lock (``DELETE /v1/locks/{name}?token=``). A lock
        no longer held (its session over) is not an error; safe more than
        once."""
        if self._released:
            return
        path = "/v1/locks/{}?token={}".format(_escape(self.name), self.token)
        try:
            self._core.endpoint.request("DELETE", path, None, timeout)
        except APIError as e:
            if e.code != "key_not_found":
                raise
        self._released = True

    def __enter__(self) -> "SessionLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        what = "held" if self.held else ("lost" if self.lost.is_set() else "released")
        return "<qcluster.SessionLock {!r} token {} session {}: {}>".format(self.name, self.token, self.session, what)


def take_session_lock(core: Any, name: str, timeout: Optional[float], session: "Union[Session, int]") -> SessionLock:
    """Takes the lock ``name`` bound to ``session`` through ``core``'s
    agent (``POST /v1/locks/{name}?session=``)."""
    deadline = _lock_deadline(name, timeout)
    sid = _session_id(session)
    path = "/v1/locks/" + _escape(name)
    while True:
        wait = _lock_wait(core, name, timeout, deadline)
        q = "?wait={}ms&session={}".format(max(1, int(wait * 1000)), sid)
        try:
            body, _ = core.endpoint.request("POST", path + q, None, wait + _GRACE)
        except TimeoutError as e:
            if e.status == 408 and deadline is None:
                continue  # still held by another: ask again
            raise
        tok = body.get("token") if isinstance(body, dict) else None
        if isinstance(tok, bool) or not isinstance(tok, int) or not 0 < tok < 1 << 64 or body.get("name") != name or body.get("session") != sid:
            raise ProtocolError("POST {}: an answer that is not this lock's: {!r}".format(path, body))
        return SessionLock(core, name, tok, session)
