package consensus

import (
	"errors"
	"math"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/storage"
)

// testNet is a few Cores on one manual clock, with a synchronous network:
// pump hands every message to its destination until none is left.
type testNet struct {
	t     *testing.T
	now   time.Duration
	cores map[uint64]*Core
	queue []raftpb.Message
	drop  func(m raftpb.Message) bool // drops a message in flight when true
}

func newTestNet(t *testing.T, voters []uint64, opt func(id uint64, c *Config)) *testNet {
	t.Helper()
	n := &testNet{t: t, now: time.Second, cores: map[uint64]*Core{}}
	for _, id := range voters {
		cfg := Config{
			ID:                id,
			Voters:            voters,
			Storage:           storage.NewMemory(),
			Now:               func() time.Duration { return n.now },
			HeartbeatInterval: 50 * time.Millisecond,
			ElectionTimeout:   150 * time.Millisecond,
		}
		if opt != nil {
			opt(id, &cfg)
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.cores[id] = c
	}
	return n
}

// pump processes every core and delivers messages until all are quiet.
func (n *testNet) pump() {
	n.t.Helper()
	for range 1000 {
		busy := false
		for _, c := range n.cores {
			for c.HasReady() {
				busy = true
				if _, err := c.Process(func(ms []raftpb.Message) { n.queue = append(n.queue, ms...) }); err != nil {
					n.t.Fatal(err)
				}
			}
		}
		q := n.queue
		n.queue = nil
		for _, m := range q {
			busy = true
			if n.drop != nil && n.drop(m) {
				continue
			}
			if c := n.cores[m.To]; c != nil {
				_ = c.Step(m) // refusals are what other tests look at
			}
		}
		if !busy {
			return
		}
	}
	n.t.Fatal("the network does not settle")
}

// elect makes id the leader of every core, past the vote guard.
func (n *testNet) elect(id uint64) {
	n.t.Helper()
	n.now += time.Second
	if err := n.cores[id].Campaign(); err != nil {
		n.t.Fatal(err)
	}
	n.pump()
	for cid, c := range n.cores {
		if v := c.View(); v.Lead != id {
			n.t.Fatalf("core %d follows %d, want %d (%+v)", cid, v.Lead, id, v)
		}
	}
}

// step steps m into core to (returning its error) and pumps.
func (n *testNet) step(to uint64, m raftpb.Message) error {
	n.t.Helper()
	m.To = to
	err := n.cores[to].Step(m)
	n.pump()
	return err
}

func lastIndex(t *testing.T, c *Core) uint64 {
	t.Helper()
	i, err := c.store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestStepDropsLocalTypes: messages of every type peers do not exchange
// are refused with ErrMessageType, from members and from raft's "local
// thread" IDs alike, and change nothing: a follower keeps its leader
// (MsgForgetLeader would clear it, and with it the lease guard), nobody
// campaigns (MsgHup), the leader does not hand over (MsgTransferLeader).
func TestStepDropsLocalTypes(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	local := []raftpb.MessageType{
		raftpb.MsgHup, raftpb.MsgBeat, raftpb.MsgUnreachable, raftpb.MsgSnapStatus, raftpb.MsgCheckQuorum,
		raftpb.MsgStorageAppend, raftpb.MsgStorageAppendResp, raftpb.MsgStorageApply, raftpb.MsgStorageApplyResp,
		raftpb.MsgForgetLeader, raftpb.MsgTransferLeader, raftpb.MsgReadIndex, raftpb.MsgReadIndexResp,
		raftpb.MessageType(99), raftpb.MessageType(-1),
	}
	before := map[uint64]View{}
	for id, c := range n.cores {
		before[id] = c.View()
	}
	for _, typ := range local {
		for _, from := range []uint64{1, 2, 3, math.MaxUint64, math.MaxUint64 - 1} {
			for _, to := range []uint64{1, 2, 3} {
				if from == to {
					continue
				}
				term := n.cores[to].View().Term
				m := raftpb.Message{Type: typ, From: from, Term: term, Index: 1, LogTerm: 1,
					Context: []byte{0, 0, 0, 0, 0, 0, 0, 99}}
				err := n.step(to, m)
				if !errors.Is(err, ErrMessageType) {
					t.Errorf("%v from %x to %d: err %v, want ErrMessageType", typ, from, to, err)
				}
				if r, ok := RefusalOf(err); !ok || r != RefusedType || r.String() != "type" {
					t.Errorf("%v: RefusalOf = %v, %v", typ, r, ok)
				}
			}
		}
	}
	for id, c := range n.cores {
		v := c.View()
		if v.Role != before[id].Role || v.Term != before[id].Term || v.Lead != before[id].Lead {
			t.Errorf("core %d changed: %+v -> %+v", id, before[id], v)
		}
	}
}

// TestStepDropsNetworkProposals: without Config.AcceptProposal, no MsgProp
// from the network is taken: not an empty one (raft panics on it), not a
// configuration change that would add a stranger, not a normal entry; and
// followers do not forward their own proposals.
func TestStepDropsNetworkProposals(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	leader := n.cores[1]
	last := lastIndex(t, leader)
	term := leader.View().Term
	add := raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 2}
	cc, err := add.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	props := map[string][]raftpb.Entry{
		"empty":       nil,
		"conf change": {{Type: raftpb.EntryConfChange, Data: cc}},
		"normal":      {{Data: []byte("R{\"op\":\"metadata\"}")}},
	}
	for name, ents := range props {
		for _, to := range []uint64{1, 3} {
			err := n.step(to, raftpb.Message{Type: raftpb.MsgProp, From: 2, Term: term, Entries: ents})
			if !errors.Is(err, ErrProposal) {
				t.Errorf("%s proposal to %d: err %v, want ErrProposal", name, to, err)
			}
		}
	}
	if got := lastIndex(t, leader); got != last {
		t.Errorf("leader's log grew from %d to %d", last, got)
	}
	if err := n.cores[2].Propose([]byte("x")); err == nil {
		t.Error("a follower's Propose was accepted (forwarded) without AcceptProposal")
	}
}

// TestStepChecksForwardedProposals: with Config.AcceptProposal, the leader
// appends a member's forwarded proposal only if every entry is a normal
// one with data that AcceptProposal accepts; a follower refuses them all.
func TestStepChecksForwardedProposals(t *testing.T) {
	var asked []uint64
	n := newTestNet(t, []uint64{1, 2, 3}, func(_ uint64, c *Config) {
		c.AcceptProposal = func(from uint64, data []byte) error {
			asked = append(asked, from)
			if string(data) != "ok" {
				return errors.New("not ok")
			}
			return nil
		}
	})
	n.elect(1)
	leader := n.cores[1]
	term := leader.View().Term
	add := raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 9}
	cc, err := add.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	last := lastIndex(t, leader)
	for name, ents := range map[string][]raftpb.Entry{
		"empty":            nil,
		"conf change":      {{Type: raftpb.EntryConfChange, Data: cc}},
		"conf change v2":   {{Type: raftpb.EntryConfChangeV2, Data: cc}},
		"no data":          {{Type: raftpb.EntryNormal}},
		"refused":          {{Data: []byte("no")}},
		"one of two wrong": {{Data: []byte("ok")}, {Data: []byte("no")}},
	} {
		if err := n.step(1, raftpb.Message{Type: raftpb.MsgProp, From: 2, Term: term, Entries: ents}); !errors.Is(err, ErrProposal) {
			t.Errorf("%s: err %v, want ErrProposal", name, err)
		}
	}
	if got := lastIndex(t, leader); got != last {
		t.Fatalf("leader's log grew from %d to %d on refused proposals", last, got)
	}
	if err := n.step(3, raftpb.Message{Type: raftpb.MsgProp, From: 2, Term: term, Entries: []raftpb.Entry{{Data: []byte("ok")}}}); !errors.Is(err, ErrProposal) {
		t.Errorf("proposal to a follower: err %v, want ErrProposal", err)
	}
	asked = nil
	if err := n.step(1, raftpb.Message{Type: raftpb.MsgProp, From: 2, Term: term, Entries: []raftpb.Entry{{Data: []byte("ok")}}}); err != nil {
		t.Fatalf("accepted proposal: %v", err)
	}
	if len(asked) != 1 || asked[0] != 2 {
		t.Errorf("AcceptProposal asked about %v, want [2]", asked)
	}
	if got := lastIndex(t, leader); got != last+1 {
		t.Errorf("leader's last index %d, want %d", got, last+1)
	}
	// A follower's own proposal reaches the leader through the same check.
	if err := n.cores[3].Propose([]byte("ok")); err != nil {
		t.Fatalf("follower's Propose: %v", err)
	}
	n.pump()
	if got := lastIndex(t, leader); got != last+2 {
		t.Errorf("leader's last index %d after a forwarded proposal, want %d", got, last+2)
	}
	if voters := leader.View().Voters; len(voters) != 3 {
		t.Errorf("voters %v", voters)
	}
}

