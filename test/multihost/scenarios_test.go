//go:build multihost && linux

package multihost

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestThreePeers runs the fault scenarios on 3 hosts with the seed's
// timings (heartbeat 50ms, election timeout 150ms), with a KV writer
// during the kill -9, partition and SIGSTOP scenarios (see withWriter).
func TestThreePeers(t *testing.T) {
	requireHosts(t)
	c := newCluster(t, "3 peers", 3, fastTimings, userspaceSwitch(t, false))
	// A writer PUTs keys through the kill -9, partition and SIGSTOP
	// scenarios; every acknowledged write is read back afterwards.
	c.scenario(t, "kill -9 leader", withWriter("kill", scenarioKillLeader))
	c.scenario(t, "partition leader", withWriter("partition", scenarioPartitionLeader))
	c.scenario(t, "SIGSTOP leader 3xET", withWriter("stop", scenarioStopLeader))
	c.scenario(t, "reject leader with tcp reset", scenarioRejectLeader)
	c.scenario(t, "rolling restart", scenarioRollingRestart)
	c.scenario(t, "leader leaves, rejoins", scenarioLeaveLeader)
}

// TestFivePeers runs the fault scenarios on 5 hosts with the seed's
// timings, and the 2|3 partitions.
func TestFivePeers(t *testing.T) {
	requireHosts(t)
	c := newCluster(t, "5 peers", 5, fastTimings, userspaceSwitch(t, false))
	c.scenario(t, "kill -9 leader", scenarioKillLeader)
	c.scenario(t, "partition leader", scenarioPartitionLeader)
	c.scenario(t, "partition 2|3, leader in 2", scenarioSplit(true))
	c.scenario(t, "partition 2|3, leader in 3", scenarioSplit(false))
	c.scenario(t, "SIGSTOP leader 3xET", scenarioStopLeader)
	c.scenario(t, "rolling restart", scenarioRollingRestart)
}

// TestNetem adds 100ms ± 50ms of latency to every host's data link and
// shows that an idle cluster keeps its leader (-multihost.idle), then that a
// fail-over still works. The timings leave room for the latency: heartbeat
// 100ms, election timeout 1s (a round trip takes up to 300ms, and the
// seed's 150ms election timeout would be shorter than that).
func TestNetem(t *testing.T) {
	requireHosts(t)
	user := userspaceSwitch(t, true)
	if !user {
		requireHosts(t, "tc")
	}
	label := "5 peers, netem"
	if user {
		label += " (user-space)"
	}
	c := newCluster(t, label, 5, netemTimings, user)
	c.netem = true
	c.scenario(t, "netem 100±50ms idle", scenarioNetemIdle)
	c.scenario(t, "netem kill -9 leader", func(s *scen) {
		s.must(c.topo.netem(netemDelay, netemJitter)) // kept from the idle scenario; again in case it failed early
		scenarioKillLeader(s)
	})
}

// scen is one scenario in progress.
type scen struct {
	c     *cluster
	t     *testing.T
	r     *result
	start time.Duration // the window the scenario is judged on opens here
	term  uint64        // the leader's term at the last stable()

	noSpurious bool // assert zero spurious leader changes

	// end, when set, closes the judged window before the scenario ends
	// (what follows restores the cluster and is not judged).
	end time.Duration
	// handovers are leaders that hand leadership over on purpose (a
	// leave, or a stop: SIGTERM makes a leader hand over before it
	// exits): each drops its lease when the transfer starts, so a claim
	// inside the lease it last reported is not an overlap (the monitor
	// cannot see the drop between two samples). A leader killed with
	// SIGKILL is one too: its process is gone, its lease with it (the
	// survivors elect a new leader at once on proof of that). Split brain
	// still counts.
	handovers []handover
}

// handover is one leadership transfer a scenario asked for. Only overlaps
// with it are excused: the handing-over leader's claim sent by to (when
// the request that transfers was answered, or the stopped agent exited),
// the other claim sent from from (when that request or signal was sent)
// on.
type handover struct {
	peer     int
	from, to time.Duration
}

