package transfer

import (
	"context"
	"errors"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// A peer with no node (not started) refuses a hand-over at once, before
// it reads anything else of the peer. The hand-over itself is exercised on
// whole clusters by the root package's tests (TestResignSkipsADownPeer,
// TestHealthResignSkipsFailing, TestAPITransferAndResignMoveLeadership).
func TestNotStarted(t *testing.T) {
	d := Deps{
		Node:    func() *consensus.Node { return nil },
		Failing: func() map[uint64]bool { t.Fatal("Failing read before the node"); return nil },
		Name:    func(uint64) string { return "x" },
		Watch: func(context.Context) iter.Seq[Leadership] {
			t.Fatal("Watch opened without a node")
			return nil
		},
	}
	if _, err := Start(context.Background(), d, 0, nil); !errors.Is(err, sdkerr.ErrNotStarted) {
		t.Fatalf("Start = %v, want NotStarted", err)
	}
	if err := Resign(context.Background(), d); !errors.Is(err, sdkerr.ErrNotStarted) {
		t.Fatalf("Resign = %v, want NotStarted", err)
	}
}

// TestOnCloseTimeout: two election timeouts, at most MaxOnClose.
func TestOnCloseTimeout(t *testing.T) {
	for _, tt := range []struct{ et, want time.Duration }{
		{time.Second, 2 * time.Second},
		{2500 * time.Millisecond, MaxOnClose},
		{time.Minute, MaxOnClose},
	} {
		if got := OnCloseTimeout(tt.et); got != tt.want {
			t.Errorf("OnCloseTimeout(%v) = %v, want %v", tt.et, got, tt.want)
		}
	}
}

// TestOutcome: a hand-over ends when another peer leads; to a named
// target, only that target leading is a success; this peer leading again
// means raft gave up.
func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		name     string
		l        Leadership
		named    bool
		done     bool
		fails    bool
		contains string
	}{
		{"no leader yet", Leadership{}, true, false, false, ""},
		{"the target leads", Leadership{Other: "p3"}, true, true, false, ""},
		{"another peer took over", Leadership{Other: "p0"}, true, true, true, "p0 took over instead of p3"},
		{"any other voter would do", Leadership{Other: "p0"}, false, true, false, ""},
		{"this peer again", Leadership{Self: true}, true, true, true, "p3 did not take over"},
		{"this peer again, unnamed", Leadership{Self: true}, false, true, true, "p3 did not take over"},
	} {
		done, err := outcome(tc.l, "p3", tc.named)
		if done != tc.done || (err != nil) != tc.fails || (err != nil && (!errors.Is(err, sdkerr.ErrTransferFailed) || !strings.Contains(err.Error(), tc.contains))) {
			t.Errorf("%s: outcome = %v, %v; want done %v, failure %v (%q)", tc.name, done, err, tc.done, tc.fails, tc.contains)
		}
	}
}
