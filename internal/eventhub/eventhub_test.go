package eventhub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// TestPublishCountsAndWakes: Publish and Touch each count one change and
// wake a waiter on the count before it; Close wakes it with sdkerr.ErrClosed.
func TestPublishCountsAndWakes(t *testing.T) {
	var h Hub[int]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, change := range map[string]func(){"publish": func() { h.Publish(1) }, "touch": h.Touch} {
		idx := h.Index()
		woke := make(chan error, 1)
		go func() { woke <- h.Wait(ctx, idx) }()
		change()
		if got := h.Index(); got != idx+1 {
			t.Errorf("%s: index %d -> %d, want one more", name, idx, got)
		}
		if err := <-woke; err != nil {
			t.Errorf("%s: waiter: %v", name, err)
		}
	}
	if err := h.Wait(ctx, 0); err != nil {
		t.Errorf("Wait on a past index: %v, want nil at once", err)
	}
	idx := h.Index()
	woke := make(chan error, 1)
	go func() { woke <- h.Wait(ctx, idx) }()
	h.Close()
	if err := <-woke; !errors.Is(err, sdkerr.ErrClosed) {
		t.Errorf("waiter woken by Close: %v, want Closed", err)
	}
	h.Publish(2)
	h.Touch()
	if h.Index() != idx {
		t.Errorf("a closed hub counted: %d, want %d", h.Index(), idx)
	}
	if err := h.Wait(ctx, idx); !errors.Is(err, sdkerr.ErrClosed) {
		t.Errorf("Wait on a closed hub: %v", err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	wcancel()
	var open Hub[int]
	if err := open.Wait(wctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with an ended ctx: %v", err)
	}
}

// TestSubscribe: a subscriber gets events in order up to its buffer and
// loses the rest without making Publish wait; its channel closes with its
// ctx, and every channel closes with the hub.
func TestSubscribe(t *testing.T) {
	var h Hub[int]
	ctx, cancel := context.WithCancel(context.Background())
	a := h.Subscribe(ctx, 2)
	b := h.Subscribe(context.Background(), 8)
	for i := range 3 {
		h.Publish(i) // a's third does not fit
	}
	if got := []int{<-a, <-a}; got[0] != 0 || got[1] != 1 {
		t.Errorf("a got %v, want [0 1]", got)
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-a:
		case <-deadline:
			t.Fatal("a's channel still open 10s after its ctx ended")
		}
	}
	h.Close()
	var got []int
	for v := range b {
		got = append(got, v)
	}
	if len(got) != 3 || got[2] != 2 {
		t.Errorf("b got %v, want [0 1 2] then closed", got)
	}
	if _, ok := <-h.Subscribe(context.Background(), 1); ok {
		t.Error("Subscribe on a closed hub: an open channel")
	}
}
