package qcluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPeersListsConfiguredMembers(t *testing.T) {
	tc := newTestCluster(t, 3)
	for i, p := range tc.peers {
		got := p.Peers()
		if len(got) != 3 {
			t.Fatalf("%s: %d peers", p.cfg.Identifier, len(got))
		}
		for j, m := range got {
			if m.Identifier != tc.cfgs[j].Identifier || m.Port != tc.cfgs[j].ListenPort || m.Host != "127.0.0.1" || m.Metadata["index"] != float64(j) {
				t.Errorf("%s: Peers()[%d] = %+v", p.cfg.Identifier, j, m)
			}
		}
		if got[i].Identifier != p.Self().Identifier || got[i].Port != p.Self().Port {
			t.Errorf("%s: Peers()[%d] = %+v, want itself", p.cfg.Identifier, i, got[i])
		}
	}
}

// TestResignSkipsADownPeer: whichever follower is down, Resign hands over
// to the live one instead of timing out.
func TestResignSkipsADownPeer(t *testing.T) {
	for round := range 2 {
		tc := newTestCluster(t, 3)
		leader := tc.waitLeader(5 * time.Second)
		li := tc.index(leader)
		di := (li + 1 + round) % 3 // round 0 and 1 stop a different follower
		down := tc.cfgs[di].Identifier
		tc.stop(di)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := leader.Resign(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Resign with %s down: %v", round, down, err)
		}
		l, ok := leader.Leader()
		if !ok || l.Identifier == down || l.Identifier == leader.cfg.Identifier {
			t.Fatalf("round %d: leader after Resign: %+v %v", round, l, ok)
		}
		t.Logf("round %d: resigned to %s in %v with %s down", round, l.Identifier, time.Since(start), down)
		tc.closeAll()
	}

	// A transfer to a peer that is down fails, and the leader leads on.
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	di := (tc.index(leader) + 1) % 3
	tc.stop(di)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := leader.Transfer(ctx, tc.cfgs[di].Identifier)
	cancel()
	if !errors.Is(err, ErrTransferFailed) {
		t.Fatalf("Transfer to a stopped peer: %v, want ErrTransferFailed", err)
	}
	if !leader.IsLeader() {
		t.Fatal("the leader did not lead on after a failed transfer")
	}
	tc.closeAll()

	// Alone: nobody to hand over to.
	tc = newTestCluster(t, 1)
	leader = tc.waitLeader(5 * time.Second)
	if err := leader.Resign(context.Background()); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Resign alone: %v", err)
	}
}
