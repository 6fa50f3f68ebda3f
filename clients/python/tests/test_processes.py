"""Three Python processes, each running QCluster(**conf) with its own agent
(built from this tree): they agree on one leader, hand leadership over
without two of them ever seeing is_leader() true at once, and when the
leader's Python process is killed with SIGKILL its agent exits and another
process leads within a second."""

import os
import shutil
import sys
import tempfile
import time
import unittest
from typing import List, Optional

from qcluster import QCluster

from .support import MEASURED, Member, cluster_configs, process_gone, qcluster_binary, wait_for

@unittest.skipUnless(os.name == "posix", "SIGKILL and /proc: POSIX only")
class ProcessesTest(unittest.TestCase):
    def setUp(self) -> None:
        qcluster_binary()
        self.dir = tempfile.mkdtemp(prefix="qcluster-pytest-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.members = [Member(conf, self.dir) for conf in cluster_configs(3, self.dir)]
        for m in self.members:
            self.addCleanup(m.stop)
        self.addCleanup(self.dump_on_failure)
        for m in self.members:
            wait_for(lambda m=m: m.last("ready") or self.exited(m), 60, "{} to start".format(m.id))

    def exited(self, m: Member) -> None:
        if m.proc.poll() is not None:
            raise AssertionError("{} exited with {}:\n{}".format(m.id, m.proc.returncode, m.stderr()))

    def dump_on_failure(self) -> None:
        outcome = getattr(self, "_outcome", None)
        errors = getattr(getattr(outcome, "result", None), "failures", []) if outcome else []
        if errors:
            for m in self.members:
                sys.stderr.write("\n--- {} events:\n{}\nstderr:\n{}\n".format(m.id, m.events[-20:], m.stderr()))

    def agreed(self, among: List[Member]) -> Optional[Member]:
        """The one member of ``among`` whose is_leader() is true, once every
        one of them names it, with its metadata, in get_leader_info()."""
        leaders = [m for m in among if m.is_leader()]
        if len(leaders) != 1:
            return None
        lead = leaders[0]
        want = ["127.0.0.1", lead.conf["listen_port"], lead.id, lead.conf["metadata"]]
        if all(m.leader_info() == want for m in among):
            return lead
        return None

    def assert_never_two_leaders(self) -> None:
        """No two members' True samples of is_leader() overlap: a member's
        leadership is the span from its first True sample (taken after
        ``before``) to its last (taken before ``after``)."""
        spans = []
        for m in self.members:
            evs = m.all("role")
            for i, ev in enumerate(evs):
                if ev["is_leader"]:
                    if i + 1 < len(evs):
                        end = evs[i + 1]["before"]
                    elif m.killed_at is not None:
                        end = m.killed_at
                    else:
                        end = float("inf")
                    spans.append((m.id, ev["after"], end))
        for a in spans:
            for b in spans:
                if a[0] != b[0] and a[1] < b[2] and b[1] < a[2]:
                    self.fail("{} and {} both saw is_leader() true: {} and {}".format(a[0], b[0], a, b))

    def test_one_leader_agreed_and_transfers_never_overlap(self) -> None:
        lead = wait_for(lambda: self.agreed(self.members), 30, "one agreed leader with its metadata")
        for _ in range(3):
            target = next(m for m in self.members if m is not lead)
            # The hand-over is asked of the leader's agent by another
            # client, so the leader's process does not know beforehand.
            with QCluster.connect("http://127.0.0.1:{}".format(lead.conf["listen_port"])) as admin:
                res = admin.transfer(to=target.id)
            self.assertEqual(res.leader.identifier if res.leader else None, target.id)
            t0 = time.monotonic()
            lead = wait_for(lambda t=target: self.agreed(self.members) is t and t, 30, "{} to lead".format(target.id))
            MEASURED.append("transfer to {}: all three processes agreed {:.0f} ms after the transfer returned".format(
                target.id, (time.monotonic() - t0) * 1000))
        self.assert_never_two_leaders()

    def test_kill_leader_process_stops_its_agent_and_another_leads(self) -> None:
        lead = wait_for(lambda: self.agreed(self.members), 30, "one agreed leader with its metadata")
        ready = lead.last("ready")
        assert ready is not None
        killed_at = lead.kill()
        # Its agent sees EOF on its stdin pipe and stops cleanly.
        wait_for(lambda: process_gone(ready["agent_pid"]), 20, "the killed process's agent to exit")
        agent_gone = time.monotonic() - killed_at
        with open(ready["agent_log"]) as f:
            agent_log = f.read()
        self.assertIn("stdin reached EOF", agent_log)
        self.assertIn("agent stopped", agent_log)
        shutil.rmtree(os.path.dirname(ready["agent_log"]), ignore_errors=True)  # left by the killed process

        rest = [m for m in self.members if m is not lead]

        def new_leader():
            for m in rest:
                for ev in m.all("role"):
                    if ev["is_leader"] and ev["before"] > killed_at:
                        return m, ev
            return None

        m, ev = wait_for(new_leader, 20, "another process to lead")
        took = ev["after"] - killed_at
        MEASURED.append(
            "kill -9 of the leader's Python process: its agent exited after {:.0f} ms; {} saw is_leader() "
            "true {:.0f} ms after the kill".format(agent_gone * 1000, m.id, took * 1000)
        )
        self.assertLess(took, 1.0, "fail-over took {:.0f} ms".format(took * 1000))
        wait_for(lambda: self.agreed(rest) is m, 10, "the two survivors to agree on {}".format(m.id))
        self.assert_never_two_leaders()


if __name__ == "__main__":
    unittest.main()