// TestStepTimeoutNowOnlyFromLeader: a MsgTimeoutNow (campaign now,
// bypassing the followers' lease) is taken only from the leader the peer
// follows, in the current term.
func TestStepTimeoutNowOnlyFromLeader(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	for _, m := range []raftpb.Message{
		{From: 3, Term: term},     // another follower
		{From: 3, Term: term + 5}, // another follower, from the future
		{From: 1, Term: term + 1}, // the leader's ID, the wrong term
		{From: 1, Term: term - 1},
	} {
		m.Type = raftpb.MsgTimeoutNow
		if err := n.step(2, m); !errors.Is(err, ErrTimeoutNow) {
			t.Errorf("MsgTimeoutNow from %d at term %d: err %v, want ErrTimeoutNow", m.From, m.Term, err)
		}
		if v := n.cores[2].View(); v.Role != Follower || v.Term != term || v.Lead != 1 {
			t.Fatalf("after a refused MsgTimeoutNow core 2 is %+v", v)
		}
	}
	if err := n.step(2, raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 1, Term: term}); err != nil {
		t.Fatalf("MsgTimeoutNow from the leader: %v", err)
	}
	if v := n.cores[2].View(); v.Lead != 2 || v.Term != term+1 {
		t.Errorf("the leader's MsgTimeoutNow did not make core 2 take over: %+v", v)
	}
}

