"""The lease arithmetic, on a fake clock."""

import random
import unittest

from qcluster._lease import Lease


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


HOLD = 0.150
MARGIN = 0.005


class LeaseTest(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = FakeClock()
        self.lease = Lease(self.clock, hold=HOLD, margin=MARGIN)

    def leading(self, sent: float, received: float, remaining_ms: float, term: int = 2) -> None:
        self.lease.observe(sent, received, True, term, remaining_ms)

    def test_no_answer_no_lease(self) -> None:
        self.assertFalse(self.lease.valid())
        self.assertEqual(self.lease.valid_until(), float("-inf"))

    def test_valid_from_the_send_time_not_the_receive_time(self) -> None:
        # First sight of term 2 at t=100.0; the hold-off ends at 100.150.
        self.leading(100.000, 100.000, 120)
        self.assertFalse(self.lease.valid(100.149))
        # Renewal: sent at 100.140, answered 30 ms later with 100 ms left:
        # the lease ends at 100.140 + 0.100 - margin, not 100.170 + ...
        self.leading(100.140, 100.170, 100)
        self.assertTrue(self.lease.valid(100.150))
        self.assertTrue(self.lease.valid(100.234))
        self.assertFalse(self.lease.valid(100.235))
        self.assertAlmostEqual(self.lease.valid_until(), 100.235)

    def test_lease_capped_at_hold(self) -> None:
        self.leading(100.0, 100.0, 10000)  # an agent claiming 10 s
        self.assertAlmostEqual(self.lease.valid_until(), 100.0 + HOLD - MARGIN)

    def test_new_term_waits_hold_after_it_was_first_seen(self) -> None:
        self.leading(100.000, 100.010, 120, term=2)
        self.assertAlmostEqual(self.lease.valid_from(), 100.160)  # received + hold
        self.leading(100.100, 100.101, 120, term=2)
        self.assertFalse(self.lease.valid(100.159))
        self.assertTrue(self.lease.valid(100.161))
        # Another term (a new leadership): a new wait, from its first sight.
        self.leading(101.000, 101.001, 120, term=3)
        self.assertFalse(self.lease.valid(101.100))
        self.assertAlmostEqual(self.lease.valid_from(), 101.151)

    def test_same_term_lapse_and_renewal_needs_no_new_wait(self) -> None:
        self.leading(100.0, 100.0, 120, term=5)
        self.lease.observe(100.5, 100.5, False, 5, 0)  # lease lapsed
        self.assertFalse(self.lease.valid(100.5))
        self.leading(100.6, 100.6, 120, term=5)
        self.assertTrue(self.lease.valid(100.6))

    def test_not_leader_answer_ends_it(self) -> None:
        self.leading(100.0, 100.0, 120)
        self.leading(100.15, 100.15, 120)
        self.assertTrue(self.lease.valid(100.2))
        self.lease.observe(100.2, 100.2, False, 2, 0)
        self.assertFalse(self.lease.valid(100.2))

    def test_is_leader_without_lease_left_grants_nothing(self) -> None:
        self.leading(100.0, 100.0, 0)
        self.assertFalse(self.lease.valid(100.2))
        self.leading(100.0, 100.0, float("nan"))
        self.assertFalse(self.lease.valid(100.2))

    def test_revoke_ignores_answers_to_earlier_requests(self) -> None:
        self.leading(100.0, 100.0, 120)
        self.leading(100.15, 100.15, 120)
        self.clock.t = 100.16
        self.lease.revoke()
        self.assertFalse(self.lease.valid(100.16))
        # An answer to a request sent before the revocation, received after.
        self.leading(100.155, 100.17, 120)
        self.assertFalse(self.lease.valid(100.17))
        # The hand-over failed: the agent leads on in the same term.
        self.leading(100.2, 100.2, 120)
        self.assertTrue(self.lease.valid(100.2))

    def test_bad_parameters(self) -> None:
        with self.assertRaises(ValueError):
            Lease(self.clock, hold=0, margin=0)
        with self.assertRaises(ValueError):
            Lease(self.clock, hold=0.15, margin=-1)


class TwoProcessesTest(unittest.TestCase):
    """Simulates two agents and their Python processes through leadership
    transfers (which end the old leader's agent lease at once) and checks
    that the two processes' copies of the lease never overlap, whatever the
    request timings."""

    def simulate(self, rng: random.Random, hold: float, lease_type: type = Lease) -> bool:
        """Returns True when both copies were valid at one instant."""
        clock = FakeClock(0.0)
        leases = [lease_type(clock, hold, MARGIN), lease_type(clock, hold, MARGIN)]
        # Agent side: who leads, in which term, and the lease it holds.
        lead, term = 0, 1
        lease_until = [0.0, 0.0]
        lease_len = hold - 0.025  # election timeout - tick - drift margin
        next_hb = 0.0
        transfer_at = rng.uniform(0.3, 0.6)
        transferred = False
        # In-flight requests: (answer time, process, sent time).
        inflight = []  # type: list
        next_poll = [rng.uniform(0, 0.02), rng.uniform(0, 0.02)]
        pending_answer = {}  # process -> (sent, computed answer)
        t, end, step = 0.0, 1.2, 0.0005
        while t < end:
            clock.t = t
            # The agents: heartbeats renew the leader's lease; a transfer
            # drops it and the other agent leads in a new term a moment
            # later.
            if t >= next_hb:
                if lead is not None:
                    lease_until[lead] = t + lease_len
                next_hb = t + 0.05
            if not transferred and t >= transfer_at:
                transferred = True
                lease_until[lead] = 0.0
                old = lead
                lead = None
                new_at = t + rng.uniform(0.001, 0.010)
                inflight.append((new_at, "elect", 1 - old))
            for item in [x for x in inflight if x[0] <= t]:
                inflight.remove(item)
                if item[1] == "elect":
                    lead, term = item[2], term + 1
                    lease_until[lead] = t + lease_len
                    next_hb = t + 0.05
                elif item[1] == "arrive":
                    # The agent computes its answer when the request arrives.
                    p, sent = item[2]
                    is_leader = lead == p and t < lease_until[p]
                    remaining = max(0.0, lease_until[p] - t) * 1000 if is_leader else 0.0
                    inflight.append((t + rng.uniform(0.0002, 0.03), "answer", (p, sent, is_leader, term, remaining)))
                elif item[1] == "answer":
                    p, sent, is_leader, tm, remaining = item[2]
                    leases[p].observe(sent, t, is_leader, tm, remaining)
                    pending_answer.pop(p, None)
                    next_poll[p] = max(t, sent + 0.02)
            for p in (0, 1):
                if p not in pending_answer and t >= next_poll[p]:
                    pending_answer[p] = t
                    inflight.append((t + rng.uniform(0.0002, 0.03), "arrive", (p, t)))
            if leases[0].valid(t) and leases[1].valid(t):
                return True
            t += step
        return False

    def test_no_overlap_with_the_hold_off(self) -> None:
        rng = random.Random(1)
        for _ in range(150):
            self.assertFalse(self.simulate(rng, hold=HOLD), "two processes saw is_leader() true at once")

    def test_the_simulation_finds_the_overlap_without_it(self) -> None:
        # The same runs without the new-term wait: the previous leader's
        # copy outlives the transfer and overlaps the new one's.
        rng = random.Random(1)
        found = 0
        for _ in range(150):
            found += self.simulate(rng, hold=HOLD, lease_type=NoHoldLease)
        self.assertGreater(found, 0, "the simulation cannot tell a broken hold-off")



class NoHoldLease(Lease):
    """The lease without the new-term wait: what the code would be without
    it (the copy counts from the first answer that grants it)."""

    def observe(self, sent: float, received: float, is_leader: bool, term: int, remaining_ms: float) -> None:
        super().observe(sent, received, is_leader, term, remaining_ms)
        end = self._window[1]
        if end > float("-inf"):
            self._window = (float("-inf"), end)


if __name__ == "__main__":
    unittest.main()
