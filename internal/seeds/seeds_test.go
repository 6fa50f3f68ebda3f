package seeds

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/membership"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fakeGossip reaches its seed only after failing a number of times (the
// seed's peer starts late).
type fakeGossip struct {
	mu     sync.Mutex
	fails  int // Join attempts that fail before one reaches the seed
	calls  int
	joined bool
	joinAt int // the call that joined
}

func (g *fakeGossip) Join(_ context.Context, addrs []string) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if g.calls <= g.fails {
		return 0, errors.New("connection refused")
	}
	if !g.joined {
		g.joined, g.joinAt = true, g.calls
	}
	return len(addrs), nil
}

func (g *fakeGossip) Members() []membership.Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := []membership.Member{{Name: "self", State: membership.StateAlive}}
	if g.joined {
		ms = append(ms, membership.Member{Name: "other", State: membership.StateAlive})
	}
	return ms
}

// TestRunRetriesUntilJoined: a peer whose seed is not up yet tries it
// again, with backoff, until it joins (start order never matters).
func TestRunRetriesUntilJoined(t *testing.T) {
	g := &fakeGossip{fails: 3}
	q := New("self", slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx, g)
	}()
	defer func() {
		cancel()
		<-done
	}()
	q.Add("10.0.0.1:7946")
	q.Add("10.0.0.1:7946") // queued once
	deadline := time.Now().Add(20 * time.Second)
	for {
		g.mu.Lock()
		joined, calls, joinAt := g.joined, g.calls, g.joinAt
		g.mu.Unlock()
		if joined {
			if joinAt != g.fails+1 {
				t.Errorf("joined at Join call %d, want %d", joinAt, g.fails+1)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not joined after %d attempts", calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