// maxSampleIdle bounds the time the monitor may leave a peer unasked
// (sampling every -multihost.sample, 5 ms by default): a longer stall
// could hide a lease overlap, so the scenario fails instead.
const maxSampleIdle = 150 * time.Millisecond

// scenario runs body as a subtest on c, with the monitor's samples from its
// start to its end judged: no split brain, no lease overlap, no two
// leaders of a term, no term going backwards. It records a row of the
// final table, whether the scenario passes or not.
func (c *cluster) scenario(t *testing.T, name string, body func(*scen)) {
	t.Run(name, func(t *testing.T) {
		r := &result{cluster: c.label, name: name}
		s := &scen{c: c, t: t, r: r}
		if err := c.reset(); err != nil {
			t.Fatalf("reset: %v", err)
		}
		since := c.mon.now()
		_, term, _, ok := c.waitStable(since, c.stableTimeout())
		if !ok {
			t.Fatalf("no stable leader before the scenario, within %v", c.stableTimeout())
		}
		s.start = c.mon.now()
		r.startTerm = term
		defer s.judge()
		body(s)
	})
}

// judge analyses the scenario's window and asserts the invariants.
func (s *scen) judge() {
	c, t, r := s.c, s.t, s.r
	end := c.mon.now()
	if s.end != 0 {
		end = s.end
	}
	ss := c.mon.window(s.start, end)
	r.f = analyze(ss, c.names, r.startTerm, s.start)
	for _, ex := range r.f.examples {
		t.Log(ex)
	}
	if r.f.splitBrain > 0 {
		t.Errorf("%d split-brain instants: two peers said is_leader=true at overlapping times", r.f.splitBrain)
	}
	if handed := handedOver(&r.f, s.handovers); handed > 0 {
		for _, h := range s.handovers {
			r.note("hand-over by %s asked for at %+.1fms, done by %+.1fms", c.names[h.peer], ms(h.from-s.start), ms(h.to-s.start))
		}
		r.note("%d claims, sent after a hand-over was asked for, fell inside the lease its leader reported before it was done (dropped at the transfer's start)", handed)
		r.f.leaseOverlap -= handed
	}
	if r.f.leaseOverlap > 0 {
		t.Errorf("%d lease overlaps: a peer claimed leadership inside another's lease", r.f.leaseOverlap)
	}
	if r.f.maxIdle > maxSampleIdle {
		t.Errorf("the monitor left %s unasked for %v (over %v), from %v into the scenario (%s): an overlap could hide in the gap", c.names[r.f.maxIdlePeer], r.f.maxIdle, maxSampleIdle, (r.f.maxIdleFrom - s.start).Round(time.Millisecond), r.f.maxIdleWhy)
	}
	if r.f.termConflicts > 0 {
		t.Errorf("%d terms with two peers claiming leadership", r.f.termConflicts)
	}
	if r.f.termRegressions > 0 {
		t.Errorf("%d term regressions: a peer's term went backwards", r.f.termRegressions)
	}
	if s.noSpurious && r.spurious() > 0 {
		t.Errorf("%d spurious leader changes (terms %v after term %d) with no fault", r.spurious(), r.f.leaderTerms, r.startTerm)
	}
	if r.f.samples == 0 {
		t.Errorf("the monitor took no samples")
	}
	if med := median(r.failovers); med > c.failoverBound() {
		t.Errorf("the median fail-over took %v, over the bound %v", med, c.failoverBound())
	}
	r.failed = t.Failed()
	t.Logf("%s / %s: %d faults, fault → leader %s ms, rounds %s, split-brain %d, lease overlap %d, leaderships %d (expected %d), spurious %d, samples %d (%d unanswered) over %.1fs",
		c.label, r.name, r.faults, durStats(r.failovers), roundStats(r.rounds), r.f.splitBrain, r.f.leaseOverlap,
		len(r.f.leaderTerms), r.expected, r.spurious(), r.f.samples, r.f.failed, (end - s.start).Seconds())
	if r.f.slow > 0 || len(r.f.fails) > 0 {
		r.note("status requests: %d answers over %v (slowest %v, %s), unanswered %v",
			r.f.slow, slowAnswer, r.f.slowest.Round(time.Millisecond), c.names[r.f.slowestPeer], r.f.fails)
	}
	r.note("longest a peer went unasked: %v (%s; bound %v)", r.f.maxIdle.Round(time.Millisecond), c.names[r.f.maxIdlePeer], maxSampleIdle)
	for _, n := range r.notes {
		t.Log("  " + n)
	}
	if t.Failed() || *flagTrace {
		t.Logf("what each peer said (times from the scenario start):\n%s", transitions(ss, c.names, s.start))
	}
	record(r)
}

