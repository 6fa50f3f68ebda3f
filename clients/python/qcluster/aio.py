"""The asyncio flavour: :class:`AsyncQCluster`.

It wraps a :class:`~qcluster.QCluster`: ``is_leader()``, ``get_leader_info()``
and ``term()`` stay plain methods (they answer locally, at once); the calls
that talk to the agent are coroutines that run the request in the loop's
default executor; :meth:`AsyncQCluster.watch` is an async iterator woken by
the background thread, without a thread per watcher.

::

    cluster = await AsyncQCluster.create(**conf)
    async with cluster:
        leader = await cluster.wait_for_leader(timeout=10)
        async for state in cluster.watch():
            ...
"""

import asyncio
import concurrent.futures
import functools
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Generator, List, Mapping, Optional, TypeVar, Union

from ._http import TLSArg
from ._leadership import LeaderScope
from .client import DEFAULT_ELECTION_TIMEOUT, DEFAULT_MARGIN, QCluster
from .errors import ClosedError, NoLeaderError
from .kv import KV, KVWatch, Lock, Session
from .types import KeyValue, KVEvent, KVList, KVResult, Member, Peer, State, Status, TransferResult

__all__ = ["AsyncQCluster", "AsyncKV", "AsyncKVWatch"]

T = TypeVar("T")


