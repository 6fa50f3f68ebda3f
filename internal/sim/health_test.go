package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
)

// Health-tied leadership in the simulator: a peer whose application's
// check fails is no candidate (consensus.Core.SetCandidate(false)): it
// still votes, but never campaigns and ignores transfers. Every invariant
// is checked after every event, as in the other scenarios.

// setCandidate makes peer id a candidate for leadership or not.
func setCandidate(c *Cluster, id uint64, ok bool) {
	c.Do(id, fmt.Sprintf("candidate: %v", ok), func(core *consensus.Core) error {
		core.SetCandidate(ok)
		return nil
	})
}

// neverLeader runs the cluster for d and fails if id ever becomes a
// candidate or raft's leader meanwhile (with pre-vote, a peer whose vote
// requests are dropped gets no further than pre-candidate).
func neverLeader(t *testing.T, c *Cluster, id uint64, d time.Duration) {
	t.Helper()
	led, _ := c.RunUntil(d, func() bool {
		v, ok := c.CoreView(id)
		return ok && v.Role >= consensus.Candidate || c.IsLeader(id)
	})
	check(t, c)
	if led {
		v, _ := c.CoreView(id)
		t.Fatalf("p%d, not a candidate, became %v\n%s", id, v.Role, c.Trace())
	}
}

// A follower that is not a candidate is never elected: not when the leader
// crashes (the other follower is elected with its vote), not when the new
// leader hands over to it; once a candidate again, it can lead.
func TestScenarioNotCandidateNeverLeads(t *testing.T) {
	c := newScenario(t, 3)
	old := agreedLeader(t, c)
	rest := others(c, old)
	sick, well := rest[0], rest[1]
	setCandidate(c, sick, false)
	runFor(t, c, c.ElectionTimeout())

	c.Crash(old)
	runUntil(t, c, 20*c.ElectionTimeout(), "the healthy follower to lead", func() bool {
		l, ok := c.Agreed()
		return ok && l == well
	})
	// A transfer to it is ignored; raft gives it up and the leader leads on.
	c.Transfer(well, sick)
	neverLeader(t, c, sick, 20*c.ElectionTimeout())
	runUntil(t, c, 10*c.ElectionTimeout(), "the healthy leader to lead again", func() bool {
		l, ok := c.Agreed()
		return ok && l == well
	})

	// The only healthy peer crashes: the sick one, alone with a majority
	// once the old leader is back, still does not lead, and there is no
	// leader.
	if err := c.Restart(old); err != nil {
		t.Fatal(err)
	}
	setCandidate(c, old, false)
	c.Crash(well)
	neverLeader(t, c, sick, 30*c.ElectionTimeout())
	if l, ok := c.Leader(); ok {
		t.Fatalf("p%d leads while every live voter is no candidate", l)
	}

	// Recovery: the sick one is a candidate again and is elected.
	setCandidate(c, sick, true)
	runUntil(t, c, 20*c.ElectionTimeout(), "the recovered peer to lead", func() bool {
		l, ok := c.Agreed()
		return ok && l == sick
	})
}
