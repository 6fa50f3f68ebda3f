package consensus

import (
	"testing"
)

// TestLeaseRead: only the leader holding its lease answers, with its
// commit index (covering every committed proposal); a follower, a leader
// whose lease lapsed and a leader handing over do not.
func TestLeaseRead(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	idx, ok := n.cores[1].LeaseRead()
	if !ok || idx != lastIndex(t, n.cores[1]) {
		t.Fatalf("leader: LeaseRead = %d, %v; want %d, true", idx, ok, lastIndex(t, n.cores[1]))
	}
	for _, id := range []uint64{2, 3} {
		if _, ok := n.cores[id].LeaseRead(); ok {
			t.Fatalf("follower %d answers a lease read", id)
		}
	}
	if err := n.cores[1].Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	n.pump()
	if idx2, ok := n.cores[1].LeaseRead(); !ok || idx2 != idx+1 {
		t.Fatalf("after a commit: LeaseRead = %d, %v; want %d", idx2, ok, idx+1)
	}
	// The lease lapses with the clock, with no round acknowledged.
	n.now += n.cores[1].LeaseDuration()
	if _, ok := n.cores[1].LeaseRead(); ok {
		t.Fatalf("a leader whose lease lapsed answers a lease read")
	}
	// A new round renews it.
	n.cores[1].Tick()
	n.pump()
	if _, ok := n.cores[1].LeaseRead(); !ok {
		t.Fatalf("the lease was not renewed by a round (view %+v)", n.cores[1].View())
	}
	n.cores[1].TransferLeadership(2)
	if _, ok := n.cores[1].LeaseRead(); ok {
		t.Fatalf("a leader handing over answers a lease read")
	}
}