// stable waits until every peer agrees on a leader that holds, with
// samples sent from now on, and returns it.
func (s *scen) stable() (leader int, term uint64) {
	s.t.Helper()
	l, term, _, ok := s.c.waitStable(s.c.mon.now(), s.c.stableTimeout())
	if !ok {
		s.t.Fatalf("the peers did not settle on one leader within %v", s.c.stableTimeout())
	}
	s.term = term
	return l, term
}

// failover waits until the peers in set agree on a new leader after the
// fault at monitor time t0, and records the time it took and the election
// rounds (terms) it used since the last stable(). Every fail-over must
// take less than the cluster's bound; under netem, where an election round
// with a split vote costs 1-2 election timeouts more, the median must, and
// each one less than twice the bound (the slow ones are listed).
func (s *scen) failover(set []int, t0 time.Duration, fault string) int {
	s.t.Helper()
	c := s.c
	l, at, ok := c.waitAgreed(set, t0, t0+c.stableTimeout())
	if !ok {
		s.t.Fatalf("%s: %v after the fault, peers %v agree on no leader", fault, c.stableTimeout(), c.namesOf(set))
	}
	d := at - t0
	rounds := int(c.mon.latestOf(l).st.Term - s.term)
	s.r.failovers = append(s.r.failovers, d)
	s.r.rounds = append(s.r.rounds, rounds)
	s.r.expected++
	bound := c.failoverBound()
	switch {
	case !c.netem && d > bound:
		s.t.Errorf("%s: the new leader %s was agreed after %v, over the bound %v", fault, c.names[l], d, bound)
	case c.netem && d > 2*bound:
		s.t.Errorf("%s: the new leader %s was agreed after %v (%d election rounds), over twice the bound %v", fault, c.names[l], d, rounds, bound)
	case d > bound:
		s.r.note("%s: new leader after %v, over %v, in %d election rounds", fault, d.Round(time.Millisecond), bound, rounds)
	}
	return l
}

func (c *cluster) namesOf(set []int) []string {
	var out []string
	for _, i := range set {
		out = append(out, c.names[i])
	}
	return out
}

func (s *scen) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

// scenarioKillLeader: kill -9 the leader, wait for the others to agree on
// a new one, restart the old one and let it rejoin.
func scenarioKillLeader(s *scen) {
	c := s.c
	proofs, survivors := 0, 0 // survivors' transports that proved the killed leader gone, of all survivors
	for range *flagReps {
		l, _ := s.stable()
		t0 := c.mon.now()
		before := c.logCounts(peerGoneLog)
		s.must(c.kill(l))
		// A killed process cannot act on its lease: the survivors that
		// proved it gone elect a new leader within it (fail-over on
		// proof), which is no overlap. Excused as a hand-over is: the
		// killed leader's claims sent until it was reaped, against claims
		// sent from the SIGKILL on. Split brain still counts.
		s.handovers = append(s.handovers, handover{peer: l, from: t0, to: c.mon.now()})
		s.t.Logf("killed %s at %v into the scenario", c.names[l], (t0 - s.start).Round(time.Millisecond))
		s.r.faults++
		s.failover(c.others(l), t0, "kill -9 "+c.names[l])
		for _, i := range c.others(l) {
			survivors++
			if c.logCount(i, peerGoneLog) > before[i] {
				proofs++
			}
		}
		s.must(c.start(l))
	}
	s.stable()
	if proofs != survivors {
		// Each survivor's stream from the killed leader ends with the
		// leader's kernel's FIN, and a connect to its port is refused:
		// every survivor's transport must see it, on a slow link too (a
		// probe that gave up after 200ms missed half the proofs under
		// 100±50ms of delay each way, and the fail-over took two election
		// timeouts).
		s.t.Errorf("%d of %d survivors' transports proved a killed leader's process gone (%q in their logs), want all", proofs, survivors, peerGoneLog)
	}
	s.r.note("kill -9 → all survivors agree on the new leader: p50 %s, p99 %s ms over %d trials; %d of %d survivors' transports proved the killed leader's process gone",
		pctMS(s.r.failovers, 50), pctMS(s.r.failovers, 99), len(s.r.failovers), proofs, survivors)
}

