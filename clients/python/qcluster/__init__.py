"""QCluster for Python: leader election and a member registry for your
service, from the standard library only.

The seed's API::

    from qcluster import QCluster

    cluster = QCluster(**configuration)   # the peer's JSON config, as keyword arguments
    if cluster.is_leader():
        print("I am the leader")
    leader = cluster.get_leader_info()    # Peer(host, port, identifier, metadata), or None

``QCluster(**configuration)`` runs a local ``qcluster agent`` (the Go
binary: ``$QCLUSTER_BIN``, else ``PATH``) that lives and dies with this
process; ``QCluster.connect("http://127.0.0.1:7001")`` follows an agent that
already runs. ``cluster.kv`` is the replicated key-value store and
``cluster.lock(name)`` a named lock (leader mode). :class:`AsyncQCluster`
is the asyncio flavour. Errors are the
classes of :mod:`qcluster.errors`, named after the HTTP API's error codes.
"""

from ._version import __version__
from .aio import AsyncKV, AsyncKVWatch, AsyncQCluster
from .client import DEFAULT_ELECTION_TIMEOUT, DEFAULT_MARGIN, QCluster
from .errors import (
    AgentError,
    AgentNotFoundError,
    APIError,
    BadRequestError,
    ClosedError,
    ConflictError,
    InternalError,
    MasterlessError,
    MethodNotAllowedError,
    NoLeaderError,
    NotFoundError,
    NotJoinedError,
    NotLeaderError,
    NoTransfereeError,
    ProtocolError,
    QClusterError,
    TimeoutError,
    TooLargeError,
    TransferFailedError,
    UnauthorizedError,
    UnavailableError,
    UnknownPeerError,
    UnreachableError,
    WrongClusterError,
    CrossOriginError,
    UnsupportedMediaTypeError,
    WouldLoseQuorumError,
    KeyNotFoundError,
    SessionNotFoundError,
    CompareFailedError,
    QuotaError,
    UnsupportedError,
    CompactedError,
)
from ._leadership import LeaderScope
from .kv import KV, KVWatch, Lock, Session, SessionLock
from .types import KeyValue, KVEvent, KVList, KVResult, Member, Peer, State, Status, TransferResult

# TimeoutError is left out on purpose: `from qcluster import *` must not
# hide the builtin. Use qcluster.TimeoutError.
__all__ = [
    "__version__",
    "QCluster",
    "AsyncQCluster",
    "DEFAULT_ELECTION_TIMEOUT",
    "DEFAULT_MARGIN",
    "Peer",
    "Member",
    "Status",
    "State",
    "TransferResult",
    "KeyValue",
    "KVList",
    "KVResult",
    "KVEvent",
    "KV",
    "KVWatch",
    "Lock",
    "Session",
    "SessionLock",
    "AsyncKV",
    "AsyncKVWatch",
    "LeaderScope",
    "QClusterError",
    "APIError",
    "AgentError",
    "AgentNotFoundError",
    "BadRequestError",
    "ClosedError",
    "ConflictError",
    "InternalError",
    "MasterlessError",
    "MethodNotAllowedError",
    "NoLeaderError",
    "NotFoundError",
    "NotJoinedError",
    "NotLeaderError",
    "NoTransfereeError",
    "ProtocolError",
    "TooLargeError",
    "TransferFailedError",
    "UnauthorizedError",
    "UnavailableError",
    "UnknownPeerError",
    "UnreachableError",
    "WrongClusterError",
    "CrossOriginError",
    "UnsupportedMediaTypeError",
    "WouldLoseQuorumError",
    "KeyNotFoundError",
    "SessionNotFoundError",
    "CompareFailedError",
    "QuotaError",
    "UnsupportedError",
    "CompactedError",
]
