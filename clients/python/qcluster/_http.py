"""The HTTP side of the SDK: one agent's API address, its credentials, and
requests to it (http.client from the standard library)."""

import http.client
import json
import os
import socket
import ssl
import urllib.parse
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from ._version import __version__
from .errors import ProtocolError, UnreachableError, error_for

#: What ``tls=`` accepts: a ready ``ssl.SSLContext``, or the paths
#: ``(ca_file, cert_file, key_file)`` (cert and key may be None when the
#: agents have ``"api_client_certs": "optional"``).
TLSArg = Union[None, ssl.SSLContext, Sequence[Optional[str]]]

# Answers larger than this are refused: an agent's answers are small, and
# every byte from the network is hostile until it parses.
_MAX_BODY = 4 << 20

_USER_AGENT = "qcluster-python/" + __version__


def client_context(tls: TLSArg, check_hostname: bool = True) -> Optional[ssl.SSLContext]:
    """Returns the SSL context for ``tls`` (None: plain HTTP).

    A tuple ``(ca_file, cert_file, key_file)`` makes a TLS 1.2+ client
    context that trusts only the cluster CA in ``ca_file`` and presents the
    client certificate ``cert_file``/``key_file`` (the agents require one
    unless they set ``"api_client_certs": "optional"``).
    """
    if tls is None:
        return None
    if isinstance(tls, ssl.SSLContext):
        return tls
    if isinstance(tls, (str, bytes)) or len(tls) != 3:
        raise TypeError("tls: give an ssl.SSLContext or a tuple (ca_file, cert_file, key_file), not {!r}".format(tls))
    ca, cert, key = tls
    if not ca:
        raise ValueError("tls: ca_file is required: the cluster CA certificate (ca.pem)")
    if bool(cert) != bool(key):
        raise ValueError("tls: give both cert_file and key_file, or neither")
    for what, path in (("ca_file", ca), ("cert_file", cert), ("key_file", key)):
        if path and not os.path.isfile(path):
            raise FileNotFoundError("tls: {} {!r} does not exist".format(what, path))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class Endpoint:
    """One agent's HTTP API: where it is and how to talk to it.

    Thread-safe: every request uses its own connection unless the caller
    passes one (the poller keeps one alive).
    """

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: Optional[ssl.SSLContext] = None,
        token: Optional[str] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.token = token or None

    @classmethod
    def parse(cls, address: str, token: Optional[str], tls: TLSArg) -> "Endpoint":
        """Parses ``http://host:port``, ``https://host:port`` or ``host:port``
        (https when ``tls`` is given). ``https`` without ``tls`` uses the
        system's trusted CAs."""
        if not isinstance(address, str) or not address:
            raise ValueError("address: give the agent's API address, such as http://127.0.0.1:7001")
        raw = address if "://" in address else ("https://" if tls is not None else "http://") + address
        u = urllib.parse.urlsplit(raw)
        if u.scheme not in ("http", "https"):
            raise ValueError("address {!r}: the scheme must be http or https".format(address))
        if u.path not in ("", "/") or u.query or u.fragment or u.username or u.password:
            raise ValueError(
                "address {!r}: give only scheme, host and port, such as http://127.0.0.1:7001".format(address)
            )
        try:
            port = u.port
        except ValueError:
            raise ValueError("address {!r}: the port must be a number from 1 to 65535".format(address)) from None
        if not u.hostname or not port:
            raise ValueError("address {!r}: give a host and a port, such as http://127.0.0.1:7001".format(address))
        if u.scheme == "http" and tls is not None:
            raise ValueError("address {!r}: tls is given, so use https:// (or no scheme)".format(address))
        ctx = client_context(tls)
        if u.scheme == "https" and ctx is None:
            ctx = ssl.create_default_context()
        return cls(u.hostname, port, ctx, token)

    def with_host(self, host: str, port: int) -> "Endpoint":
        """The same credentials for another agent (the leader, after a
        ``not_leader`` answer)."""
        return Endpoint(host, port, self.ssl_context, self.token)

    @property
    def url(self) -> str:
        """The base URL, for messages."""
        host = "[{}]".format(self.host) if ":" in self.host else self.host
        return "{}://{}:{}".format("https" if self.ssl_context else "http", host, self.port)

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        """Returns a new (not yet connected) connection to the agent."""
        if self.ssl_context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ssl_context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Optional[Mapping[str, Any]] = None,
        timeout: float = 30.0,
        conn: Optional[http.client.HTTPConnection] = None,
        max_body: int = _MAX_BODY,
    ) -> Tuple[Any, int]:
        """Sends one request and returns the decoded JSON answer and the
        ``X-QCluster-Index`` header (0 when absent).

        Mutating methods (POST, PUT, DELETE) always send a JSON body
        (``{}`` when ``body`` is None) with ``Content-Type:
        application/json``; no request carries an ``Origin`` header.

        Raises the :mod:`qcluster.errors` class of an error answer,
        :class:`UnreachableError` when the agent does not answer, and
        :class:`ProtocolError` for an answer that is not the API's. With
        ``conn`` the caller's connection is used and left open (the caller
        closes it after an error); otherwise one is made and closed. An
        answer larger than ``max_body`` bytes is a ProtocolError.
        """
        headers, data = self._headers(method, body, "application/json")
        own = conn is None
        c = self.connect(timeout) if conn is None else conn
        try:
            try:
                c.request(method, path, body=data, headers=headers)
                resp = c.getresponse()
                raw = resp.read(max_body + 1)
            except (OSError, http.client.HTTPException) as e:
                # OSError covers refused, reset, timeouts and ssl.SSLError.
                raise UnreachableError("{} {}{}: {}".format(method, self.url, path, _describe(e))) from e
            if len(raw) > max_body:
                raise ProtocolError(
                    "{} {}{}: the answer is larger than {} bytes".format(method, self.url, path, max_body)
                )
            index = _index(resp.getheader("X-QCluster-Index"))
            try:
                decoded = json.loads(raw.decode("utf-8")) if raw.strip() else None
            except ValueError:
                decoded = None
                if 200 <= resp.status < 300:
                    raise ProtocolError(
                        "{} {}{}: HTTP {} with a body that is not JSON: is this a QCluster agent?".format(
                            method, self.url, path, resp.status
                        )
                    ) from None
            if not 200 <= resp.status < 300:
                if decoded is None and raw.strip():
                    # Not the API's JSON error: show what it said.
                    decoded = {"error": raw[:300].decode("utf-8", "replace").strip()}
                raise error_for(resp.status, decoded)
            return decoded, index
        finally:
            if own:
                c.close()

    def _headers(self, method: str, body: Optional[Mapping[str, Any]], accept: str) -> Tuple[Dict[str, str], Optional[bytes]]:
        headers = {"Accept": accept, "User-Agent": _USER_AGENT}  # type: Dict[str, str]
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = None  # type: Optional[bytes]
        if method in ("POST", "PUT", "DELETE", "PATCH"):
            data = json.dumps({} if body is None else body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        return headers, data

    def open_stream(
        self,
        method: str,
        path: str,
        timeout: float,
        headers: Optional[Mapping[str, str]] = None,
    ) -> "Stream":
        """Sends a request whose answer is an event stream
        (``text/event-stream``) and returns it open, once its status and
        headers arrived; ``timeout`` bounds the wait for them and then each
        read. An error answer raises its :mod:`qcluster.errors` class (as
        :meth:`request`); no answer, :class:`UnreachableError`. Mutating
        methods send ``{}`` with ``Content-Type: application/json`` and the
        token, as :meth:`request` does."""
        hdrs, data = self._headers(method, None, "text/event-stream")
        if headers:
            hdrs.update(headers)
        c = self.connect(timeout)
        what = "{} {}{}".format(method, self.url, path)
        resp = None  # type: Optional[http.client.HTTPResponse]
        try:
            try:
                c.request(method, path, body=data, headers=hdrs)
                sock = c.sock
                resp = c.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise UnreachableError("{}: {}".format(what, _describe(e))) from e
            if not 200 <= resp.status < 300:
                try:
                    raw = resp.read(_MAX_BODY + 1)
                except (OSError, http.client.HTTPException) as e:
                    raise UnreachableError("{}: {}".format(what, _describe(e))) from e
                try:
                    decoded = json.loads(raw.decode("utf-8")) if raw.strip() else None
                except ValueError:
                    decoded = {"error": raw[:300].decode("utf-8", "replace").strip()} if raw.strip() else None
                raise error_for(resp.status, decoded)
            ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "text/event-stream":
                raise ProtocolError("{}: HTTP {} with Content-Type {!r}, not an event stream".format(what, resp.status, ctype))
        except BaseException:
            if resp is not None:
                resp.close()  # it owns the socket when the answer closes the connection
            c.close()
            raise
        return Stream(what, c, sock, resp)


# The longest line of an event stream: a KV event's data holds a value and
# its previous value (1 MiB each, in base64) and the JSON around them.
_MAX_LINE = 4 << 20


class Event:
    """One event of an event stream (or, with ``event`` and ``data`` empty
    and ``retry`` set, the stream's retry hint)."""

    __slots__ = ("id", "event", "data", "retry")

    def __init__(self) -> None:
        self.id = None  # type: Optional[str]
        self.event = ""
        self.data = ""
        self.retry = None  # type: Optional[int]


class Stream:
    """An open event stream (Server-Sent Events). :meth:`next` reads it in
    one thread; :meth:`close` may be called from any thread and makes a
    read blocked in :meth:`next` return at once."""

    def __init__(self, what: str, conn: http.client.HTTPConnection, sock: Any, resp: http.client.HTTPResponse) -> None:
        self.what = what
        self.conn = conn
        self.sock = sock
        self.resp = resp
        self.closed = False

    def header(self, name: str) -> Optional[str]:
        return self.resp.getheader(name)

    @property
    def index(self) -> int:
        """The ``X-QCluster-Index`` header (0 when absent)."""
        return _index(self.resp.getheader("X-QCluster-Index"))

    def next(self) -> Event:
        """Returns the next event (comments skipped). Raises
        :class:`UnreachableError` when the stream ends or breaks (EOF, a
        reset, no byte within the timeout, or :meth:`close`), and
        :class:`ProtocolError` for a line over 4 MiB."""
        ev = Event()
        data = []  # type: list
        has = False
        while True:
            try:
                line = self.resp.readline(_MAX_LINE + 1)
            except (OSError, ValueError, AttributeError, http.client.HTTPException) as e:
                # ValueError, AttributeError: the response was closed under
                # the reader.
                raise UnreachableError("{}: the stream broke: {}".format(self.what, _describe(e))) from e
            if not line:
                raise UnreachableError("{}: the stream ended".format(self.what))
            if len(line) > _MAX_LINE:
                raise ProtocolError("{}: a line of the event stream is longer than {} bytes".format(self.what, _MAX_LINE))
            if not line.endswith(b"\n"):
                raise UnreachableError("{}: the stream ended within a line".format(self.what))
            text = line[:-1]
            if text.endswith(b"\r"):
                text = text[:-1]
            try:
                s = text.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("{}: a line of the event stream is not UTF-8".format(self.what)) from None
            if s == "":
                if has:
                    ev.data = "\n".join(data)
                    return ev
                continue
            if s.startswith(":"):
                continue  # a comment (keep-alive)
            field, _, value = s.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                data.append(value)
                has = True
            elif field == "event":
                ev.event = value
                has = True
            elif field == "id":
                ev.id = value
                has = True
            elif field == "retry":
                if value.isdigit():
                    ev.retry = int(value)
                    has = True
            # other fields are ignored, as the SSE format asks

    def interrupt(self) -> None:
        """Ends the request without closing the objects a reader may be
        using: the peer sees the connection close, and a read blocked in
        :meth:`next` returns at once. Safe from any thread, more than
        once; the reader then calls :meth:`close`."""
        self.closed = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Ends the request and frees the connection (from the reading
        thread, or when nobody reads)."""
        self.interrupt()
        for x in (self.resp, self.conn):
            try:
                x.close()
            except Exception:
                pass


def _index(value: Optional[str]) -> int:
    if value is None:
        return 0
    try:
        n = int(value.strip())
    except ValueError:
        return 0
    return n if 0 <= n < 1 << 64 else 0


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "no answer in time (timed out)"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the agent running on that port?)"
    if isinstance(e, ssl.SSLError):
        return "TLS failure: {} (check the CA, the client certificate and key)".format(e)
    return str(e) or type(e).__name__