// pctMS renders the p-th percentile (nearest rank) of ds in milliseconds.
func pctMS(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := (p*len(s) + 99) / 100 // nearest rank, 1-based
	return fmt.Sprintf("%.0f", ms(s[max(k, 1)-1]))
}

// scenarioRejectLeader: a firewall rule rejects the live leader's peer
// port with TCP resets (see topology.reject), both ways: its streams are
// reset and a connect to its port is refused, as when its process is gone,
// but it is alive. A reset or a refused connect is no proof that a
// leader's process is gone, so the others must wait out the election
// timeout (no fast election): the new leader is agreed no sooner than
// the election timeout less a heartbeat interval after the cut (the last
// heartbeat may have arrived just before it), less 20% for the
// election's tick and the monitor's sampling. No split brain, no lease
// overlap (judged as in every scenario); the old leader lets its lease
// lapse; after the rule is removed all agree again.
func scenarioRejectLeader(s *scen) {
	requireHosts(s.t, "nft", "bash", "timeout")
	c := s.c
	floor := (c.tm.election - c.tm.heartbeat) * 8 / 10
	var letGo []time.Duration
	for range *flagReps {
		l, _ := s.stable()
		before := c.logCounts(peerGoneLog)
		t0 := c.mon.now()
		s.must(c.topo.reject(l, agentPort))
		s.r.faults++
		survivor := c.others(l)[0]
		if err := c.topo.connectFrom(survivor, l, agentPort); err == nil || !strings.Contains(err.Error(), "refused") {
			s.t.Fatalf("with the reject rule, a connect from %s to %s's port gave %v, want connection refused", c.names[survivor], c.names[l], err)
		}
		nl := s.failover(c.others(l), t0, "reject "+c.names[l])
		if d := s.r.failovers[len(s.r.failovers)-1]; d < floor {
			s.t.Errorf("reject %s: the new leader %s was agreed %v after the cut, before the election timeout allows (%v less a heartbeat interval, less 20%%: %v): a live leader was deposed on a reset or a refused connect",
				c.names[l], c.names[nl], d, c.tm.election, floor)
		}
		lapsed := func(latest []sample) bool {
			x := latest[l]
			return x.ok && x.sent >= t0 && !x.st.IsLeader
		}
		if _, ok := c.mon.waitUntil(t0+c.stableTimeout(), lapsed); !ok {
			s.t.Errorf("the rejected old leader %s still claims leadership %v after the cut", c.names[l], c.stableTimeout())
		} else {
			at, _ := c.mon.firstTrue(t0, lapsed)
			letGo = append(letGo, at-t0)
		}
		for _, i := range c.others(l) {
			if c.logCount(i, peerGoneLog) > before[i] {
				s.t.Errorf("the transport of %s took the rejected, live leader %s for gone (its log says %q)", c.names[i], c.names[l], peerGoneLog)
			}
		}
		tHeal := c.mon.now()
		s.must(c.topo.unreject(l))
		if _, _, _, ok := c.waitStable(tHeal, c.stableTimeout()); !ok {
			s.t.Fatalf("after the rule was removed the peers did not settle on a leader within %v", c.stableTimeout())
		}
	}
	s.r.note("new leader agreed no sooner than %v after the cut (election timeout %v, heartbeat %v); the rejected old leader stopped claiming %s ms after the cut",
		floor, c.tm.election, c.tm.heartbeat, durStats(letGo))
}