// TestStepDropsNonMembers: once a peer has a configuration, nothing from a
// peer outside it gets in (nor from a peer claiming to be this one), not
// even an append with a higher term; a peer without a configuration takes
// appends from anyone.
func TestStepDropsNonMembers(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	types := []raftpb.MessageType{
		raftpb.MsgApp, raftpb.MsgAppResp, raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgPreVote,
		raftpb.MsgPreVoteResp, raftpb.MsgSnap, raftpb.MsgHeartbeat, raftpb.MsgHeartbeatResp,
		raftpb.MsgTimeoutNow, raftpb.MsgProp,
	}
	for _, typ := range types {
		for _, to := range []uint64{1, 2} {
			for _, from := range []uint64{9, to} {
				m := raftpb.Message{Type: typ, From: from, Term: term + 1, Index: 100, LogTerm: term + 1, Commit: 100}
				if typ == raftpb.MsgSnap {
					m.Snapshot = &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 100, Term: term + 1,
						ConfState: raftpb.ConfState{Voters: []uint64{9}}}}
				}
				err := n.step(to, m)
				if !errors.Is(err, ErrNotMember) {
					t.Errorf("%v from %d to %d: err %v, want ErrNotMember", typ, from, to, err)
				}
			}
		}
	}
	for id, c := range n.cores {
		if v := c.View(); v.Term != term || v.Lead != 1 {
			t.Errorf("core %d moved to %+v", id, v)
		}
	}

	// A peer waiting to join has no configuration and hears anyone.
	joiner, err := New(Config{ID: 5, Storage: storage.NewMemory(), Now: func() time.Duration { return n.now },
		HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := joiner.Step(raftpb.Message{Type: raftpb.MsgHeartbeat, From: 9, To: 5, Term: 3}); err != nil {
		t.Errorf("a joining peer refused a heartbeat: %v", err)
	}
}

// TestStepHearsPendingMembers: a follower that has appended (not applied)
// the change adding a member already hears that member: it may have been
// elected by a quorum that applied the change.
func TestStepHearsPendingMembers(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	// Core 3 receives the change but never the commit.
	hold := true
	n.drop = func(m raftpb.Message) bool {
		return hold && m.To == 3 && (m.Type == raftpb.MsgHeartbeat || (m.Type == raftpb.MsgApp && len(m.Entries) == 0))
	}
	if err := n.cores[1].ProposeConfChange(raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	n.pump()
	if v := n.cores[3].View(); len(v.Voters) != 3 {
		t.Fatalf("core 3 applied the change already: %+v", v)
	}
	if len(n.cores[1].View().Voters) != 4 {
		t.Fatalf("the leader did not apply the change: %+v", n.cores[1].View())
	}
	term := n.cores[3].View().Term
	if err := n.cores[3].Step(raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 4, To: 3, Term: term}); errors.Is(err, ErrNotMember) {
		t.Errorf("core 3 refused the member it appended the addition of: %v", err)
	}
	if err := n.cores[3].Step(raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 5, To: 3, Term: term}); !errors.Is(err, ErrNotMember) {
		t.Errorf("core 3 took a message from a stranger: %v", err)
	}
	hold = false
	n.now += 100 * time.Millisecond
	n.cores[1].Tick()
	n.pump()
	if v := n.cores[3].View(); len(v.Voters) != 4 {
		t.Fatalf("core 3 did not apply the change: %+v", v)
	}
	if len(n.cores[3].pendingAdds) != 0 {
		t.Errorf("pending adds left after applying: %+v", n.cores[3].pendingAdds)
	}
}

