package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
)

// changeMembership has the leader propose one membership change (see
// FaultMembership).
func (c *Cluster) changeMembership(r *rand.Rand) {
	l := c.coreLeader()
	if l == nil {
		return
	}
	v := l.core.View()
	var spares []uint64
	for _, p := range c.peers {
		if p.voters == nil && !c.removed[p.id] && !slices.Contains(v.Voters, p.id) && !slices.Contains(v.Learners, p.id) {
			spares = append(spares, p.id)
		}
	}
	type op struct {
		what string
		cc   raftpb.ConfChange
	}
	var ops []op
	if len(spares) > 0 {
		s := spares[r.IntN(len(spares))]
		ops = append(ops, op{"member-add", raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: s}},
			op{"member-add-learner", raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode, NodeID: s}})
	}
	if len(v.Learners) > 0 {
		s := v.Learners[r.IntN(len(v.Learners))]
		if r.IntN(2) == 0 {
			// A learner is mostly there to be promoted.
			c.countFault("member-promote")
			c.ProposeConfChange(l.id, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: s})
			return
		}
		ops = append(ops, op{"member-remove-learner", raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: s}})
	}
	if len(v.Voters) >= 3 {
		if r.IntN(3) == 0 {
			ops = append(ops, op{"member-remove-leader", raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: l.id}})
		} else {
			o := slices.DeleteFunc(slices.Clone(v.Voters), func(id uint64) bool { return id == l.id })
			ops = append(ops, op{"member-remove", raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: o[r.IntN(len(o))]}})
		}
	}
	if len(ops) == 0 {
		return
	}
	o := ops[r.IntN(len(ops))]
	c.countFault(o.what)
	c.ProposeConfChange(l.id, o.cc)
	if o.what == "member-add-learner" && r.IntN(3) != 0 {
		// Promote it a little later, once it may have caught up.
		id := o.cc.NodeID
		c.after(c.tm.et/2+time.Duration(r.Int64N(int64(3*c.tm.et))), func() {
			if l := c.coreLeader(); l != nil && !c.healed && slices.Contains(l.core.View().Learners, id) {
				c.countFault("member-promote")
				c.ProposeConfChange(l.id, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: id})
			}
		})
	}
}

// confApplied counts the membership changes p applied (each index once),
// and a leader applying its own removal.
func (p *peer) confApplied(a consensus.Applied) {
	c := p.c
	for _, e := range a.Entries {
		if e.Type != raftpb.EntryConfChange {
			continue
		}
		var cc raftpb.ConfChange
		if err := cc.Unmarshal(e.Data); err != nil {
			c.fail("sim", "p%d: conf change at %d: %v", p.id, e.Index, err)
			return
		}
		if c.confApplied[e.Index] {
			continue
		}
		c.confApplied[e.Index] = true
		c.stats.MembershipChanges++
		if cc.Type == raftpb.ConfChangeRemoveNode && cc.NodeID == p.id && p.core.View().Role == consensus.Leader {
			c.stats.LeaderRemovals++
		}
		c.event(p.idx, fmt.Sprintf("membership change %v %d applied at %d", cc.Type, cc.NodeID, e.Index))
	}
}