// scenarioPartitionLeader: cut the leader off the data network. The rest
// elect a new leader; the old one must let its lease lapse and name no
// leader; after the heal everyone follows one leader.
func scenarioPartitionLeader(s *scen) {
	c := s.c
	var letGo, rejoin []time.Duration
	for range *flagReps {
		l, _ := s.stable()
		t0 := c.mon.now()
		s.must(c.topo.isolate(l))
		s.r.faults++
		nl := s.failover(c.others(l), t0, "isolate "+c.names[l])
		lapsed := func(latest []sample) bool {
			x := latest[l]
			return x.ok && x.sent >= t0 && !x.st.IsLeader && x.st.leader() == ""
		}
		_, ok := c.mon.waitUntil(t0+c.stableTimeout(), lapsed)
		at, _ := c.mon.firstTrue(t0, lapsed)
		if !ok {
			s.t.Errorf("the isolated old leader %s still claims or names a leader %v after the cut", c.names[l], c.stableTimeout())
		} else {
			letGo = append(letGo, at-t0)
		}
		tHeal := c.mon.now()
		s.must(c.topo.heal())
		l2, _, _, ok := c.waitStable(tHeal, c.stableTimeout())
		if !ok {
			s.t.Fatalf("after the heal the peers did not settle on a leader within %v", c.stableTimeout())
		}
		all := c.all()
		agreedAt, _ := c.mon.firstTrue(tHeal, func(latest []sample) bool {
			_, ok := c.agreedLeader(latest, all, tHeal)
			return ok
		})
		rejoin = append(rejoin, agreedAt-tHeal)
		if l2 != nl {
			s.r.note("the heal changed the leader from %s to %s", c.names[nl], c.names[l2])
		}
	}
	s.r.note("isolated old leader had no lease and named no leader %s ms after the cut", durStats(letGo))
	s.r.note("all agreed again %s ms after the heal", durStats(rejoin))
}

// scenarioSplit: partition a 5-cluster 2|3, with the leader on the
// minority side or on the majority side. The majority must have (or elect)
// a leader; the minority must end up with no leader and stay so until the
// heal.
func scenarioSplit(leaderInMinority bool) func(*scen) {
	return func(s *scen) {
		c := s.c
		n := len(c.agents)
		var leaderless []time.Duration
		for range *flagReps {
			l, _ := s.stable()
			minority := []int{(l + 1) % n, (l + 2) % n}
			if leaderInMinority {
				minority = []int{l, (l + 1) % n}
			}
			majority := c.others(minority...)
			t0 := c.mon.now()
			s.must(c.topo.split(minority))
			s.r.faults++
			fault := fmt.Sprintf("partition %v | %v", c.namesOf(minority), c.namesOf(majority))
			if leaderInMinority {
				s.failover(majority, t0, fault)
			} else {
				ml, _, ok := c.waitAgreed(majority, t0, t0+c.stableTimeout())
				switch {
				case !ok:
					s.t.Fatalf("%s: the majority agrees on no leader", fault)
				case ml != l:
					s.t.Errorf("%s: the majority changed its leader from %s to %s", fault, c.names[l], c.names[ml])
				}
			}
			noLeader := func(latest []sample) bool {
				for _, i := range minority {
					x := latest[i]
					if !x.ok || x.sent < t0 || x.st.IsLeader || x.st.leader() != "" {
						return false
					}
				}
				return true
			}
			_, ok := c.mon.waitUntil(t0+c.stableTimeout(), noLeader)
			at, _ := c.mon.firstTrue(t0, noLeader)
			if !ok {
				s.t.Fatalf("%s: the minority still has a leader %v after the cut", fault, c.stableTimeout())
			}
			leaderless = append(leaderless, at-t0)
			// Keep the partition for two election timeouts more: the
			// minority must not elect anyone meanwhile.
			holdFor(max(2*c.tm.election, 500*time.Millisecond))
			tHeal := c.mon.now()
			for _, x := range c.mon.window(at, tHeal) {
				if x.ok && contains(minority, x.peer) && (x.st.IsLeader || x.st.leader() != "") {
					s.t.Errorf("%s: minority peer %s names leader %q (is_leader=%v, term %d) at %+.1fms, after the minority had none",
						fault, c.names[x.peer], x.st.leader(), x.st.IsLeader, x.st.Term, ms(x.sent-s.start))
					break
				}
			}
			s.must(c.topo.heal())
			if _, _, _, ok := c.waitStable(tHeal, c.stableTimeout()); !ok {
				s.t.Fatalf("after the heal the peers did not settle on a leader within %v", c.stableTimeout())
			}
		}
		s.r.note("minority had no leader %s ms after the cut, and kept none until the heal", durStats(leaderless))
	}
}

