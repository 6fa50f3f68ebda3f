package qcluster

import (
	"testing"
	"time"
)

// BenchmarkIsLeader measures the hot path applications call in their work
// loops, on a leader holding its lease.
func BenchmarkIsLeader(b *testing.B) {
	tc := newTestCluster(b, 3)
	leader := tc.waitLeader(5 * time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		leader.IsLeader()
	}
}

// BenchmarkLeader measures Leader() on a follower.
func BenchmarkLeader(b *testing.B) {
	tc := newTestCluster(b, 3)
	leader := tc.waitLeader(5 * time.Second)
	follower := tc.peers[(tc.index(leader)+1)%3]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		follower.Leader()
	}
}

// BenchmarkIsLeaderParallel shows IsLeader does not contend.
func BenchmarkIsLeaderParallel(b *testing.B) {
	tc := newTestCluster(b, 3)
	leader := tc.waitLeader(5 * time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			leader.IsLeader()
		}
	})
}

// TestHotPathsDoNotAllocate checks the no-allocation promise of IsLeader,
// Leader and Term (allocation counts are deterministic, unlike timings).
func TestHotPathsDoNotAllocate(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(5 * time.Second)
	follower := tc.peers[(tc.index(leader)+1)%3]
	for name, f := range map[string]func(){
		"IsLeader":           func() { leader.IsLeader() },
		"Leader on leader":   func() { leader.Leader() },
		"Leader on follower": func() { follower.Leader() },
		"Term":               func() { follower.Term() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
}
