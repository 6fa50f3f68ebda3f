package qcluster

import (
	"log/slog"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
)

// TestNodeNowEstimate checks IsLeader's estimate of the node clock
// (snapshot.nodeNow) with injected readings of time.Now's two clocks: it
// errs only on the safe side (ahead of the node clock: the lease ends
// early), whatever the wall clock does, and it sees a suspend.
func TestNodeNowEstimate(t *testing.T) {
	const (
		atNode = 100 * time.Second
		lease  = 120 * time.Millisecond
		wall0  = int64(1_700_000_000_000_000_000)
	)
	s := &snapshot{
		view:   consensus.View{ID: 1, Role: consensus.Leader, Lead: 1, Term: 3, LeaseUntil: atNode + lease},
		at:     stamp{mono: 10 * time.Second, wall: wall0},
		atNode: atNode,
	}
	// after is a stamp mono and wall after the anchor.
	after := func(mono, wall time.Duration) stamp {
		return stamp{mono: s.at.mono + mono, wall: s.at.wall + int64(wall)}
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name       string
		now        stamp
		want       time.Duration // the estimate of the node clock
		wantLeader bool
	}{
		{"no time passed", after(0, 0), atNode, true},
		{"50ms, both clocks agree", after(50*ms, 50*ms), atNode + 50*ms, true},
		{"lease over by both clocks", after(lease, lease), atNode + lease, false},
		// A suspend: the monotonic clock stopped, the wall clock (like
		// CLOCK_BOOTTIME) counted the hour slept.
		{"suspended for an hour", after(50*ms, time.Hour+50*ms), atNode + time.Hour + 50*ms, false},
		{"suspended for 100ms", after(30*ms, 130*ms), atNode + 130*ms, false},
		// The wall clock stepped back by an hour: the monotonic clock
		// still counts the time that passed.
		{"wall stepped back, lease running", after(50*ms, 50*ms-time.Hour), atNode + 50*ms, true},
		{"wall stepped back, lease over", after(lease+ms, lease+ms-time.Hour), atNode + lease + ms, false},
		// The wall clock stepped forward: the lease ends early (safe).
		{"wall stepped forward", after(50*ms, 50*ms+time.Minute), atNode + 50*ms + time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.nodeNow(tc.now)
			if got != tc.want {
				t.Errorf("nodeNow = %v, want %v", got, tc.want)
			}
			if leader := s.view.IsLeaderAt(got); leader != tc.wantLeader {
				t.Errorf("IsLeaderAt(%v) = %v, want %v (lease until %v)", got, leader, tc.wantLeader, s.view.LeaseUntil)
			}
		})
	}
}

// TestNodeNowNeverLags reads the real clocks: the estimate of the node
// clock is never behind a reading of the node clock taken before it, from
// an anchor just taken or one taken long ago.
func TestNodeNowNeverLags(t *testing.T) {
	c := newUnstartedCluster(t)
	v := consensus.View{ID: c.selfID, Role: consensus.Follower, Term: 1}
	for i := range 2000 {
		if i%100 == 0 {
			c.onView(v, c.clock()) // a fresh anchor now and then
		}
		before := c.clock()
		if est := c.now(); est < before {
			t.Fatalf("iteration %d: the estimate %v lags the node clock read before it (%v) by %v", i, est, before, before-est)
		}
	}
}

// TestSnapshotRepublishedEveryTick checks that every view the node loop
// publishes (it does so at every tick) gets a new snapshot with a new
// anchor, even when the view did not change, so IsLeader's estimate never
// extrapolates from an old anchor.
func TestSnapshotRepublishedEveryTick(t *testing.T) {
	c := newUnstartedCluster(t)
	v := consensus.View{ID: c.selfID, Role: consensus.Follower, Term: 1}
	c.onView(v, c.clock())
	first := c.snap.Load()
	for i := range 3 {
		prev := c.snap.Load()
		for c.stamp().mono == prev.at.mono { // let the clock move
		}
		c.onView(v, c.clock()) // the same view, one tick later
		s := c.snap.Load()
		if s == prev || s.at.mono <= prev.at.mono || s.atNode < prev.atNode {
			t.Fatalf("tick %d: snapshot anchor not renewed: before %+v/%v, after %+v/%v", i, prev.at, prev.atNode, s.at, s.atNode)
		}
		if !s.view.Equal(first.view) {
			t.Fatalf("tick %d: view changed: %+v", i, s.view)
		}
	}
	// A closed snapshot stays closed.
	c.publishClosed()
	c.onView(v, c.clock())
	if !c.snap.Load().closed {
		t.Fatal("onView replaced the closed snapshot")
	}
}

// newUnstartedCluster returns a Cluster that is never started (its node
// clock and snapshots work without a node).
func newUnstartedCluster(t *testing.T) *Cluster {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Identifier, cfg.ListenPort, cfg.DataDir = "solo", 7001, t.TempDir()
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
