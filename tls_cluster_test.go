package qcluster

import (
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/pki"
)

// TestTLS runs the leader-mode and registry scenarios again with every peer
// on mutual TLS and encrypted gossip (a shared cluster_key): newTestCluster
// switches TLS on for the tests under TestTLS.
func TestTLS(t *testing.T) {
	t.Parallel() // seconds of waiting on timers, little CPU: beside another such test
	for name, fn := range map[string]func(*testing.T){
		"ThreePeersElectOneLeader":     TestThreePeersElectOneLeader,
		"FailoverAndRestart":           TestFailoverAndRestart,
		"FivePeersNeedMajority":        TestFivePeersNeedMajority,
		"IsolatedLeaderLeaseEndsFirst": TestIsolatedLeaderLeaseEndsFirst,
		"JoinFourthAndFifthPeer":       TestJoinFourthAndFifthPeer,
		"JoinAsLearner":                TestJoinAsLearner,
		"LeaveLeaderHandsOver":         TestLeaveLeaderHandsOver,
		"KillMemberSuspectThenDead":    TestKillMemberSuspectThenDeadAndMetadata,
		"RemovePeerAndLastVoter":       TestRemovePeerAndLastVoter,
	} {
		t.Run(name, fn)
	}
}

// TestTLSOutsidersAreRefused: peers with another cluster key (another CA and
// gossip key) or another cluster name try to join a TLS cluster; they are
// refused, and the cluster keeps its leader and members throughout.
func TestTLSOutsidersAreRefused(t *testing.T) {
	// Not t.Parallel: it asserts that leadership stays put, which a busy
	// neighbour's load can upset (a spurious election, not the bug under test).
	key := pki.NewClusterKey()
	tc := newTestCluster(t, 3, func(c *Config) {
		c.ClusterKey = key
		c.ClusterName = "blue"
	})
	leader := tc.waitLeader(10 * time.Second)
	term := leader.Term()
	before := tc.waitSameRegistry(5*time.Second, 3)

	wrongKey := tc.addJoiner("intruder1", 0, true, func(c *Config) { c.ClusterKey = pki.NewClusterKey() })
	otherName := tc.addJoiner("intruder2", 1, true, func(c *Config) { c.ClusterName = "green" })
	plain := tc.addJoiner("intruder3", 2, true, func(c *Config) { c.ClusterKey = "" })
	// None of them can ask the cluster whether it runs (their TLS is
	// refused), so each founds a cluster with its contact peer, which
	// cannot elect: the contact refuses to talk to it.
	// Give them time to try to vote and gossip; the leader stays.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		l := tc.waitLeader(5*time.Second, wrongKey, otherName, plain)
		if l != leader || l.Term() != term {
			t.Fatalf("leadership moved: %s term %d (was %s term %d)", l.cfg.Identifier, l.Term(), leader.cfg.Identifier, term)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 3 {
		for _, m := range tc.peers[i].Peers() {
			switch m.Identifier {
			case "intruder1", "intruder2", "intruder3":
				t.Errorf("p%d knows %s: %+v", i, m.Identifier, m)
			}
		}
		if v := registryView(tc.peers[i]); len(v) != len(before) {
			t.Errorf("p%d members %v", i, v)
		}
	}
	for _, i := range []int{wrongKey, otherName, plain} {
		if _, ok := tc.peers[i].Leader(); ok {
			t.Errorf("%s knows a leader", tc.cfgs[i].Identifier)
		}
	}
	mux := tc.peers[0].run.Load().Mux.Stats()
	t.Logf("p0 port refusals: %+v; raft: %+v; gossip: %+v", mux, tc.peers[0].transport().Refusals(), tc.peers[0].gossip().Stats())
	if mux.HandshakeFailed+mux.PlainText+mux.Unauthenticated == 0 {
		t.Error("p0 counted no refused connection")
	}
}

// TestGossipKeyRotationKeepsTheLeader rotates the gossip key on a running
// cluster, step by step on every peer, while checking that no member is
// ever suspected and the leader never changes; afterwards a peer that only
// has the old key cannot gossip with the cluster.
func TestGossipKeyRotationKeepsTheLeader(t *testing.T) {
	// Not t.Parallel: it asserts that leadership stays put, which a busy
	// neighbour's load can upset (a spurious election, not the bug under test).
	oldKey, newKey := pki.NewGossipKey(), pki.NewGossipKey()
	tc := newTestCluster(t, 3, localGossip, func(c *Config) { c.GossipKey = oldKey })
	leader := tc.waitLeader(10 * time.Second)
	term := leader.Term()
	allAlive := func() bool {
		for _, p := range tc.peers {
			for _, m := range p.Peers() {
				if m.Health != HealthAlive {
					return false
				}
			}
		}
		return true
	}
	waitFor(t, 15*time.Second, "everyone alive in gossip", allAlive)
	check := func(step string) {
		t.Helper()
		// Hold each step for a few gossip and probe rounds.
		deadline := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if !allAlive() {
				t.Fatalf("%s: a member is not alive: %+v", step, tc.peers[0].Peers())
			}
			if l := tc.waitLeader(5 * time.Second); l != leader || l.Term() != term {
				t.Fatalf("%s: leadership moved to %s term %d", step, l.cfg.Identifier, l.Term())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, p := range tc.peers {
		if err := p.InstallGossipKey(newKey); err != nil {
			t.Fatal(err)
		}
	}
	check("install")
	for _, p := range tc.peers {
		if err := p.UseGossipKey(newKey); err != nil {
			t.Fatal(err)
		}
	}
	check("use")
	for _, p := range tc.peers {
		if err := p.RemoveGossipKey(oldKey); err != nil {
			t.Fatal(err)
		}
	}
	check("remove")
	if err := tc.peers[0].UseGossipKey(pki.NewGossipKey()); err == nil {
		t.Error("UseGossipKey accepted a key that is not installed")
	}
	// A member with only the old key is not let into gossip. (Without TLS
	// or an api_token it could still register through the open API: the
	// gossip key protects gossip only; see docs/security.md.)
	tc.addJoiner("stale", 0, true, func(c *Config) { c.GossipKey = oldKey })
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range tc.peers[0].Peers() {
			if m.Identifier == "stale" && m.Health == HealthAlive {
				t.Fatalf("a peer with the old gossip key is alive in the cluster's gossip: %+v", m)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}
