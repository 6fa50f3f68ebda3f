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
// and becomes the leader; f, back, has never heard of p5 and refuses it as
// a non-member (the cost the consensus package doc states) while the
// others agree on p5; then the leader p5 removes itself, the others elect a
// new one, and f follows it and catches up.
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
	c.Heal()
	if v, _ := c.CoreView(f); slices.Contains(v.Voters, 5) {
		t.Fatalf("p%d knew of p5 before the heal: %+v", f, v)
	}
	runUntil(t, c, 10*c.ElectionTimeout(), "the others to agree on p5", func() bool {
		l, ok := c.Agreed()
		return ok && l == 5
	})
	if !c.behind(c.peer(f), 5) {
		t.Fatalf("p%d follows p5, added while it was cut off", f)
	}
	for _, id := range []uint64{1, 2, 3, 4} {
		// Liveness excuses only the member that missed the addition.
		if id != f && c.behind(c.peer(id), 5) {
			t.Fatalf("p%d, which appended the addition of p5, counts as behind it", id)
		}
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
