"""Exceptions of the QCluster SDK.

Every error a QCluster agent answers with carries a stable ``code`` (the
error table of the HTTP API, docs/api.md); the SDK raises the exception
class named after that code, a subclass of :class:`APIError`:

=====================  ======================  ======
code                   exception               status
=====================  ======================  ======
``bad_request``        BadRequestError         400
``unknown_peer``       UnknownPeerError        400/404
``unauthorized``       UnauthorizedError       401
``cross_origin``       CrossOriginError        403
``not_found``          NotFoundError           404
``method_not_allowed`` MethodNotAllowedError   405
``not_leader``         NotLeaderError          409
``no_transferee``      NoTransfereeError       409
``transfer_failed``    TransferFailedError     409
``conflict``           ConflictError           409
``would_lose_quorum``  WouldLoseQuorumError    409
``wrong_cluster``      WrongClusterError       409
``masterless``         MasterlessError         409
``too_large``          TooLargeError           413
``unsupported_media_type`` UnsupportedMediaTypeError 415
``key_not_found``      KeyNotFoundError        404
``session_not_found``  SessionNotFoundError    404
``compare_failed``     CompareFailedError      409
``quota``              QuotaError              507
``unsupported``        UnsupportedError        501
``internal``           InternalError           500
``no_leader``          NoLeaderError           503
``not_joined``         NotJoinedError          503
``unavailable``        UnavailableError        503
``timeout``            TimeoutError            504/408
=====================  ======================  ======

A code this SDK does not know yet raises :class:`APIError` itself.

Errors that do not come from an agent's answer: :class:`UnreachableError`
(no answer at all), :class:`ProtocolError` (an answer that is not the API's),
:class:`AgentError` (the local agent cannot be found, started, or stopped
on its own), :class:`ClosedError` (the QCluster was closed),
:class:`CompactedError` (a KV watch's history is gone: the stream's
``compacted`` event).

``qcluster.TimeoutError`` is also a :class:`builtins.TimeoutError`; it is
left out of ``from qcluster import *`` so that it never hides the builtin.
"""

import builtins
from typing import Any, Dict, Optional, Type

from .types import KeyValue, Peer

__all__ = [
    "QClusterError",
    "APIError",
    "BadRequestError",
    "UnknownPeerError",
    "UnauthorizedError",
    "NotFoundError",
    "MethodNotAllowedError",
    "NotLeaderError",
    "NoTransfereeError",
    "TransferFailedError",
    "ConflictError",
    "WrongClusterError",
    "MasterlessError",
    "TooLargeError",
    "InternalError",
    "NoLeaderError",
    "NotJoinedError",
    "UnavailableError",
    "UnreachableError",
    "ProtocolError",
    "AgentError",
    "AgentNotFoundError",
    "ClosedError",
    "KeyNotFoundError",
    "SessionNotFoundError",
    "CompareFailedError",
    "QuotaError",
    "UnsupportedError",
    "CompactedError",
]


class QClusterError(Exception):
    """The base class of every exception the SDK raises."""


class APIError(QClusterError):
    """An error answer from a QCluster agent.

    Attributes:
        status: the HTTP status code (409, 503, ...).
        code: the API's stable error code (``"no_leader"``, ...).
        message: the agent's human-readable message.
        leader: with code ``not_leader``, the leader the request must go to.
    """

    #: The error code this class stands for ("" for the base class).
    code_name = ""

    def __init__(
        self, status: int, code: str, message: str, leader: Optional[Peer] = None, kv: Optional[KeyValue] = None
    ) -> None:
        super().__init__("{} ({}, HTTP {})".format(message, code, status))
        self.status = status
        self.code = code
        self.message = message
        self.leader = leader
        #: With code ``compare_failed``: the key as it is (None when absent).
        self.kv = kv


class BadRequestError(APIError):
    """``bad_request``: a bad query parameter, body or field (the message names it)."""

    code_name = "bad_request"


class UnknownPeerError(APIError):
    """``unknown_peer``: no member has that identifier (or a transfer names no other member)."""

    code_name = "unknown_peer"


class UnauthorizedError(APIError):
    """``unauthorized``: the API token is missing or wrong."""

    code_name = "unauthorized"


class NotFoundError(APIError):
    """``not_found``: no such endpoint (an agent older than this SDK?)."""

    code_name = "not_found"


class MethodNotAllowedError(APIError):
    """``method_not_allowed``: the endpoint does not take this method."""

    code_name = "method_not_allowed"


class NotLeaderError(APIError):
    """``not_leader``: the call must go to the leader, named by :attr:`leader`.

    The SDK also raises it, with status 0, for :meth:`QCluster.resign` on a
    peer that does not lead.
    """

    code_name = "not_leader"


class NoTransfereeError(APIError):
    """``no_transferee``: there is no other voter to hand leadership to."""

    code_name = "no_transferee"


class TransferFailedError(APIError):
    """``transfer_failed``: the member chosen to take over did not."""

    code_name = "transfer_failed"


class ConflictError(APIError):
    """``conflict``: the change conflicts with the membership."""

    code_name = "conflict"


class CrossOriginError(APIError):
    """403: the agent refused a change that looked sent by a web page of
    another origin (this SDK never sends an Origin header)."""

    code_name = "cross_origin"


class UnsupportedMediaTypeError(APIError):
    """415: a change without ``Content-Type: application/json`` (this SDK
    always sends it)."""

    code_name = "unsupported_media_type"


