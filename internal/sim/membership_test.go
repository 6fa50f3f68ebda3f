package sim

import (
	"fmt"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
)

// The membership changes of the random schedules, as one story with every
// invariant checked: p4 joins as a learner (it needs a snapshot that lists
// it) and is promoted; p5 is added as a voter while follower f is cut off,
// and becomes the leader; f, back, has never heard of p5's addition, but
// hears it (Vouch: p5 is a peer of the cluster) and follows it with the
// others; then the leader p5 removes itself, the others elect a new one,
// and f follows it and catches up.
func TestScenarioMembershipChanges(t *testing.T) {
	c := newScenario(t, 3, func(o *Options) {
		o.Spares = 2
		o.ClockRates = []float64{1, 1, 1, 1, 1}
	})
	l := agreedLeader(t, c)
	config := func() consensus.View {
		v, _ := c.CoreView(l)
		return v
	}
	c.ProposeConfChange(l, raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode, NodeID: 4})
	runUntil(t, c, 10*c.ElectionTimeout(), "p4 to follow the leader as a learner", func() bool {
		v, ok := c.CoreView(4)
		return ok && v.Lead == l && slices.Contains(v.Learners, 4)
	})
	c.ProposeConfChange(l, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 4})
	runUntil(t, c, 10*c.ElectionTimeout(), "p4 promoted", func() bool {
		return slices.Contains(config().Voters, 4)
	})

	var f uint64
	for _, id := range []uint64{1, 2, 3} {
		if id != l {
			f = id
			break
		}
	}
	c.Isolate(f)
	c.ProposeConfChange(l, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 5})
	runUntil(t, c, 10*c.ElectionTimeout(), "p5 added", func() bool {
		v, ok := c.CoreView(5)
		return ok && v.Lead == l && slices.Contains(config().Voters, 5)
	})
	c.Transfer(l, 5)
	runUntil(t, c, 10*c.ElectionTimeout(), "p5 to lead", func() bool { return c.IsLeader(5) })
	if c.peer(f).core.Knows(5) {
		t.Fatalf("p%d knew of p5 before the heal", f)
	}
	vouched := c.Stats().Vouched
	c.Heal()
	runUntil(t, c, 10*c.ElectionTimeout(), "every member, p"+fmt.Sprint(f)+" too, to agree on p5", func() bool {
		l, ok := c.Agreed()
		id, fok := c.LeaderOf(f)
		return ok && l == 5 && fok && id == 5
	})
	if c.Stats().Vouched == vouched {
		t.Errorf("p%d followed p5 without taking a vouched message", f)
	}

	l = 5
	c.ProposeConfChange(5, raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: 5})
	runUntil(t, c, 20*c.ElectionTimeout(), "a new leader after p5 removed itself, followed by p"+fmt.Sprint(f), func() bool {
		nl, ok := c.Agreed()
		if ok && nl != 5 {
			l = nl
			id, ok := c.LeaderOf(f)
			return !slices.Contains(config().Voters, 5) && ok && id == nl
		}
		return false
	})
	runUntil(t, c, 10*c.ElectionTimeout(), "p"+fmt.Sprint(f)+" to catch up with the configuration", func() bool {
		v, _ := c.CoreView(f)
		return slices.Contains(v.Voters, 4) && !slices.Contains(v.Voters, 5)
	})
	if c.IsLeader(5) {
		t.Fatalf("the removed leader p5 still says IsLeader")
	}
	st := c.Stats()
	if st.MembershipChanges != 4 || st.LeaderRemovals != 1 {
		t.Errorf("%d membership changes applied (%d removed the leader), want 4 (1)", st.MembershipChanges, st.LeaderRemovals)
	}
	if st.SnapshotsApplied == 0 {
		t.Errorf("no snapshot restored: the new members caught up without one")
	}
}

// TestScenarioMissedAdditionElects: the shape the random schedules found
// (seed 687111979512): while member f is cut off, the leader adds p4,
// removes the third founder, then removes itself. The configuration left,
// {f, p4}, needs both votes, and only p4's log can win; f has never seen
// p4's addition. f must hear p4's vote requests (Vouch), or no leader is
// ever elected.
func TestScenarioMissedAdditionElects(t *testing.T) {
	c := newScenario(t, 3, func(o *Options) {
		o.Spares = 1
		o.ClockRates = []float64{1, 1, 1, 1}
	})
	l := agreedLeader(t, c)
	var f, g uint64
	for _, id := range []uint64{1, 2, 3} {
		switch {
		case id == l:
		case f == 0:
			f = id
		default:
			g = id
		}
	}
	config := func(id uint64) consensus.View {
		v, _ := c.CoreView(id)
		return v
	}
	c.Isolate(f)
	c.ProposeConfChange(l, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 4})
	runUntil(t, c, 10*c.ElectionTimeout(), "p4 added and following", func() bool {
		v, ok := c.CoreView(4)
		return ok && v.Lead == l && slices.Contains(config(l).Voters, 4)
	})
	c.ProposeConfChange(l, raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: g})
	runUntil(t, c, 10*c.ElectionTimeout(), "p"+fmt.Sprint(g)+" removed", func() bool {
		return !slices.Contains(config(l).Voters, g) && !slices.Contains(config(4).Voters, g)
	})
	c.ProposeConfChange(l, raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: l})
	runUntil(t, c, 10*c.ElectionTimeout(), "the leader p"+fmt.Sprint(l)+" removed", func() bool {
		return !slices.Contains(config(4).Voters, l)
	})
	if v := config(4).Voters; !slices.Equal(v, []uint64{f, 4}) && !slices.Equal(v, []uint64{4, f}) {
		t.Fatalf("p4's configuration is %v, want {%d, 4}", v, f)
	}
	if c.peer(f).core.Knows(4) {
		t.Fatalf("p%d knew of p4 before the heal", f)
	}
	c.Heal()
	runUntil(t, c, 20*c.ElectionTimeout(), "a leader of {p"+fmt.Sprint(f)+", p4} that both name", func() bool {
		nl, ok := c.Agreed()
		id, fok := c.LeaderOf(f)
		return ok && nl == 4 && fok && id == 4
	})
	runUntil(t, c, 10*c.ElectionTimeout(), "p"+fmt.Sprint(f)+" to catch up with the configuration", func() bool {
		return slices.Contains(config(f).Voters, 4) && !slices.Contains(config(f).Voters, l)
	})
}

// TestCheckerAgreedNeedsEveryMember: the liveness check's Agreed holds
// only while every live member of the leader's configuration names the
// leader: a member cut off long enough to give up on it breaks it.
func TestCheckerAgreedNeedsEveryMember(t *testing.T) {
	c := newScenario(t, 3, func(*Options) {})
	l := agreedLeader(t, c)
	f := l%3 + 1
	c.Isolate(f)
	runUntil(t, c, 10*c.ElectionTimeout(), "p"+fmt.Sprint(f)+", cut off, to name no leader", func() bool {
		_, ok := c.LeaderOf(f)
		return !ok
	})
	if nl, ok := c.Agreed(); ok {
		t.Fatalf("Agreed names p%d while p%d, a live member, names no leader", nl, f)
	}
	c.Heal()
	runUntil(t, c, 10*c.ElectionTimeout(), "an agreed leader after the heal", func() bool {
		_, ok := c.Agreed()
		return ok
	})
}