// TestStepRecoversPanic: a message on which raft panics (a heartbeat from
// the leader that commits far past the follower's log) is dropped with
// ErrPanic; the core goes on working.
func TestStepRecoversPanic(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	err := n.step(2, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, Term: term, Commit: 1 << 40})
	if !errors.Is(err, ErrPanic) {
		t.Fatalf("err %v, want ErrPanic", err)
	}
	if r, ok := RefusalOf(err); !ok || r != RefusedPanic {
		t.Errorf("RefusalOf = %v, %v", r, ok)
	}
	// The cluster still commits.
	last := lastIndex(t, n.cores[2])
	if err := n.cores[1].Propose([]byte("after")); err != nil {
		t.Fatal(err)
	}
	n.pump()
	if got := lastIndex(t, n.cores[2]); got != last+1 || n.cores[2].AppliedIndex() != got {
		t.Errorf("follower at last %d applied %d, want both %d", got, n.cores[2].AppliedIndex(), last+1)
	}
}

// TestStepHearsVouchedPeers: a sender the configuration does not list is
// heard when Config.Vouch vouches for it (a member that missed its
// addition must still hear it, or a configuration such as {p2, p4} where
// p2 missed p4's addition never elects a leader); one Vouch refuses is not.
func TestStepHearsVouchedPeers(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, func(id uint64, c *Config) {
		c.Vouch = func(from uint64) bool { return from == 4 }
	})
	n.elect(1)
	term := n.cores[2].View().Term
	if n.cores[2].Knows(4) {
		t.Fatal("core 2 lists node 4")
	}
	if err := n.cores[2].Step(raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 4, To: 2, Term: term}); errors.Is(err, ErrNotMember) {
		t.Errorf("core 2 refused node 4, which Vouch vouches for: %v", err)
	}
	if err := n.cores[2].Step(raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 5, To: 2, Term: term}); !errors.Is(err, ErrNotMember) {
		t.Errorf("core 2 took a message from node 5, which Vouch refuses: %v", err)
	}
	if err := n.cores[2].Step(raftpb.Message{Type: raftpb.MsgHeartbeatResp, From: 2, To: 2, Term: term}); !errors.Is(err, ErrNotMember) {
		t.Errorf("core 2 took a message claiming to be from itself: %v", err)
	}
}

// TestProposalOnlyFromMembers: a sender that Vouch vouches for, but that
// the configuration does not list, may vote and follow, not propose.
func TestProposalOnlyFromMembers(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, func(id uint64, c *Config) {
		c.Vouch = func(from uint64) bool { return from == 4 }
		c.AcceptProposal = func(uint64, []byte) error { return nil }
	})
	n.elect(1)
	term := n.cores[1].View().Term
	before := lastIndex(t, n.cores[1])
	err := n.step(1, raftpb.Message{Type: raftpb.MsgProp, From: 4, Term: term, Entries: []raftpb.Entry{{Data: []byte("x")}}})
	if !errors.Is(err, ErrProposal) {
		t.Errorf("a proposal from a vouched non-member: %v, want ErrProposal", err)
	}
	if after := lastIndex(t, n.cores[1]); after != before {
		t.Errorf("the leader appended it: last index %d -> %d", before, after)
	}
	if err := n.step(1, raftpb.Message{Type: raftpb.MsgProp, From: 2, Term: term, Entries: []raftpb.Entry{{Data: []byte("y")}}}); err != nil {
		t.Errorf("a member's proposal: %v", err)
	}
}