class AsyncQCluster:
    """:class:`~qcluster.QCluster` for asyncio code. Make one with
    :meth:`create` (a local agent) or :meth:`connect` (an agent that runs),
    or wrap a QCluster: ``AsyncQCluster(cluster)``."""

    def __init__(self, cluster: QCluster) -> None:
        self.sync = cluster  #: the wrapped QCluster
        self._kv = AsyncKV(cluster.kv)

    @classmethod
    async def create(cls, **configuration: Any) -> "AsyncQCluster":
        """``QCluster(**configuration)``, without blocking the loop while
        the agent starts."""
        loop = asyncio.get_running_loop()
        cluster = await loop.run_in_executor(None, functools.partial(QCluster.start, configuration))
        return cls(cluster)

    @classmethod
    async def connect(
        cls,
        address: str = "http://127.0.0.1:7001",
        token: Optional[str] = None,
        tls: TLSArg = None,
        *,
        election_timeout: float = DEFAULT_ELECTION_TIMEOUT,
        margin: float = DEFAULT_MARGIN,
    ) -> "AsyncQCluster":
        """:meth:`QCluster.connect`."""
        return cls(QCluster.connect(address, token, tls, election_timeout=election_timeout, margin=margin))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args))

    # Local, instant answers.

    def is_leader(self) -> bool:
        """:meth:`QCluster.is_leader` (local, no I/O)."""
        return self.sync.is_leader()

    def get_leader_info(self) -> Optional[Peer]:
        """:meth:`QCluster.get_leader_info` (local, no I/O)."""
        return self.sync.get_leader_info()

    def term(self) -> int:
        """:meth:`QCluster.term` (local, no I/O)."""
        return self.sync.term()

    def state(self) -> State:
        """:meth:`QCluster.state` (local, no I/O)."""
        return self.sync.state()

    # Calls to the agent.

    async def status(self, timeout: float = 10.0) -> Status:
        """:meth:`QCluster.status`."""
        return await self._run(self.sync.status, timeout)

    async def peers(self, timeout: float = 10.0) -> List[Member]:
        """:meth:`QCluster.peers`."""
        return await self._run(self.sync.peers, timeout)

    async def transfer(self, to: Optional[str] = None, timeout: float = 30.0) -> TransferResult:
        """:meth:`QCluster.transfer`."""
        return await self._run(self.sync.transfer, to, timeout)

    async def resign(self, timeout: float = 30.0) -> TransferResult:
        """:meth:`QCluster.resign`."""
        return await self._run(self.sync.resign, timeout)

    async def set_metadata(self, metadata: Mapping[str, Any], timeout: float = 30.0) -> Member:
        """:meth:`QCluster.set_metadata`."""
        return await self._run(self.sync.set_metadata, metadata, timeout)

    async def set_health(self, status: str, output: str = "", timeout: float = 10.0) -> Status:
        """:meth:`QCluster.set_health`."""
        return await self._run(self.sync.set_health, status, output, timeout)

    @property
    def kv(self) -> "AsyncKV":
        """:attr:`QCluster.kv` with coroutines (:class:`AsyncKV`)."""
        return self._kv

    def lock(self, name: str, timeout: Optional[float] = None, session: "Union[Session, int, None]" = None) -> "_LockRequest":
        """:meth:`QCluster.lock` for asyncio: ``async with cluster.lock(name)
        as lk:`` (released at the end of the block), or ``lk = await
        cluster.lock(name)`` (then ``await loop.run_in_executor(None,
        lk.release)``). ``lk`` is a :class:`qcluster.Lock`: ``lk.token``,
        ``lk.lost`` (a ``threading.Event``). Cancelled while waiting, the
        lock is released as soon as it would have been taken. With
        ``session=`` it is a :class:`qcluster.SessionLock`."""
        return _LockRequest(self.sync, name, timeout, session)

    async def leave(self, timeout: float = 60.0) -> str:
        """:meth:`QCluster.leave`."""
        return await self._run(self.sync.leave, timeout)

    async def close(self) -> None:
        """:meth:`QCluster.close`, without blocking the loop while the agent
        stops."""
        await self._run(self.sync.close)

    async def __aenter__(self) -> "AsyncQCluster":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # Waiting for changes.

    def on_leader_change(self, callback: Callable[[State], Any]) -> Callable[[], None]:
        """:meth:`QCluster.on_leader_change`, with the calls made on this
        event loop (call it from the loop): ``callback(state)`` for a plain
        function, a task for a coroutine function. Returns a function that
        removes the callback."""
        loop = asyncio.get_running_loop()
        is_coro = asyncio.iscoroutinefunction(callback)

        def on_loop(st: State) -> None:
            if is_coro:
                loop.create_task(callback(st))
            else:
                callback(st)

        def from_thread(st: State) -> None:
            try:
                loop.call_soon_threadsafe(on_loop, st)
            except RuntimeError:
                pass  # the loop is closed

        return self.sync.on_leader_change(from_thread)

    async def watch(self, timeout: Optional[float] = None) -> AsyncIterator[State]:
        """:meth:`QCluster.watch` as an async iterator: the current state,
        then every change, until close or ``timeout`` seconds."""
        core = self.sync._core
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:
                pass  # the loop is closed

        remove = core.add_waker(wake)
        deadline = None if timeout is None else loop.time() + timeout
        version = -1
        try:
            while True:
                changed.clear()
                st, v = core.wait_state(version, 0)
                if v != version:
                    version = v
                    yield st
                    if core.closed:
                        return
                    continue
                if core.closed:
                    return
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    return
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except asyncio.TimeoutError:
                    return
        finally:
            remove()

    async def run_while_leader(
        self, fn: Callable[[LeaderScope], Awaitable[Any]], stop_event: Optional[asyncio.Event] = None
    ) -> None:
        """:meth:`QCluster.run_while_leader` for a coroutine function: each
        time this process gains leadership, ``fn(scope)`` runs as a task on
        this loop, and that task is **cancelled** the moment leadership is
        lost (``scope``, a :class:`LeaderScope`, is set then too: its
        ``term`` is the fencing token). Returns when ``stop_event`` is set
        (the running task is cancelled first) or when this coroutine is
        cancelled; raises what ``fn`` raises (other than the cancellation),
        and ClosedError at close."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def work(scope: LeaderScope) -> None:
            # In the executor thread: run fn on the loop, cancel its task
            # when the scope ends, and wait until it has finished.
            async def runner() -> None:
                task = asyncio.current_task()
                assert task is not None

                def cancel() -> None:
                    try:
                        loop.call_soon_threadsafe(task.cancel)
                    except RuntimeError:
                        pass  # the loop is closed

                scope._call_at_end(cancel)
                await fn(scope)

            fut = asyncio.run_coroutine_threadsafe(runner(), loop)
            try:
                fut.result()
            except concurrent.futures.CancelledError:
                if not scope.is_set():
                    raise  # cancelled by someone else

        async def watch_stop() -> None:
            assert stop_event is not None
            await stop_event.wait()
            stop.set()

        stopper = loop.create_task(watch_stop()) if stop_event is not None else None
        runner = loop.run_in_executor(None, self.sync.run_while_leader, work, stop)
        try:
            await asyncio.shield(runner)
        except asyncio.CancelledError:
            stop.set()
            await runner  # the work's task is cancelled (stop_event), then it returns
            raise
        finally:
            stop.set()
            if stopper is not None:
                stopper.cancel()

    async def wait_for_leader(self, timeout: Optional[float] = None) -> Peer:
        """:meth:`QCluster.wait_for_leader`, without blocking the loop."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self.sync._core.closed:
                raise ClosedError("the QCluster is closed")
            p = self.sync.get_leader_info()
            if p is not None:
                return p
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise NoLeaderError(0, "no_leader", "no leader known within {:g}s".format(timeout))
            # Woken by every change; a leader's own lease starts counting at
            # a set time, so look again soon in any case.
            step = 0.05 if left is None else min(0.05, left)
            async for _ in self.watch(timeout=step):
                if self.sync.get_leader_info() is not None:
                    break


