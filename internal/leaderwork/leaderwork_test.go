package leaderwork

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

var errClosed = errors.New("closed")

// fakeLease is a lease held until a time the test sets.
type fakeLease struct {
	mu    sync.Mutex
	until time.Time
	term  uint64
	why   Loss
}

func (f *fakeLease) Left(now time.Time) (time.Duration, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Before(f.until) {
		return f.until.Sub(now), f.term, true
	}
	return 0, f.term, false
}

func (f *fakeLease) Why(uint64) Loss {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.why
}

func (f *fakeLease) set(until time.Time, why Loss) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until, f.why = until, why
}

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the tenure's context did not end", what)
	}
}

// TestTenureEndsAtLeaseEnd: with no Check at all (no view comes), the
// timer ends the tenure when the lease runs out; while the lease is
// renewed, the timer is re-armed instead.
func TestTenureEndsAtLeaseEnd(t *testing.T) {
	lease := &fakeLease{term: 3, why: LossRanOut}
	first := time.Now().Add(100 * time.Millisecond)
	lease.set(first, LossRanOut)
	ts := NewTracker("p1", lease, errClosed)
	tn := ts.Gain(context.Background())
	if tn == nil {
		t.Fatal("no tenure while the lease holds")
	}
	defer tn.Release()
	if term, ok := Term(tn.Context()); !ok || term != 3 {
		t.Errorf("Term = %d, %v; want 3", term, ok)
	}
	// Renew until well past the first lease's end.
	for time.Now().Before(first.Add(200 * time.Millisecond)) {
		lease.set(time.Now().Add(time.Second), LossRanOut)
		time.Sleep(10 * time.Millisecond)
	}
	if tn.IsLost() {
		t.Fatalf("the tenure ended while the lease was renewed: %v", tn.Why())
	}
	if d, _ := tn.Context().Deadline(); !d.After(first) {
		t.Errorf("Deadline %v did not move past the first lease's end %v", d, first)
	}
	lease.set(time.Now().Add(50*time.Millisecond), LossRanOut)
	waitDone(t, tn.Context(), "lease ran out")
	cause := context.Cause(tn.Context())
	if !errors.Is(cause, ErrLeadershipLost) || !strings.Contains(cause.Error(), "ran out in term 3") {
		t.Errorf("cause %v", cause)
	}
	if d, _ := tn.Context().Deadline(); d.After(tn.LostAt()) {
		t.Errorf("Deadline %v after the loss at %v", d, tn.LostAt())
	}
}

// TestCheckEndsTenure: a view that drops the lease ends the tenure in
// Check itself, with the reason the lease gives.
func TestCheckEndsTenure(t *testing.T) {
	for _, tt := range []struct {
		why  Loss
		want string
	}{
		{LossGaveUp, "gave the lease up"},
		{LossSteppedDown, "stepped down"},
		{LossClosed, "closed"},
	} {
		lease := &fakeLease{term: 1}
		lease.set(time.Now().Add(time.Hour), LossRanOut)
		ts := NewTracker("p1", lease, errClosed)
		tn := ts.Gain(context.Background())
		if tn == nil {
			t.Fatal("no tenure while the lease holds")
		}
		ts.Check()
		if tn.IsLost() {
			t.Fatalf("%s: Check ended a tenure whose lease holds", tt.want)
		}
		lease.set(time.Time{}, tt.why)
		ts.Check()
		if !tn.IsLost() || tn.Context().Err() == nil {
			t.Fatalf("%s: the tenure lasts after Check", tt.want)
		}
		if cause := context.Cause(tn.Context()); !errors.Is(cause, ErrLeadershipLost) || !strings.Contains(cause.Error(), tt.want) {
			t.Errorf("cause %v, want %q", cause, tt.want)
		}
		if tt.why == LossClosed && !errors.Is(context.Cause(tn.Context()), errClosed) {
			t.Errorf("closed: cause %v does not wrap errClosed", context.Cause(tn.Context()))
		}
		tn.Release()
	}
}

// TestFollow: work runs at a gain, its context ends when the stream says
// the peer stepped down, Stopped follows, NewLeader sees each new leader,
// and Follow returns ctx's error when ctx ends.
func TestFollow(t *testing.T) {
	lease := &fakeLease{term: 2}
	lease.set(time.Now().Add(time.Hour), LossRanOut)
	ts := NewTracker("p1", lease, errClosed)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := make(chan Status, 1)
	started := make(chan context.Context, 1)
	stopped := make(chan struct{}, 1)
	var mu sync.Mutex
	var leaders []string
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, ts, Stream[Status]{
			States: states,
			Status: func(s Status) Status { return s },
			Closed: func() error { return errClosed },
			Retry:  10 * time.Millisecond,
		}, Follower[Status]{
			Work: func(ctx context.Context) error {
				started <- ctx
				<-ctx.Done()
				return ctx.Err()
			},
			Stopped: func() { stopped <- struct{}{} },
			NewLeader: func(s Status) {
				mu.Lock()
				leaders = append(leaders, s.Leader)
				mu.Unlock()
			},
		})
	}()
	states <- Status{IsLeader: true, Term: 2, HasLeader: true, Leader: "p1"}
	var wctx context.Context
	select {
	case wctx = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("work did not start at the gain")
	}
	lease.set(time.Time{}, LossSteppedDown)
	states <- Status{Term: 3, HasLeader: true, Leader: "p2"}
	waitDone(t, wctx, "stepped down")
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stopped was not called")
	}
	cancel()
	close(states) // as Watch closes its channel when its ctx ends
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(leaders, ",") != "p1,p2" {
		t.Errorf("NewLeader saw %v, want p1, p2", leaders)
	}
}
