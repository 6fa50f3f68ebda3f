"""Helpers of the tests: the qcluster binary, free ports, configs, waiting
with deadlines, and member processes."""

import atexit
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, Callable, Dict, List, Optional, TypeVar

HERE = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.dirname(HERE)  # clients/python
REPO = os.path.dirname(os.path.dirname(SDK_DIR))

T = TypeVar("T")

#: Measurements the tests make, printed to stderr when the run ends.
MEASURED = []  # type: List[str]


def _print_measured() -> None:
    for line in MEASURED:
        sys.stderr.write("measured: " + line + "\n")


atexit.register(_print_measured)

_build_lock = threading.Lock()
_built = None  # type: Optional[str]


def qcluster_binary() -> str:
    """$QCLUSTER_BIN, else a qcluster built from this tree (once per run,
    into a temporary directory); sets QCLUSTER_BIN for QCluster and the
    member processes. Skips the test when neither is possible."""
    global _built
    env = os.environ.get("QCLUSTER_BIN")
    if env:
        return env
    with _build_lock:
        if _built is None:
            go = shutil.which("go")
            if go is None or not os.path.isfile(os.path.join(REPO, "cmd", "qcluster", "main.go")):
                raise unittest.SkipTest("no QCLUSTER_BIN, and no go tool and source tree to build qcluster from")
            d = tempfile.mkdtemp(prefix="qcluster-pytest-bin-")
            atexit.register(shutil.rmtree, d, True)
            path = os.path.join(d, "qcluster")
            out = subprocess.run(
                [go, "build", "-o", path, "./cmd/qcluster"],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            if out.returncode != 0:
                raise RuntimeError("go build ./cmd/qcluster failed:\n" + out.stdout.decode("utf-8", "replace"))
            _built = path
        os.environ["QCLUSTER_BIN"] = _built
        return _built


def free_ports(n: int) -> List[int]:
    """n TCP ports that were free a moment ago (bound to port 0 by the OS)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def cluster_configs(n: int, data_dir: str, **extra: Any) -> List[Dict[str, Any]]:
    """Configs of an n-peer cluster on loopback in the seed's format, each
    peer with metadata {"server_port": ...}."""
    ports = free_ports(2 * n)
    ids = ["server_{}".format(chr(ord("a") + i)) for i in range(n)]
    confs = []
    for i, ident in enumerate(ids):
        conf = {
            "identifier": ident,
            "listen_host": "127.0.0.1",
            "listen_port": ports[i],
            "metadata": {"server_port": ports[n + i]},
            "data_dir": os.path.join(data_dir, ident),
            "peers": [
                {"host": "127.0.0.1", "port": ports[j], "identifier": ids[j], "metadata": {"server_port": ports[n + j]}}
                for j in range(n)
                if j != i
            ],
        }  # type: Dict[str, Any]
        conf.update(extra)
        confs.append(conf)
    return confs


def wait_for(cond: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.005) -> T:
    """Polls cond until it returns something truthy, and returns it; fails
    after timeout seconds, saying what it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {:g}s waiting for {}".format(timeout, what))
        time.sleep(interval)  # polling with a deadline


def process_gone(pid: int) -> bool:
    """Reports whether pid has exited (gone, or a zombie nobody reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def sub_env() -> Dict[str, str]:
    """The environment of a Python subprocess that imports qcluster from
    this tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SDK_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Member:
    """A Python process running tests/member.py: QCluster(**conf) and a
    report on stdout of every change it sees (JSON lines)."""

    def __init__(self, conf: Dict[str, Any], workdir: str) -> None:
        self.conf = conf
        self.id = conf["identifier"]
        path = os.path.join(workdir, self.id + ".json")
        with open(path, "w") as f:
            json.dump(conf, f)
        self.stderr_path = os.path.join(workdir, self.id + ".stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "member.py"), path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=sub_env(),
        )
        self.events = []  # type: List[Dict[str, Any]]
        self.killed_at = None  # type: Optional[float]
        self.lock = threading.Lock()
        self.changed = queue.Queue()  # type: queue.Queue
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)

    def last(self, kind: str) -> Optional[Dict[str, Any]]:
        """The latest event of a kind ("ready", "role", "info")."""
        with self.lock:
            for ev in reversed(self.events):
                if ev["event"] == kind:
                    return ev
        return None

    def all(self, kind: str) -> List[Dict[str, Any]]:
        with self.lock:
            return [ev for ev in self.events if ev["event"] == kind]

    def is_leader(self) -> bool:
        ev = self.last("role")
        return bool(ev and ev["is_leader"])

    def leader_info(self) -> Optional[List[Any]]:
        ev = self.last("info")
        return ev["leader"] if ev else None

    def kill(self) -> float:
        """SIGKILL; returns the time.monotonic() of the kill."""
        t = time.monotonic()
        self.killed_at = t
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return t

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Closes its stdin (it closes its QCluster and exits), then makes
        sure it is gone."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        ready = self.last("ready")
        if ready:
            pid = ready["agent_pid"]
            if not process_gone(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