// scenarioStopLeader: SIGSTOP the leader for 3 election timeouts, then
// SIGCONT it. The others elect a new leader meanwhile; the old one must come
// back as a follower of the new leader and never claim leadership again.
func scenarioStopLeader(s *scen) {
	c := s.c
	pause := 3 * c.tm.election
	var back []time.Duration
	for range *flagReps {
		l, _ := s.stable()
		t0 := c.mon.now()
		s.must(c.signal(l, syscall.SIGSTOP))
		s.r.faults++
		contAt := t0 + pause
		_, _, agreedBeforeCont := c.waitAgreed(c.others(l), t0, contAt)
		holdFor(contAt - c.mon.now())
		tCont := c.mon.now()
		s.must(c.signal(l, syscall.SIGCONT))
		nl := s.failover(c.others(l), t0, "SIGSTOP "+c.names[l])
		if !agreedBeforeCont {
			s.r.note("no new leader was agreed before the SIGCONT, %v after the SIGSTOP", pause)
		}
		follows := func(latest []sample) bool {
			x := latest[l]
			return x.ok && x.sent >= tCont && !x.st.IsLeader && x.st.leader() == c.names[nl]
		}
		_, ok := c.mon.waitUntil(tCont+c.stableTimeout(), follows)
		at, _ := c.mon.firstTrue(tCont, follows)
		if !ok {
			s.t.Errorf("%s did not come back as a follower of %s within %v of SIGCONT", c.names[l], c.names[nl], c.stableTimeout())
		} else {
			back = append(back, at-tCont)
		}
		if agreedBeforeCont {
			for _, x := range c.mon.window(tCont, c.mon.now()) {
				if x.peer == l && x.ok && x.st.IsLeader {
					s.t.Errorf("%s claimed leadership (term %d, lease %.1fms) at %+.1fms after its SIGCONT, while %s led",
						c.names[l], x.st.Term, x.st.LeaseRemainingMS, ms(x.sent-tCont), c.names[nl])
					break
				}
			}
		}
	}
	s.stable()
	s.r.note("paused %v; the old leader followed the new one %s ms after SIGCONT", pause, durStats(back))
}

// scenarioRollingRestart: stop (SIGTERM) and restart every peer in turn,
// waiting for the cluster to settle in between.
func scenarioRollingRestart(s *scen) {
	c := s.c
	for i := range c.agents {
		l, _ := s.stable()
		t0 := c.mon.now()
		s.must(c.stop(i))
		s.r.faults++
		if i == l {
			// A stop is a hand-over: the leader transfers leadership
			// before it exits.
			s.handovers = append(s.handovers, handover{peer: i, from: t0, to: c.mon.now()})
			s.failover(c.others(i), t0, "restart of leader "+c.names[i])
		}
		s.must(c.start(i))
	}
	s.stable()
}

