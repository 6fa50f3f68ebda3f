"""The values the SDK returns: peers, members, statuses and states.

They are immutable (named tuples), decoded strictly from the agent's JSON:
a field of the wrong type is a :class:`ValueError` (the client turns it
into :class:`qcluster.ProtocolError`); fields this SDK does not know are
ignored, as the API asks of clients.
"""

import base64
import binascii
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

__all__ = ["Peer", "Member", "Status", "State", "TransferResult", "KeyValue", "KVList", "KVResult", "KVEvent"]


def _str(obj: Mapping[str, Any], key: str, default: Optional[str] = None) -> str:
    v = obj.get(key, default)
    if not isinstance(v, str):
        raise ValueError("{}: want a string, got {!r}".format(key, v))
    return v


def _int(obj: Mapping[str, Any], key: str, default: Optional[int] = None) -> int:
    v = obj.get(key, default)
    # bool is an int in Python; JSON true is not a number.
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("{}: want an integer, got {!r}".format(key, v))
    return v


def _num(obj: Mapping[str, Any], key: str, default: Optional[float] = None) -> float:
    v = obj.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("{}: want a number, got {!r}".format(key, v))
    return float(v)


def _bool(obj: Mapping[str, Any], key: str, default: Optional[bool] = None) -> bool:
    v = obj.get(key, default)
    if not isinstance(v, bool):
        raise ValueError("{}: want true or false, got {!r}".format(key, v))
    return v


def _dict(obj: Mapping[str, Any], key: str) -> Dict[str, Any]:
    v = obj.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("{}: want an object, got {!r}".format(key, v))
    return v


def _strs(obj: Mapping[str, Any], key: str) -> List[str]:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("{}: want a list of strings, got {!r}".format(key, v))
    return list(v)


