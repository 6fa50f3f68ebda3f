package sim

import (
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
)

// Fail-over on proof that the leader's process is gone (consensus package
// doc; the signals: streams.go).

// newLeader returns a peer other than old that leads (core view) in a
// term above term, if any.
func newLeader(c *Cluster, old, term uint64) (uint64, bool) {
	for _, id := range c.ids() {
		if v, ok := c.CoreView(id); ok && id != old && v.Role == consensus.Leader && v.Term > term {
			return id, true
		}
	}
	return 0, false
}

// crashAgreedLeader runs c past every start-up vote guard, crashes the
// leader all agree on (its process: its host's kernel closes its
// streams), and runs until all agree on another: it returns the crashed
// leader, its view before the crash, the new leader, and how long after
// the crash all agreed on it.
func crashAgreedLeader(t *testing.T, c *Cluster) (old uint64, v consensus.View, nl uint64, took time.Duration) {
	t.Helper()
	agreedLeader(t, c)
	runFor(t, c, 3*c.ElectionTimeout())
	old = agreedLeader(t, c)
	v, _ = c.View(old)
	crashAt := c.Now()
	c.Crash(old)
	runUntil(t, c, 10*c.ElectionTimeout(), "an agreed new leader", func() bool {
		id, ok := c.Agreed()
		nl = id
		return ok && id != old
	})
	return old, v, nl, c.Now() - crashAt
}

// The leader's process crashes: the survivors get their proof about a
// millisecond later and agree on a new leader holding the lease within a
// few ticks, far below the election timeout, in one election; the
// lowest-ID survivor wins (rank 0).
func TestScenarioCrashFailover(t *testing.T) {
	for _, peers := range []int{3, 5, 7} {
		c := newScenario(t, peers)
		l, v, nl, took := crashAgreedLeader(t, c)
		crashAt := c.Now() - took
		t.Logf("%d peers: p%d crashed at %v; p%d leads, agreed by all, %v later", peers, l, crashAt, nl, took)
		if took > 3*DefaultTick {
			t.Errorf("%d peers: fail-over took %v, want at most three ticks (%v)\n%s", peers, took, 3*DefaultTick, c.Trace())
		}
		if want := others(c, l)[0]; nl != want {
			t.Errorf("%d peers: p%d leads, want the rank-0 survivor p%d", peers, nl, want)
		}
		if nv, _ := c.View(nl); nv.Term != v.Term+1 {
			t.Errorf("%d peers: new leader's term %d, want %d (one election)", peers, nv.Term, v.Term+1)
		}
		runFor(t, c, 3*c.ElectionTimeout()) // the other survivors' turns pass: nobody campaigns
		if nv, _ := c.View(nl); !c.IsLeader(nl) || nv.Term != v.Term+1 {
			t.Errorf("%d peers: after the survivors' turns p%d is %v of term %d", peers, nl, nv.Role, nv.Term)
		}
		if st := c.Stats(); len(st.Failovers) != 1 || st.GoneTaken < peers/2 {
			t.Errorf("%d peers: fail-overs timed %v, proofs taken %d", peers, st.Failovers, st.GoneTaken)
		}
	}
}

// The rank-0 survivor gets its proof first and asks at once; the other
// gets its proof 8 ms later, after the request reached it: it kept the
// request and grants it then, so rank 0 wins without waiting for rank 1's
// turn.
func TestScenarioFailoverDeferredVote(t *testing.T) {
	var late uint64
	c := newScenario(t, 3, func(o *Options) {
		o.endDelay = func(_, to uint64) time.Duration {
			if to == late {
				return 8 * time.Millisecond
			}
			return 0
		}
	})
	agreedLeader(t, c)
	runFor(t, c, 3*c.ElectionTimeout())
	l := agreedLeader(t, c)
	o := others(c, l)
	late = o[1]
	crashAt := c.Now()
	c.Crash(l)
	var nl uint64
	runUntil(t, c, 10*c.ElectionTimeout(), "an agreed new leader", func() bool {
		id, ok := c.Agreed()
		nl = id
		return ok && id != l
	})
	took := c.Now() - crashAt
	t.Logf("p%d crashed; p%d's proof came 8 ms late; p%d leads, agreed, %v after the crash", l, late, nl, took)
	if nl != o[0] {
		t.Fatalf("p%d leads, want p%d (rank 0, with p%d's kept vote)\n%s", nl, o[0], late, c.Trace())
	}
	if took > 8*time.Millisecond+goneStaggerTime {
		t.Errorf("fail-over took %v: the kept vote waited for p%d's turn", took, late)
	}
}