// scenarioLeaveLeader: the leader leaves the cluster through its API (POST
// /v1/self/leave, as `qcluster leave` does): it hands leadership over
// before it leaves, so the others agree on a new leader within one
// election timeout of the leave's answer and none of them is without a
// leader for longer than that. Then the peer comes back as a new member:
// its data is deleted and it joins the running cluster (self-registration)
// through its configured peers. The rejoin is not judged: a peer whose
// data was deleted starts its term over.
func scenarioLeaveLeader(s *scen) {
	c := s.c
	l, _ := s.stable()
	t0 := c.mon.now()
	s.must(c.post(l, "/v1/self/leave"))
	left := c.mon.now()
	s.handovers = append(s.handovers, handover{peer: l, from: t0, to: left})
	s.r.faults++
	s.must(c.waitExit(l, 10*time.Second))
	others := c.others(l)
	s.failover(others, t0, "leave of "+c.names[l])
	agreed := t0 + s.r.failovers[len(s.r.failovers)-1]
	if d := agreed - left; d > c.tm.election {
		s.t.Errorf("the new leader was agreed %v after the leave was answered, more than one election timeout (%v)", d, c.tm.election)
	}
	// The longest time any other peer named no leader, over the leave.
	now := c.mon.now()
	longest := time.Duration(0)
	since := map[int]time.Duration{}
	for _, sm := range c.mon.window(t0, now) {
		if !sm.ok || !slices.Contains(others, sm.peer) {
			continue
		}
		if sm.st.leader() == "" {
			if _, ok := since[sm.peer]; !ok {
				since[sm.peer] = sm.sent
			}
			continue
		}
		if t, ok := since[sm.peer]; ok {
			longest = max(longest, sm.sent-t)
			delete(since, sm.peer)
		}
	}
	for _, t := range since {
		longest = max(longest, now-t)
	}
	if longest > c.tm.election {
		s.t.Errorf("a peer named no leader for %v during the leave (over one election timeout, %v)", longest, c.tm.election)
	}
	s.r.note("new leader agreed %v after the leave request, which was answered after %v (leadership moves first, then the removal, then gossip); longest any other peer named no leader: %v",
		(agreed - t0).Round(time.Millisecond), (left - t0).Round(time.Millisecond), longest.Round(time.Millisecond))
	s.end = c.mon.now()

	// Back as a new member.
	s.must(os.RemoveAll(c.agents[l].dataDir))
	t1 := c.mon.now()
	s.must(c.start(l))
	_, ok := c.mon.waitUntil(t1+c.stableTimeout(), func(latest []sample) bool {
		for _, sm := range latest {
			if !sm.ok || sm.sent < t1 || !slices.Contains(sm.st.Voters, c.names[l]) {
				return false
			}
		}
		return true
	})
	if !ok {
		s.t.Fatalf("%s did not join again within %v:\n%s", c.names[l], c.stableTimeout(), tail(c.agents[l].logPath, 20))
	}
	s.r.note("%s joined again %v after its start", c.names[l], (c.mon.now() - t1).Round(time.Millisecond))
	s.stable()
}

// The latency of the netem scenarios: 100ms ± 50ms one way, as
// `tc qdisc add dev eth0 root netem delay 100ms 50ms` on every host.
const (
	netemDelay  = 100 * time.Millisecond
	netemJitter = 50 * time.Millisecond
)

// scenarioNetemIdle: add 100ms ± 50ms of latency on every host, then leave
// the cluster idle: no leader change, ever. The latency stays for the
// scenarios that follow.
func scenarioNetemIdle(s *scen) {
	c := s.c
	s.noSpurious = true
	l, _ := s.stable()
	s.must(c.topo.netem(netemDelay, netemJitter))
	tOn := c.mon.now()
	holdFor(*flagIdle)
	tEnd := c.mon.now()
	gaps, lost := 0, 0
	for _, x := range c.mon.window(tOn, tEnd) {
		switch {
		case !x.ok:
		case x.peer == l && !x.st.IsLeader:
			gaps++
		case x.peer != l && x.st.leader() != c.names[l]:
			lost++
		}
	}
	nl, _ := s.stable()
	if nl != l {
		s.t.Errorf("the leader changed from %s to %s while idle under netem", c.names[l], c.names[nl])
	}
	s.r.note("idle %v with delay %v ± %v by %s (heartbeat %v, election timeout %v): %d leader samples without the lease, %d follower samples not naming %s",
		*flagIdle, netemDelay, netemJitter, c.topo.netemKind(), c.tm.heartbeat, c.tm.election, gaps, lost, c.names[l])
}

// handedOver counts the lease overlaps that the leadership transfers hs
// excuse (each once): the earlier claim is the handing-over leader's, sent
// by to (when the request that transfers was answered, or the agent
// exited), and the later one was sent from from (when that request or
// signal was sent) on. The leader dropped its lease when the transfer
// started, which the monitor cannot see between two samples.
func handedOver(f *findings, hs []handover) int {
	n := 0
	for k, p := range f.overlapOwners {
		for _, h := range hs {
			if p == h.peer && h.to != 0 && f.overlapOwnerAt[k] <= h.to && f.overlapAt[k] >= h.from {
				n++
				break
			}
		}
	}
	return n
}