class _LockRequest:
    """What :meth:`AsyncQCluster.lock` returns: awaitable (the held
    :class:`Lock`) and an async context manager (that releases it)."""

    def __init__(self, cluster: QCluster, name: str, timeout: Optional[float], session: Any = None) -> None:
        self._cluster = cluster
        self._name = name
        self._timeout = timeout
        self._session = session
        self._lock = None  # type: Optional[Lock]

    async def _take(self) -> Lock:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, self._cluster.lock, self._name, self._timeout, self._session)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The request goes on in its thread: release what it takes.
            def release(f: "asyncio.Future[Lock]") -> None:
                if not f.cancelled() and f.exception() is None:
                    loop.run_in_executor(None, f.result().release)

            fut.add_done_callback(release)
            raise

    def __await__(self) -> Generator[Any, None, Lock]:
        return self._take().__await__()

    async def __aenter__(self) -> Lock:
        self._lock = await self._take()
        return self._lock

    async def __aexit__(self, *exc: Any) -> None:
        if self._lock is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._lock.release)


class AsyncKV:
    """:class:`qcluster.KV` for asyncio: ``AsyncQCluster.kv``. The calls are
    coroutines that run the request in the loop's default executor;
    :meth:`watch` is an async iterator."""

    def __init__(self, kv: KV) -> None:
        self.sync = kv  #: the wrapped KV

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args))

    async def get(self, key: str, stale: bool = False, timeout: float = 30.0) -> KeyValue:
        """:meth:`KV.get`."""
        return await self._run(self.sync.get, key, stale, timeout)

    async def list(self, prefix: str = "", stale: bool = False, timeout: float = 30.0) -> KVList:
        """:meth:`KV.list`."""
        return await self._run(self.sync.list, prefix, stale, timeout)

    async def put(
        self,
        key: str,
        value: Union[bytes, bytearray, memoryview, str],
        cas: Optional[int] = None,
        ephemeral: bool = False,
        timeout: float = 30.0,
        session: "Union[Session, int, None]" = None,
    ) -> KVResult:
        """:meth:`KV.put`."""
        return await self._run(self.sync.put, key, value, cas, ephemeral, timeout, session)

    async def session(self, ttl: float, keepalive: bool = True, timeout: float = 30.0) -> Session:
        """:meth:`KV.session` (the :class:`Session` renews itself in a
        thread; its ``close`` blocks: run it in an executor)."""
        return await self._run(self.sync.session, ttl, keepalive, timeout)

    async def sessions(self, stale: bool = False, timeout: float = 30.0) -> "List[Dict[str, Any]]":
        """:meth:`KV.sessions`."""
        return await self._run(self.sync.sessions, stale, timeout)

    async def delete(self, key: str, cas: Optional[int] = None, timeout: float = 30.0) -> KVResult:
        """:meth:`KV.delete`."""
        return await self._run(self.sync.delete, key, cas, timeout)

    def watch(self, prefix: str = "", from_revision: int = 0) -> "AsyncKVWatch":
        """:meth:`KV.watch` as an async iterator (``async for ev in
        cluster.kv.watch(...)``; ``async with`` closes it). It connects at
        the first iteration: a CompactedError or a refusal is raised there.
        While it waits for a change it occupies a thread of the loop's
        default executor."""
        return AsyncKVWatch(self.sync, prefix, from_revision)


class AsyncKVWatch:
    """An async iterator of :class:`KVEvent` (:meth:`AsyncKV.watch`)."""

    def __init__(self, kv: KV, prefix: str, from_revision: int) -> None:
        self._kv = kv
        self._prefix = prefix
        self._from = from_revision
        self._w = None  # type: Optional[KVWatch]
        self._closed = False

    def __aiter__(self) -> "AsyncKVWatch":
        return self

    async def __anext__(self) -> KVEvent:
        if self._closed:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        if self._w is None:
            self._w = await loop.run_in_executor(None, self._kv.watch, self._prefix, self._from)
            if self._closed:
                self._w.close()
                raise StopAsyncIteration
        w = self._w

        def step() -> Any:
            try:
                return next(w)
            except StopIteration:
                return StopAsyncIteration

        try:
            ev = await asyncio.shield(loop.run_in_executor(None, step))
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if ev is StopAsyncIteration:
            raise StopAsyncIteration
        return ev

    async def aclose(self) -> None:
        """Ends the watch."""
        self._closed = True
        if self._w is not None:
            self._w.close()

    @property
    def revision(self) -> int:
        """The revision of the last event delivered (0 before the first)."""
        return self._w.revision if self._w is not None else 0

    async def __aenter__(self) -> "AsyncKVWatch":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
