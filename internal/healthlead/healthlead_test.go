package healthlead

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/health"
	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fake is a peer for Deps: a leader (or not) with gossip members, that
// records what Leadership does to it.
type fake struct {
	mu        sync.Mutex
	leading   bool
	members   []membership.Member
	candidate []bool
	gossip    []membership.Check
	transfers [][]uint64 // the tried set of each Transfer
	transfer  func(tried map[uint64]bool) (uint64, error)
	touched   int
}

func (f *fake) deps(check *health.Check) Deps {
	return Deps{
		Identifier:        "a",
		ID:                registry.NodeID("a"),
		ElectionTimeout:   50 * time.Millisecond,
		HeartbeatInterval: 10 * time.Millisecond,
		Log:               slog.New(slog.NewTextHandler(io.Discard, nil)),
		Check:             check,
		Leading: func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.leading
		},
		SetCandidate: func(_ context.Context, c bool) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.candidate = append(f.candidate, c)
			return nil
		},
		SetGossipCheck: func(_ context.Context, ch membership.Check) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.gossip = append(f.gossip, ch)
		},
		Members: func() []membership.Member {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.members
		},
		Touch: func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.touched++
		},
		Transfer: func(_ context.Context, tried map[uint64]bool) (uint64, error) {
			f.mu.Lock()
			var ids []uint64
			for id := range tried {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			f.transfers = append(f.transfers, ids)
			fn := f.transfer
			f.mu.Unlock()
			return fn(tried)
		},
		PeerName: func(id uint64) string { return fmt.Sprint(id) },
	}
}

func ttlCheck() *health.Check {
	return health.New(&config.HealthCheckConfig{TTL: config.Duration(time.Hour)})
}

func TestLeaderFailingFollowsGossip(t *testing.T) {
	f := &fake{members: []membership.Member{
		{Name: "a", Check: membership.CheckFailing}, // itself: from its own check
		{Name: "b", Check: membership.CheckFailing},
		{Name: "c", Check: membership.CheckPassing},
	}}
	l := New(f.deps(health.New(nil)))
	b, c := registry.NodeID("b"), registry.NodeID("c")
	if l.LeaderFailing(b) {
		t.Fatal("LeaderFailing before NoteGossip")
	}
	l.NoteGossip()
	if !l.LeaderFailing(b) || l.LeaderFailing(c) || l.LeaderFailing(registry.NodeID("a")) {
		t.Fatalf("LeaderFailing b=%v c=%v a=%v; want true false false", l.LeaderFailing(b), l.LeaderFailing(c), l.LeaderFailing(registry.NodeID("a")))
	}
	f.members = []membership.Member{{Name: "b", Check: membership.CheckPassing}}
	l.NoteGossip()
	if l.LeaderFailing(b) {
		t.Fatal("b still failing after gossip says it passes")
	}
}

func TestNoLeaderReason(t *testing.T) {
	a, b, c := registry.NodeID("a"), registry.NodeID("b"), registry.NodeID("c")
	f := &fake{members: []membership.Member{{Name: "b", Check: membership.CheckFailing}}}
	check := ttlCheck() // failing until it passes
	l := New(f.deps(check))
	if got := l.Failing(); !got[a] || !got[b] || got[c] {
		t.Fatalf("Failing = %v; want a and b", got)
	}
	if r := l.NoLeaderReason([]uint64{a, b}, 0, false); r == "" || r[:5] != "every" {
		t.Fatalf("every voter fails: reason %q", r)
	}
	if r := l.NoLeaderReason([]uint64{a, b, c}, a, true); r == "" || r[:4] != "this" {
		t.Fatalf("this leader fails: reason %q", r)
	}
	if r := l.NoLeaderReason([]uint64{a, b, c}, b, false); r == "" || r[:3] != "the" {
		t.Fatalf("the leader fails: reason %q", r)
	}
	if r := l.NoLeaderReason(nil, 0, false); r != "" {
		t.Fatalf("no voters: reason %q", r)
	}
	check.Set(health.Passing, "ok", time.Now())
	if r := l.NoLeaderReason([]uint64{a, b, c}, c, false); r != "" {
		t.Fatalf("leader c passes: reason %q", r)
	}
}

// TestRunHandsOverWhileFailing: a failing leader is no candidate, hands over
// at once (trying the next voter when one refuses), and tells gossip; once
// it passes, it is a candidate again.
func TestRunHandsOverWhileFailing(t *testing.T) {
	f := &fake{leading: true}
	f.transfer = func(tried map[uint64]bool) (uint64, error) {
		if len(tried) == 0 {
			return 7, fmt.Errorf("%w: 7 did not take over", sdkerr.ErrTransferFailed)
		}
		f.mu.Lock()
		f.leading = false
		f.mu.Unlock()
		return 8, nil
	}
	check := ttlCheck()
	l := New(f.deps(check))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, f, func() bool {
		return len(f.gossip) == 1 && f.gossip[0] == membership.CheckFailing
	})
	f.mu.Lock()
	if !slices.Equal(f.candidate, []bool{false}) || len(f.transfers) != 2 || len(f.transfers[0]) != 0 || !slices.Equal(f.transfers[1], []uint64{7}) {
		t.Errorf("candidate %v transfers %v; want [false] and [[] [7]]", f.candidate, f.transfers)
	}
	f.mu.Unlock()
	check.Set(health.Passing, "ok", time.Now())
	waitFor(t, f, func() bool { return len(f.gossip) == 2 && f.gossip[1] == membership.CheckPassing && f.touched == 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.candidate, []bool{false, true}) || len(f.transfers) != 2 {
		t.Errorf("candidate %v transfers %v after passing", f.candidate, f.transfers)
	}
}

// TestResignStopsWithoutVoter: no voter to hand over to ends the attempt.
func TestResignStopsWithoutVoter(t *testing.T) {
	f := &fake{leading: true}
	f.transfer = func(map[uint64]bool) (uint64, error) {
		return 0, fmt.Errorf("%w: no other voter", sdkerr.ErrUnknownPeer)
	}
	l := New(f.deps(ttlCheck()))
	l.resign(context.Background())
	if len(f.transfers) != 1 {
		t.Fatalf("%d transfers; want 1", len(f.transfers))
	}
	f.transfer = func(map[uint64]bool) (uint64, error) { return 3, sdkerr.ErrClosed }
	l.resign(context.Background())
	if len(f.transfers) != 2 {
		t.Fatalf("%d transfers; want 2", len(f.transfers))
	}
}

func waitFor(t *testing.T, f *fake, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		f.mu.Lock()
		ok := cond()
		f.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
