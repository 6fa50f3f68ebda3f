package qcluster

import (
	"context"
	"testing"
	"time"
)

// TestEventHubCountsEvents: every event published and every touch counts
// as a change of the membership index, and wakes a waiter on the index
// before it (a blocking GET /v1/peers).
func TestEventHubCountsEvents(t *testing.T) {
	var h eventHub
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, change := range []struct {
		name string
		do   func()
	}{
		{"publish", func() { h.publish(Event{Type: EventUpdated, Member: Member{Peer: Peer{Identifier: "a"}}}) }},
		{"touch", h.touch},
	} {
		idx := h.index()
		woke := make(chan error, 1)
		go func() { woke <- h.wait(ctx, idx) }()
		change.do()
		if got := h.index(); got != idx+1 {
			t.Errorf("%s: index %d -> %d, want one more", change.name, idx, got)
		}
		if err := <-woke; err != nil {
			t.Errorf("%s: the waiter on index %d: %v", change.name, idx, err)
		}
	}
	h.closeAll()
	if err := h.wait(ctx, h.index()); err != ErrClosed {
		t.Errorf("wait on a closed hub: %v, want ErrClosed", err)
	}
}