class WouldLoseQuorumError(ConflictError):
    """409: removing that voter would leave voters of which fewer than a
    majority are alive: they could not elect a leader."""

    code_name = "would_lose_quorum"


class WrongClusterError(APIError):
    """``wrong_cluster``: the request names another cluster."""

    code_name = "wrong_cluster"


class MasterlessError(APIError):
    """``masterless``: the call needs leader mode; the cluster is masterless."""

    code_name = "masterless"


class TooLargeError(APIError):
    """``too_large``: the request body is larger than the agent accepts (64 KiB)."""

    code_name = "too_large"


class InternalError(APIError):
    """``internal``: an unexpected failure in the agent."""

    code_name = "internal"


class NoLeaderError(APIError):
    """``no_leader``: no leader is known.

    The SDK also raises it, with status 0, when :meth:`QCluster.wait_for_leader`
    times out.
    """

    code_name = "no_leader"


class NotJoinedError(APIError):
    """``not_joined``: the peer is not a member of the cluster yet."""

    code_name = "not_joined"


class UnavailableError(APIError):
    """``unavailable``: the peer is shutting down."""

    code_name = "unavailable"


class TimeoutError(APIError, builtins.TimeoutError):  # noqa: A001 (named after the code)
    """``timeout``: the change or hand-over did not complete in time (504),
    or a lock stayed held by another holder for the whole wait (408,
    :meth:`QCluster.lock` with a ``timeout``)."""

    code_name = "timeout"


class KeyNotFoundError(APIError):
    """``key_not_found``: the key does not exist in the KV store (404)."""

    code_name = "key_not_found"


class SessionNotFoundError(APIError):
    """``session_not_found``: the session does not exist: it expired, was
    revoked, or its member left (404)."""

    code_name = "session_not_found"


class CompareFailedError(APIError):
    """``compare_failed``: a change's ``cas=`` does not hold (409): the
    key's ``mod_revision`` differs, or (``cas=0``) the key exists.
    :attr:`kv` is the key as it is now (None when it does not exist)."""

    code_name = "compare_failed"


class QuotaError(APIError):
    """``quota``: the change would take the KV store over its size quota (507)."""

    code_name = "quota"


class UnsupportedError(APIError):
    """``unsupported``: the peer has no KV store (501)."""

    code_name = "unsupported"


class UnreachableError(QClusterError, ConnectionError):
    """The agent did not answer: refused, reset, timed out, or a TLS failure."""


class ProtocolError(QClusterError):
    """The agent answered something that is not QCluster's API."""


class AgentError(QClusterError):
    """The local agent could not be started, or stopped on its own.

    Attributes:
        log: the end of the agent's log, when there is one.
    """

    def __init__(self, message: str, log: str = "") -> None:
        if log:
            message = "{}\n--- agent log (end) ---\n{}".format(message, log)
        super().__init__(message)
        self.log = log


class AgentNotFoundError(AgentError, FileNotFoundError):
    """No ``qcluster`` binary: neither ``$QCLUSTER_BIN`` nor one in ``PATH``."""


class ClosedError(QClusterError):
    """The QCluster was closed (or its agent left the cluster)."""


class CompactedError(QClusterError):
    """A KV watch starts from (or must go on from) a revision older than
    the history the store keeps: the changes in between are gone. Read the
    keys again (:meth:`KV.list`) and watch from their revision + 1.

    Attributes:
        oldest: the oldest revision a watch can start from.
    """

    def __init__(self, oldest: int) -> None:
        super().__init__(
            "the revision is compacted: the oldest revision kept is {}; read the keys again "
            "and watch from their revision".format(oldest)
        )
        self.oldest = oldest


_BY_CODE = {
    cls.code_name: cls
    for cls in (
        BadRequestError,
        UnknownPeerError,
        UnauthorizedError,
        NotFoundError,
        MethodNotAllowedError,
        NotLeaderError,
        NoTransfereeError,
        TransferFailedError,
        ConflictError,
        WrongClusterError,
        CrossOriginError,
        UnsupportedMediaTypeError,
        WouldLoseQuorumError,
        MasterlessError,
        TooLargeError,
        InternalError,
        NoLeaderError,
        NotJoinedError,
        UnavailableError,
        TimeoutError,
        KeyNotFoundError,
        SessionNotFoundError,
        CompareFailedError,
        QuotaError,
        UnsupportedError,
    )
}  # type: Dict[str, Type[APIError]]


def error_for(status: int, body: Any) -> APIError:
    """Returns the exception for an error answer: ``body`` is its decoded JSON
    (``{"error": ..., "code": ..., "leader": ...}``), or anything else when
    the body was not that."""
    code, message, leader, kv = "", "", None, None
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) else ""
        message = body.get("error") if isinstance(body.get("error"), str) else ""
        if isinstance(body.get("leader"), dict):
            try:
                leader = Peer.from_json(body["leader"])
            except (KeyError, TypeError, ValueError):
                leader = None
        if isinstance(body.get("kv"), dict):
            try:
                kv = KeyValue.from_json(body["kv"])
            except (KeyError, TypeError, ValueError):
                kv = None
    if not message:
        message = "the agent answered HTTP {} without an error message".format(status)
    cls = _BY_CODE.get(code, APIError)
    return cls(status, code or "http_{}".format(status), message, leader, kv)
