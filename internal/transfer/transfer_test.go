package transfer

import (
	"context"
	"errors"
	"iter"
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
