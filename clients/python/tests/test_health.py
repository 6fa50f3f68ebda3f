"""Health-tied leadership from Python: three processes, each running
QCluster(**conf) with ``"health_check": {"ttl": ...}``, so each sends its
agent the TTL heartbeat from a thread of its own. When the leader's Python
process is stopped (SIGSTOP: a hung process), its heartbeat stops, its
agent's check fails within the TTL and another process leads; the stopped
one, resumed, never reads is_leader() true again before reading false."""

import os
import shutil
import signal
import tempfile
import time
import unittest
from typing import List, Optional

from qcluster import QCluster

from .support import MEASURED, Member, cluster_configs, qcluster_binary, wait_for

TTL = 1.0


@unittest.skipUnless(os.name == "posix", "SIGSTOP: POSIX only")
class HealthTTLTest(unittest.TestCase):
    def setUp(self) -> None:
        qcluster_binary()
        self.dir = tempfile.mkdtemp(prefix="qcluster-pytest-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        confs = cluster_configs(3, self.dir, health_check={"ttl": "{}ms".format(int(TTL * 1000))})
        self.members = [Member(conf, self.dir) for conf in confs]
        for m in self.members:
            self.addCleanup(m.stop)
        for m in self.members:
            wait_for(lambda m=m: m.last("ready"), 60, "{} to start".format(m.id))

    def leader(self, among: List[Member]) -> Optional[Member]:
        leaders = [m for m in among if m.is_leader()]
        return leaders[0] if len(leaders) == 1 else None

    def test_stopped_process_loses_leadership_within_ttl(self) -> None:
        lead = wait_for(lambda: self.leader(self.members), 30, "one leader")
        stopped_at = time.monotonic()
        os.kill(lead.proc.pid, signal.SIGSTOP)
        resumed = False
        try:
            rest = [m for m in self.members if m is not lead]

            def new_leader():
                for m in rest:
                    for ev in m.all("role"):
                        if ev["is_leader"] and ev["before"] > stopped_at:
                            return m, ev
                return None

            m, ev = wait_for(new_leader, 20, "another process to lead")
            took = ev["after"] - stopped_at
            MEASURED.append(
                "SIGSTOP of the leader's Python process (TTL {:.0f} ms): {} saw is_leader() true {:.0f} ms later".format(
                    TTL * 1000, m.id, took * 1000))
            self.assertLess(took, TTL + 0.3, "hand-over took {:.0f} ms".format(took * 1000))
            # Its agent reports the failing check to the others.
            with QCluster.connect("http://127.0.0.1:{}".format(m.conf["listen_port"])) as admin:
                wait_for(lambda: _check_of(admin, lead.id) == "failing", 10, "the stopped one's check to fail")
            os.kill(lead.proc.pid, signal.SIGCONT)
            resumed = True
            # Its first sample after resuming reads False: the last True
            # sample it reports was taken before it was stopped.
            ev = wait_for(lambda: [e for e in lead.all("role") if not e["is_leader"]], 10,
                          "the resumed process to read is_leader() false")[0]
            self.assertLess(ev["after"], stopped_at, "the resumed process read is_leader() true after SIGCONT")
        finally:
            if not resumed:
                os.kill(lead.proc.pid, signal.SIGCONT)


def _check_of(admin: QCluster, identifier: str) -> Optional[str]:
    st, _ = admin._request("GET", "/v1/peers/" + identifier)
    return st.get("check") if isinstance(st, dict) else None


class SetHealthTest(unittest.TestCase):
    def test_set_health_validates_and_reports(self) -> None:
        qcluster_binary()
        d = tempfile.mkdtemp(prefix="qcluster-pytest-")
        self.addCleanup(shutil.rmtree, d, True)
        conf = cluster_configs(1, d, health_check={"ttl": "5s"})[0]
        with QCluster(**conf) as c:
            c.wait_for_leader(30)  # its heartbeat thread reported "passing"
            with self.assertRaises(ValueError):
                c.set_health("ok")
            c.set_health("failing", "maintenance")
            wait_for(lambda: not c.is_leader(), 10, "the failing peer to stop leading")
            self.assertEqual(_check_of(c, conf["identifier"]), "failing")
            c.set_health("passing")
            c.wait_for_leader(30)


if __name__ == "__main__":
    unittest.main()