def _object(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError("{}: want a JSON object, got {!r}".format(what, obj))
    return obj


class Peer(NamedTuple):
    """A cluster member as the seed describes it.

    Attributes:
        host: the host its QCluster port (and HTTP API) is reached at.
        port: that port.
        identifier: its unique name, such as ``"server_a"``.
        metadata: its custom metadata from its config, e.g.
            ``{"server_port": 8002}`` (JSON numbers may come back as floats
            after a ``set_metadata``). Do not modify it.
    """

    host: str
    port: int
    identifier: str
    metadata: Dict[str, Any]

    @classmethod
    def from_json(cls, obj: Any) -> "Peer":
        """Decodes the API's Peer object (identifier, host, port, metadata)."""
        o = _object(obj, "peer")
        return cls(_str(o, "host"), _int(o, "port"), _str(o, "identifier"), _dict(o, "metadata"))


class Member(NamedTuple):
    """A member as ``GET /v1/peers`` shows it: a :class:`Peer` and what the
    answering agent knows about it.

    Attributes:
        host, port, identifier, metadata: as in :class:`Peer`.
        voter: it votes in elections (else a non-voting learner).
        is_leader: the answering agent knows it as the leader.
        is_self: it is the answering agent's own peer.
        role: ``"leader"``, ``"follower"``, ``"learner"``, ``"none"``, or
            ``"member"`` (masterless mode).
        state: its health from gossip: ``"alive"``, ``"suspect"``,
            ``"dead"``, ``"left"`` or ``"unknown"``.
    """

    host: str
    port: int
    identifier: str
    metadata: Dict[str, Any]
    voter: bool
    is_leader: bool
    is_self: bool
    role: str
    state: str

    @property
    def peer(self) -> Peer:
        """The member as a :class:`Peer`."""
        return Peer(self.host, self.port, self.identifier, self.metadata)

    @classmethod
    def from_json(cls, obj: Any) -> "Member":
        """Decodes the API's Member object."""
        o = _object(obj, "member")
        p = Peer.from_json(o)
        return cls(
            p.host,
            p.port,
            p.identifier,
            p.metadata,
            _bool(o, "voter", False),
            _bool(o, "is_leader", False),
            _bool(o, "is_self", False),
            _str(o, "role", ""),
            _str(o, "state", ""),
        )


class Status(NamedTuple):
    """An agent's view of the cluster, as ``GET /v1/status`` answers it.

    ``is_leader`` and ``lease_remaining_ms`` are the agent's at the moment
    it answered; :meth:`QCluster.is_leader` is what to act on.

    Attributes:
        identifier: the answering peer.
        role: ``"follower"``, ``"pre-candidate"``, ``"candidate"``,
            ``"leader"``, or ``"none"`` (masterless).
        term: the Raft term; while leading, the fencing token.
        leader: the leader this peer knows, or None.
        is_leader: this peer held the leader lease when it answered.
        lease_remaining_ms: how long that lease was still valid (else 0).
        index: the agent's change index (``X-QCluster-Index``).
        voters: identifiers of the voting members.
        learners: identifiers of the non-voting members.
        mode: ``"leader"`` or ``"masterless"``.
        joined: this peer is a member of the cluster.
    """

    identifier: str
    role: str
    term: int
    leader: Optional[Peer]
    is_leader: bool
    lease_remaining_ms: float
    index: int
    voters: List[str]
    learners: List[str]
    mode: str
    joined: bool

    @classmethod
    def from_json(cls, obj: Any) -> "Status":
        """Decodes the API's Status object."""
        o = _object(obj, "status")
        leader = o.get("leader")
        term = _int(o, "term")
        index = _int(o, "index", 0)
        lease = _num(o, "lease_remaining_ms", 0.0)
        if term < 0 or index < 0 or lease < 0 or lease != lease:
            raise ValueError("status: negative or NaN term, index or lease_remaining_ms")
        return cls(
            _str(o, "identifier"),
            _str(o, "role", ""),
            term,
            None if leader is None else Peer.from_json(leader),
            _bool(o, "is_leader"),
            lease,
            index,
            _strs(o, "voters"),
            _strs(o, "learners"),
            _str(o, "mode", "leader"),
            _bool(o, "joined", True),
        )


class State(NamedTuple):
    """What this process knows about leadership at one moment: the items of
    :meth:`QCluster.watch` and the argument of ``on_leader_change`` callbacks.

    Attributes:
        is_leader: this process may act as the leader: what
            :meth:`QCluster.is_leader` returned at that moment.
        leader: the leader, or None when none is known ("no leader": an
            election is in progress, no majority is reachable, or the agent
            does not answer).
        term: the Raft term the agent reported (0 before its first answer).
        role: the agent's role (``""`` while it does not answer).
        index: the agent's change index (0 while it does not answer).
        error: why the agent does not answer, or None while it does.
    """

    is_leader: bool
    leader: Optional[Peer]
    term: int
    role: str
    index: int
    error: Optional[str]


class TransferResult(NamedTuple):
    """The answer to a leadership hand-over (:meth:`QCluster.transfer`,
    :meth:`QCluster.resign`).

    Attributes:
        from_identifier: the peer that led and handed over.
        leader: the new leader as the old one saw it (rarely None).
        term: the new term.
        duration_ms: how long the hand-over took, as the old leader measured.
    """

    from_identifier: str
    leader: Optional[Peer]
    term: int
    duration_ms: float

    @classmethod
    def from_json(cls, obj: Any) -> "TransferResult":
        """Decodes the API's TransferResult object."""
        o = _object(obj, "transfer result")
        leader = o.get("leader")
        return cls(
            _str(o, "from"),
            None if leader is None else Peer.from_json(leader),
            _int(o, "term"),
            _num(o, "duration_ms", 0.0),
        )


def _rev(obj: Mapping[str, Any], key: str, default: Optional[int] = None) -> int:
    v = _int(obj, key, default)
    if not 0 <= v < 1 << 64:
        raise ValueError("{}: want a revision (0 to 2**64-1), got {!r}".format(key, v))
    return v


def _bytes(obj: Mapping[str, Any], key: str) -> bytes:
    v = obj.get(key)
    if v is None:
        return b""
    if not isinstance(v, str):
        raise ValueError("{}: want a base64 string, got {!r}".format(key, v))
    try:
        return base64.b64decode(v.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise ValueError("{}: not valid base64".format(key)) from None


class KeyValue(NamedTuple):
    """One key of the replicated KV store.

    Attributes:
        key: the key (at most 1024 bytes; slashes allowed: ``config/db``).
        value: the value, as bytes (``.decode()`` it for text).
        create_revision: the cluster revision that created the key.
        mod_revision: the revision of its last change: what ``cas=``
            compares with.
        version: its changes since it was created (1 at creation).
        owner: the member an ephemeral key is bound to (the key goes when
            that member leaves or is removed); None for a persistent key.
        session: the ID of the session the key is bound to (the key goes
            when the session ends); None when it is bound to none.
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    owner: Optional[str]
    session: Optional[int] = None

    @classmethod
    def from_json(cls, obj: Any) -> "KeyValue":
        """Decodes the API's KeyValue object (the value in base64)."""
        o = _object(obj, "kv")
        owner = o.get("owner")
        if owner is not None and not isinstance(owner, str):
            raise ValueError("owner: want a string, got {!r}".format(owner))
        session = None
        if o.get("session") is not None:
            session = _rev(o, "session", 1)
        return cls(
            _str(o, "key"),
            _bytes(o, "value"),
            _rev(o, "create_revision", 0),
            _rev(o, "mod_revision", 0),
            _rev(o, "version", 0),
            owner or None,
            session,
        )


def _kv_or_none(o: Mapping[str, Any], key: str) -> Optional[KeyValue]:
    v = o.get(key)
    return None if v is None else KeyValue.from_json(v)


class KVList(NamedTuple):
    """The answer of :meth:`KV.list`: unpack it as ``items, revision``.

    Attributes:
        items: the keys, sorted by key (a list of :class:`KeyValue`).
        revision: the store's revision when they were read: watch from
            ``revision + 1`` to see every later change.
    """

    items: List[KeyValue]
    revision: int

    @classmethod
    def from_json(cls, obj: Any) -> "KVList":
        """Decodes the API's KVList object (``{"revision", "kvs"}``)."""
        o = _object(obj, "kv list")
        kvs = o.get("kvs")
        if kvs is None:
            kvs = []
        if not isinstance(kvs, list):
            raise ValueError("kvs: want a list, got {!r}".format(kvs))
        return cls([KeyValue.from_json(x) for x in kvs], _rev(o, "revision"))


class KVResult(NamedTuple):
    """The answer to a change of the KV store (:meth:`KV.put`,
    :meth:`KV.delete`).

    Attributes:
        revision: the store's revision after the change.
        kv: the key after a put (None after a delete).
        prev: the key before the change, or None when it did not exist.
    """

    revision: int
    kv: Optional[KeyValue]
    prev: Optional[KeyValue]

    @classmethod
    def from_json(cls, obj: Any) -> "KVResult":
        """Decodes the API's KVResult object."""
        o = _object(obj, "kv result")
        return cls(_rev(o, "revision"), _kv_or_none(o, "kv"), _kv_or_none(o, "prev"))


class KVEvent(NamedTuple):
    """One change of the KV store, an item of :meth:`KV.watch`.

    Attributes:
        type: ``"put"`` or ``"delete"``.
        revision: the change's revision.
        kv: the key after a put; for a delete, its ``key`` with the
            deletion's revision as ``mod_revision``.
        prev: the key before the change, when the store has it (else None).
    """

    type: str
    revision: int
    kv: KeyValue
    prev: Optional[KeyValue]

    @classmethod
    def from_json(cls, obj: Any) -> "KVEvent":
        """Decodes the API's KVEvent object."""
        o = _object(obj, "kv event")
        typ = _str(o, "type")
        if typ not in ("put", "delete"):
            raise ValueError("type: want \"put\" or \"delete\", got {!r}".format(typ))
        return cls(typ, _rev(o, "revision"), KeyValue.from_json(o.get("kv")), _kv_or_none(o, "prev"))
