package consensus

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// tickAll advances the clock by one tick interval and ticks every core
// that is not cut off, then pumps.
func (n *testNet) tickAll(cut map[uint64]bool) {
	n.t.Helper()
	n.now += 10 * time.Millisecond
	for id, c := range n.cores {
		if !cut[id] {
			c.Tick()
		}
	}
	n.pump()
}

// TestNotCandidateNeverCampaigns: a follower that is not a candidate, once
// the leader is gone, asks nobody for votes however long it waits (its
// election timer fires again and again), its term does not move, and it
// still votes: the healthy follower it would have raced is elected with
// its vote. When it is a candidate again it may lead.
func TestNotCandidateNeverCampaigns(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	n.cores[2].SetCandidate(false)
	n.cores[3].SetCandidate(false)
	sent := 0
	n.drop = func(m raftpb.Message) bool {
		if m.From == 1 || m.To == 1 {
			return true // the leader is gone
		}
		if m.Type == raftpb.MsgVote || m.Type == raftpb.MsgPreVote {
			sent++
		}
		return false
	}
	cut := map[uint64]bool{1: true}
	for range 200 { // 2 s: more than six election timeouts
		n.tickAll(cut)
	}
	if sent != 0 {
		t.Fatalf("peers that are not candidates sent %d vote requests", sent)
	}
	for _, id := range []uint64{2, 3} {
		if v := n.cores[id].View(); v.Term != term || v.Role == Leader || v.Role == Candidate {
			t.Fatalf("core %d, not a candidate, is %+v (term was %d)", id, v, term)
		}
	}
	// Core 3 is a candidate again: it is elected with core 2's vote.
	n.cores[3].SetCandidate(true)
	for range 200 {
		n.tickAll(cut)
		if n.cores[3].View().Role == Leader {
			break
		}
	}
	if v := n.cores[3].View(); v.Role != Leader {
		t.Fatalf("core 3, a candidate again, did not get core 2's vote: %+v", v)
	}
	if v := n.cores[2].View(); v.Role == Leader || v.Lead != 3 {
		t.Fatalf("core 2 is %+v, want a follower of 3", v)
	}
}

// TestNotCandidateIgnoresTimeoutNow: the leader's MsgTimeoutNow (a transfer
// to this peer) makes a peer that is not a candidate do nothing; once it is
// a candidate again, the same message makes it take over.
func TestNotCandidateIgnoresTimeoutNow(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	n.cores[2].SetCandidate(false)
	if err := n.step(2, raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 1, Term: term}); err != nil {
		t.Fatalf("MsgTimeoutNow to a peer that is not a candidate: %v, want it ignored", err)
	}
	if v := n.cores[2].View(); v.Role != Follower || v.Term != term || v.Lead != 1 {
		t.Fatalf("a peer that is not a candidate took a transfer: %+v", v)
	}
	n.cores[2].SetCandidate(true)
	if err := n.step(2, raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 1, Term: term}); err != nil {
		t.Fatal(err)
	}
	if v := n.cores[2].View(); v.Lead != 2 || v.Term != term+1 {
		t.Fatalf("a candidate again, core 2 did not take over: %+v", v)
	}
}

// TestNotCandidateLeaderHasNoLease: a leader that stops being a candidate
// loses its lease at once and earns none from later rounds; a candidate
// again, it earns it back.
func TestNotCandidateLeaderHasNoLease(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	for range 10 {
		n.tickAll(nil)
	}
	if v := n.cores[1].View(); !v.IsLeaderAt(n.now) {
		t.Fatalf("the leader holds no lease: %+v", v)
	}
	n.cores[1].SetCandidate(false)
	for range 30 {
		if v := n.cores[1].View(); v.IsLeaderAt(n.now) {
			t.Fatalf("a leader that is not a candidate holds a lease: %+v", v)
		}
		n.tickAll(nil)
	}
	n.cores[1].SetCandidate(true)
	for range 30 {
		n.tickAll(nil)
	}
	if v := n.cores[1].View(); !v.IsLeaderAt(n.now) {
		t.Fatalf("a candidate again, the leader earned no lease: %+v", v)
	}
}

// TestNotCandidateAloneStaysFollower: the only voter of a cluster, not a
// candidate, does not elect itself.
func TestNotCandidateAloneStaysFollower(t *testing.T) {
	n := newTestNet(t, []uint64{1}, nil)
	n.cores[1].SetCandidate(false)
	for range 200 {
		n.tickAll(nil)
	}
	if v := n.cores[1].View(); v.Role != Follower {
		t.Fatalf("a lone voter that is not a candidate is %+v", v)
	}
	n.cores[1].SetCandidate(true)
	for range 200 {
		n.tickAll(nil)
	}
	if v := n.cores[1].View(); v.Role != Leader {
		t.Fatalf("a lone voter, a candidate again, is %+v", v)
	}
}
