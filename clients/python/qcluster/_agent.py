"""The local agent: a ``qcluster agent`` process started for one QCluster.

The agent lives and dies with this process. Its stdin is a pipe whose write
end only this process holds, and it runs with ``--exit-on-stdin-eof``: when
this process exits, however it exits (even SIGKILL), the kernel closes the
pipe, the agent reads EOF and stops cleanly. Nothing here relies on atexit.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from typing import IO, Any, Dict, Mapping, Optional

from ._http import Endpoint, client_context
from .errors import AgentError, AgentNotFoundError, QClusterError

#: How to get the binary, for error messages.
HOW_TO_GET = (
    "Get it with `go install github.com/qcluster/qcluster/cmd/qcluster@latest` (it lands in "
    "$(go env GOPATH)/bin: put that in PATH), or from a checkout of the repository with "
    "`go build -o qcluster ./cmd/qcluster` and set QCLUSTER_BIN to the binary's path."
)

_WATCHDOG_FLAG = "--exit-on-stdin-eof"

#: The identifier in the client certificate QCluster(**conf) has issued
#: from a "cluster_key" (the CLI's is "qcluster-cli").
CLIENT_IDENTIFIER = "qcluster-python"


def find_binary() -> str:
    """Returns the ``qcluster`` binary to run: ``$QCLUSTER_BIN``, else the
    first ``qcluster`` in ``PATH``. Raises :class:`AgentNotFoundError`
    saying how to get one."""
    env = os.environ.get("QCLUSTER_BIN")
    if env:
        if not os.path.isfile(env) or not os.access(env, os.X_OK):
            raise AgentNotFoundError("QCLUSTER_BIN={!r} is not an executable file. {}".format(env, HOW_TO_GET))
        return env
    found = shutil.which("qcluster")
    if found:
        return found
    raise AgentNotFoundError(
        "QCluster(**configuration) runs a local `qcluster agent`, but no qcluster binary was found: "
        "QCLUSTER_BIN is not set and there is none in PATH. " + HOW_TO_GET
    )


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(s: str) -> float:
    """Parses a Go duration string (``"150ms"``, ``"1.5s"``, ``"1m30s"``)
    into seconds. Raises ValueError."""
    if not isinstance(s, str) or not s:
        raise ValueError("not a duration string: {!r}".format(s))
    rest, total = s, 0.0
    sign = 1.0
    if rest[0] in "+-":
        sign, rest = (-1.0 if rest[0] == "-" else 1.0), rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError("not a duration string: {!r}".format(s))
    while rest:
        m = _DURATION_PART.match(rest)
        if not m or m.group(1) in ("", "."):
            raise ValueError("not a duration string: {!r}".format(s))
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        rest = rest[m.end():]
    return sign * total


def api_host(listen_host: Optional[str]) -> str:
    """The host to reach an agent's API at, given its listen_host: the
    loopback address it listens on for "localhost", all-interfaces or none."""
    h = (listen_host or "").strip().lower().rstrip(".")
    if h in ("", "localhost", "0.0.0.0") or h.endswith(".localhost"):
        return "127.0.0.1"  # what the agent listens on for "localhost"
    if h in ("::", "[::]"):
        return "::1"
    return listen_host.strip().strip("[]")  # type: ignore[union-attr]


class LocalAgent:
    """A running ``qcluster agent`` process for one config.

    Files (in a private temporary directory, mode 0700): ``config.json``
    (mode 0600; removed once the agent has read it: it may hold secrets) and
    ``agent.log`` (the agent's output).
    """

    def __init__(self, config: Mapping[str, Any], binary: Optional[str] = None) -> None:
        self.config = dict(config)
        ident = self.config.get("identifier")
        port = self.config.get("listen_port")
        if not isinstance(ident, str) or not ident:
            raise ValueError("identifier: required, this peer's unique name such as \"server_a\"")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError("listen_port: required, a port from 1 to 65535 (got {!r})".format(port))
        try:
            body = json.dumps(self.config, indent=2, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError("the configuration must be JSON-encodable: {}".format(e)) from None
        self.identifier = ident
        self.binary = binary or find_binary()
        self.dir = tempfile.mkdtemp(prefix="qcluster-{}-".format(re.sub(r"[^A-Za-z0-9_.-]", "_", ident)[:40]))
        self.client_tls = None  # type: Optional[tuple]
        key = self.config.get("cluster_key")
        if key:
            self.client_tls = self._issue_client_cert(key)
        self.config_path = os.path.join(self.dir, "config.json")
        self.log_path = os.path.join(self.dir, "agent.log")
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        self._log = open(self.log_path, "ab")  # type: IO[bytes]
        args = [self.binary, "agent", "--config", self.config_path, _WATCHDOG_FLAG]
        kwargs = {}  # type: Dict[str, Any]
        if os.name == "posix":
            # Its own session: a Ctrl-C in the terminal reaches the
            # application, which decides when its agent stops.
            kwargs["start_new_session"] = True
        try:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=self._log, stderr=self._log, close_fds=True, **kwargs
            )  # type: subprocess.Popen[bytes]
        except OSError as e:
            self._log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise AgentError("cannot run {}: {}. {}".format(self.binary, e, HOW_TO_GET)) from e

    def _issue_client_cert(self, key: Any) -> tuple:
        """With "cluster_key", the agent serves HTTPS and asks for a client
        certificate from the CA every peer derives from the key. The
        standard library cannot derive it (Ed25519), so the qcluster binary
        does: ``qcluster tls issue`` with the key in its environment (not on
        its command line, which other local users can read), into this
        agent's private directory. Returns (ca_file, cert_file, key_file)."""
        if not isinstance(key, str):
            shutil.rmtree(self.dir, ignore_errors=True)
            raise ValueError("cluster_key: a string, as made by `qcluster tls key`")
        out = os.path.join(self.dir, "tls")
        env = dict(os.environ, QCLUSTER_CLUSTER_KEY=key)
        args = [self.binary, "tls", "issue", "--identifier", CLIENT_IDENTIFIER, "--out", out]
        name = self.config.get("cluster_name")
        if isinstance(name, str) and name:
            args += ["--cluster-name", name]
        try:
            done = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise AgentError("cannot run {} tls issue: {}. {}".format(self.binary, e, HOW_TO_GET)) from e
        if done.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise AgentError(
                "cluster_key: `qcluster tls issue` could not make the SDK's client certificate (exit code {})".format(
                    done.returncode
                ),
                done.stdout.decode("utf-8", "replace")[-2000:],
            )
        return (
            os.path.join(out, "ca.pem"),
            os.path.join(out, CLIENT_IDENTIFIER + ".pem"),
            os.path.join(out, CLIENT_IDENTIFIER + "-key.pem"),
        )

    def endpoint(self) -> Endpoint:
        """The agent's API endpoint, with the config's api_token and TLS
        files."""
        tls = self.config.get("tls")
        ctx = None
        if isinstance(tls, dict):
            # Peers do not check host names (a peer is who its certificate
            # says); the agent this process started is checked against the
            # cluster CA, and its own certificate is the client certificate.
            ctx = client_context((tls.get("ca_file"), tls.get("cert_file"), tls.get("key_file")), check_hostname=False)
        elif self.client_tls is not None:
            # The certificate issued from the cluster key; peer
            # certificates derived from it name no host, so only the CA
            # is checked, as between peers.
            ctx = client_context(self.client_tls, check_hostname=False)
        token = self.config.get("api_token")
        return Endpoint(
            api_host(self.config.get("listen_host")),
            self.config["listen_port"],
            ctx,
            token if isinstance(token, str) else None,
        )

    def wait_ready(self, endpoint: Endpoint, timeout: float) -> None:
        """Waits until the agent answers GET /healthz, then removes the
        config file. Raises :class:`AgentError` (with the log's end) when
        the agent exits or does not answer within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last = ""
        delay = 0.005
        while True:
            code = self.proc.poll()
            if code is not None:
                raise AgentError(self._exit_message(code), self.log_tail())
            try:
                endpoint.request("GET", "/healthz", timeout=max(0.2, min(2.0, deadline - time.monotonic())))
                break
            except QClusterError as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise AgentError(
                    "the agent ({}) did not answer on {} within {:.0f}s: {}".format(
                        self.identifier, endpoint.url, timeout, last
                    ),
                    self.log_tail(),
                )
            time.sleep(delay)  # polling a process that is starting, with a deadline
            delay = min(delay * 2, 0.1)
        self.remove_config()

    def _exit_message(self, code: int) -> str:
        tail = self.log_tail()
        if _WATCHDOG_FLAG in tail and "flag provided but not defined" in tail:
            return "{} is too old: it lacks {}. {}".format(self.binary, _WATCHDOG_FLAG, HOW_TO_GET)
        if code == 2:
            return "the agent ({}) refused its configuration (exit code 2)".format(self.identifier)
        return "the agent ({}) exited with code {} while starting".format(self.identifier, code)

    def remove_config(self) -> None:
        """Removes the config file (the agent reads it once, at start)."""
        try:
            os.unlink(self.config_path)
        except FileNotFoundError:
            pass

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the agent's log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 16384))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def running(self) -> bool:
        """Reports whether the agent process still runs."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Stops the agent: closes its stdin (it stops cleanly), waits up to
        ``timeout`` seconds, then terminates (and at last kills) it, and
        removes its files. Returns its exit code. Idempotent."""
        code = None  # type: Optional[int]
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    code = self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    code = self.proc.wait()
        finally:
            try:
                self._log.close()
            except OSError:
                pass
            shutil.rmtree(self.dir, ignore_errors=True)
        return code

