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
	mux := tc.peers[0].mux.Stats()
	t.Logf("p0 port refusals: %+v; raft: %+v; gossip: %+v", mux, tc.peers[0].tr.Refusals(), tc.peers[0].gossip.Stats())
	if mux.HandshakeFailed+mux.PlainText+mux.Unauthenticated == 0 {
		t.Error("p0 counted no refused connection")
	}
}