// On a slow link (100 ms ± 10 % each way; timings scaled by 5: ticks of
// 50 ms, heartbeat 250 ms, election timeout 750 ms, as a WAN deployment
// would set them) the survivors' proofs come about 300 ms after the crash
// (the end-of-file, then the refused connect's round trip), tens of
// milliseconds apart, and a vote request takes 100 ms to arrive: two
// ticks between the survivors' turns would let them cross (each votes for
// itself: another round). Spaced by twice the round trip, every fail-over
// is one election, won by the rank-0 survivor, in the seven one-way
// delays it needs.
func TestScenarioCrashFailoverSlowLink(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		c := newScenario(t, 5, func(o *Options) {
			o.Seed = seed
			o.TimeScale = 5
			o.Network = Network{MinDelay: 90 * time.Millisecond, MaxDelay: 110 * time.Millisecond}
		})
		l, v, nl, took := crashAgreedLeader(t, c)
		nv, _ := c.View(nl)
		t.Logf("seed %d: p%d crashed; p%d leads term %d (from %d), agreed by all %v later", seed, l, nl, nv.Term, v.Term, took)
		if nv.Term != v.Term+1 || nl != others(c, l)[0] {
			t.Errorf("seed %d: p%d leads term %d, want the rank-0 survivor p%d in term %d (one election)\n%s",
				seed, nl, nv.Term, others(c, l)[0], v.Term+1, c.Trace())
		}
		// Seven one-way delays: the end-of-file, the probe's round trip,
		// the vote's, and the first entry's (its commit gives the new
		// leader its lease; the others name it from the entry on); three
		// ticks for the turns. An election after a follower's timer needs
		// its 750 ms and two more round trips.
		if bound := 7*110*time.Millisecond + 3*c.tm.tick; took > bound {
			t.Errorf("seed %d: fail-over took %v, want at most %v", seed, took, bound)
		}
	}
}

// The leader's process crashes on a link whose delay varies widely (40 to
// 260 ms each way, timings x5): the survivors' proofs come hundreds of
// milliseconds apart, some campaigns cross, and votes split. A crossing
// is retried once, by the earliest-ranked candidate, and only when nobody
// can win the term any more: every fail-over takes one election or one
// retry (two terms), never a third term of raft's own timers. Before,
// the middle candidates of a three-way crossing retried too, and an
// earlier-ranked one retried at once against a rival that was winning
// with the other voters: 3 and 4 terms, up to 4.5 s, in these seeds.
func TestScenarioCrashFailoverJitter(t *testing.T) {
	terms := map[uint64]int{}
	for _, peers := range []int{3, 5, 7} {
		for seed := uint64(1); seed <= 150; seed++ {
			c := newScenario(t, peers, func(o *Options) {
				o.Seed = seed
				o.TimeScale = 5
				o.Network = Network{MinDelay: 40 * time.Millisecond, MaxDelay: 260 * time.Millisecond}
			})
			l, v, nl, took := crashAgreedLeader(t, c)
			nv, _ := c.View(nl)
			terms[nv.Term-v.Term]++
			if nv.Term > v.Term+2 {
				t.Errorf("%d peers, seed %d: p%d crashed in term %d; p%d leads term %d, %v later (more than one retry)",
					peers, seed, l, v.Term, nl, nv.Term, took)
			}
		}
	}
	t.Logf("fail-overs by terms taken: %v", terms)
}

// goneStaggerTime is how long after its proof the rank-1 survivor
// campaigns (consensus's goneStagger ticks).
const goneStaggerTime = 2 * DefaultTick

