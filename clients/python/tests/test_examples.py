"""The seed's two examples, run as they are (three processes each)."""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest
from typing import Dict, List, Optional, Tuple

from .support import SDK_DIR, cluster_configs, qcluster_binary, sub_env, wait_for

EXAMPLES = os.path.join(SDK_DIR, "examples")


# Runs the script named by argv[1] as __main__, with argv[2:], after
# restoring Python's default SIGINT handler.
_WITH_SIGINT = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


class Runner:
    """One example process; its output lines are collected."""

    def __init__(self, script: str, conf_path: str) -> None:
        # The example runs with Python's own SIGINT handler (Ctrl-C raises
        # KeyboardInterrupt), which stop() relies on. A process started in
        # the background by a non-interactive shell (a CI job) inherits
        # SIGINT ignored, and Python then installs no handler: each stop
        # waited out its 15 s and killed the example.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WITH_SIGINT, os.path.join(EXAMPLES, script), conf_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=sub_env(),
        )
        self.lines = []  # type: List[str]
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.decode("utf-8", "replace").rstrip("\n"))

    def output(self) -> List[str]:
        with self.lock:
            return list(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class ExamplesTest(unittest.TestCase):
    def setUp(self) -> None:
        qcluster_binary()
        self.dir = tempfile.mkdtemp(prefix="qcluster-pytest-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.confs = cluster_configs(3, self.dir)
        self.paths = []  # type: List[str]
        for conf in self.confs:
            path = os.path.join(self.dir, conf["identifier"] + ".json")
            with open(path, "w") as f:
                json.dump(conf, f)
            self.paths.append(path)

    def run_all(self, script: str) -> List[Runner]:
        runners = [Runner(script, p) for p in self.paths]
        for r in runners:
            self.addCleanup(r.stop)
        return runners

    def test_minimal(self) -> None:
        runners = self.run_all("minimal.py")

        def one_leader_working() -> Optional[str]:
            outs = [r.output() for r in runners]
            working = [
                c["identifier"]
                for c, out in zip(self.confs, outs)
                if any("is doing some work..." in line for line in out)
            ]
            if len(working) != 1:
                return None
            lead = working[0]
            others = [out for c, out in zip(self.confs, outs) if c["identifier"] != lead]
            named = "identifier='{}'".format(lead)
            if all(any("This is the leader: Peer(" in line and named in line for line in out) for out in others):
                return lead
            return None

        try:
            wait_for(one_leader_working, 60, "one peer working and the others naming it", interval=0.05)
        except AssertionError:
            for r in runners:
                sys.stderr.write("\n".join(r.output()[-10:]) + "\n")
            raise

    def test_http_leader(self) -> None:
        runners = self.run_all("http_leader.py")
        ports = [c["metadata"]["server_port"] for c in self.confs]

        def get(port: int) -> Optional[Tuple[int, Dict[str, str], str]]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/x?y=1")
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read().decode()
            except OSError:
                return None
            finally:
                conn.close()

        def answers() -> Optional[List[Tuple[int, Dict[str, str], str]]]:
            got = [get(p) for p in ports]
            if any(g is None for g in got):
                return None
            statuses = sorted(g[0] for g in got if g)
            return got if statuses == [200, 307, 307] else None  # type: ignore[return-value]

        try:
            got = wait_for(answers, 60, "one leader answering and two followers redirecting", interval=0.05)
        except AssertionError:
            for r in runners:
                sys.stderr.write("\n".join(r.output()[-10:]) + "\n")
            raise
        lead = next(i for i, g in enumerate(got) if g[0] == 200)
        self.assertEqual(got[lead][2], "hello from {}\n".format(self.confs[lead]["identifier"]))
        for i, g in enumerate(got):
            if i != lead:
                self.assertEqual(g[1]["Location"], "http://127.0.0.1:{}/x?y=1".format(ports[lead]))

    def test_job_lock(self) -> None:
        runners = self.run_all("job_lock.py")
        pat = re.compile(r"^(server_[abc]) finished run (\d+) with token (\d+)$")

        def runs() -> List[Tuple[int, int, str]]:
            got = []
            for r in runners:
                for line in r.output():
                    m = pat.match(line)
                    if m:
                        got.append((int(m.group(2)), int(m.group(3)), m.group(1)))
            return sorted(got)

        try:
            wait_for(lambda: len(runs()) >= 5 and len({who for _, _, who in runs()}) >= 2, 90,
                     "five runs of the job by at least two peers", interval=0.05)
        except AssertionError:
            for r in runners:
                sys.stderr.write("\n".join(r.output()[-10:]) + "\n")
            raise
        got = runs()
        # Never twice at once: the runs are 1, 2, 3, ... (each one a
        # compare-and-swap on the previous) and the tokens grow with them.
        self.assertEqual([n for n, _, _ in got], list(range(1, len(got) + 1)), got)
        tokens = [t for _, t, _ in got]
        self.assertEqual(tokens, sorted(set(tokens)), got)
        for r in runners:
            self.assertFalse(any("refused" in line for line in r.output()), r.output())


if __name__ == "__main__":
    unittest.main()