// No proof, no early election: a leader that is stopped, cut off,
// rejected by a firewall, resets its streams, closes them (with a goodbye
// or without one), crashes and restarts before its end-of-files arrive,
// or goes down with its host, is deposed no earlier than the lease and
// the followers' election timeouts allow, and no follower takes any proof.
func TestScenarioNoProofNoEarlyElection(t *testing.T) {
	for _, x := range []struct {
		name  string
		fault func(c *Cluster, l uint64)
		alive bool // the leader keeps its lease: no election at all
	}{
		{"pause", func(c *Cluster, l uint64) { c.Pause(l) }, false},
		{"partition", func(c *Cluster, l uint64) { c.Isolate(l) }, false},
		{"reject", func(c *Cluster, l uint64) { c.Reject(l) }, false},
		{"reset", func(c *Cluster, l uint64) { c.ResetStreams(l) }, true},
		{"goodbye", func(c *Cluster, l uint64) { c.CloseStreams(l, true) }, true},
		{"eof-live", func(c *Cluster, l uint64) { c.CloseStreams(l, false) }, true},
		{"host-crash", func(c *Cluster, l uint64) { c.CrashHost(l) }, false},
		{"delayed-eof-after-restart", func(c *Cluster, l uint64) {
			c.eofExtra = 10 * time.Millisecond
			c.Crash(l)
			c.eofExtra = 0
			c.after(2*time.Millisecond, func() {
				if err := c.Restart(l); err != nil {
					c.fail("sim", "restart: %v", err)
				}
			})
		}, false},
	} {
		t.Run(x.name, func(t *testing.T) {
			c := newScenario(t, 3)
			agreedLeader(t, c)
			runFor(t, c, 3*c.ElectionTimeout())
			l := agreedLeader(t, c)
			v, _ := c.View(l)
			at := c.Now()
			x.fault(c, l)
			check(t, c)
			var nl uint64
			elected, _ := c.RunUntil(10*c.ElectionTimeout(), func() bool {
				id, ok := newLeader(c, l, v.Term)
				nl = id
				return ok
			})
			check(t, c)
			if x.alive {
				if elected || !c.IsLeader(l) {
					t.Fatalf("p%d (alive) lost leadership to p%d (elected %v)\n%s", l, nl, elected, c.Trace())
				}
			} else {
				if !elected {
					t.Fatalf("no new leader after %v\n%s", 10*c.ElectionTimeout(), c.Trace())
				}
				took := c.Now() - at
				t.Logf("p%d elected %v after the fault", nl, took)
				if took < c.ElectionTimeout()/2 {
					t.Fatalf("p%d elected %v after the fault on p%d: earlier than the lease allows\n%s", nl, took, l, c.Trace())
				}
			}
			if st := c.Stats(); st.GoneTaken != 0 {
				t.Fatalf("%d proofs taken with no process gone\n%s", st.GoneTaken, c.Trace())
			}
		})
	}
}

// A survivor stopped (SIGSTOP) while the others elect a new leader wakes
// up still following the crashed one, whose port still refuses: it takes
// the proof about its old leader in its old term and campaigns at its
// turn, before it heard the new leader. The new leader's followers hold
// no evidence about the new leader: they refuse, and the new leader keeps
// its lease throughout.
func TestScenarioStaleEvidence(t *testing.T) {
	c := newScenario(t, 5)
	agreedLeader(t, c)
	runFor(t, c, 3*c.ElectionTimeout())
	l := agreedLeader(t, c)
	o := others(c, l)
	s := o[0] // rank 0: campaigns at once when it takes its proof
	// s hears nothing from the other survivors until it has campaigned
	// (the crashed leader's end-of-file does reach it).
	c.Cut(o[1:], []uint64{s})
	c.Pause(s)
	c.Crash(l)
	var nl uint64
	runUntil(t, c, 10*c.ElectionTimeout(), "a new leader among the others", func() bool {
		id, ok := c.Leader()
		nl = id
		return ok && id != l
	})
	nv, _ := c.View(nl)
	c.Resume(s)
	runUntil(t, c, c.ElectionTimeout(), "s's proof", func() bool {
		lead, _ := c.peer(s).core.GoneEvidence()
		return lead == l
	})
	runUntil(t, c, c.ElectionTimeout(), "s's campaign", func() bool {
		v, ok := c.CoreView(s)
		return ok && v.Role == consensus.Candidate
	})
	for range 20 {
		runFor(t, c, c.ElectionTimeout()/10)
		if !c.IsLeader(nl) {
			t.Fatalf("p%d lost its lease to a stale proof\n%s", nl, c.Trace())
		}
	}
	c.Heal()
	runFor(t, c, 3*c.ElectionTimeout())
	if id, ok := c.Agreed(); !ok || id != nl {
		t.Fatalf("after the heal: agreed leader %d, %v; want p%d", id, ok, nl)
	}
	if v, _ := c.View(nl); v.Term != nv.Term {
		t.Fatalf("p%d's term moved from %d to %d", nl, nv.Term, v.Term)
	}
}
