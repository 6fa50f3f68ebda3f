// Package eventhub fans events out to subscribers' channels, never making
// the publisher wait (a reader that falls behind loses what does not fit
// its buffer), and counts changes: every event published, and the changes
// that have no event (Touch). A waiter on the count (Wait) is woken at the
// next change; the SDK's membership index (a blocking GET /v1/peers) is
// this count.
package eventhub

import (
	"context"
	"sync"

	"github.com/qcluster/qcluster/internal/sdkerr"
)

// Hub fans events of type E out to Subscribe channels and counts changes.
// The zero Hub is ready to use; it must not be copied after first use.
type Hub[E any] struct {
	mu      sync.Mutex
	subs    map[chan E]struct{}
	closed  bool
	idx     uint64        // changes so far
	changed chan struct{} // closed at the next change (nil: nobody waits)
}

// Publish counts a change and sends ev to every subscriber that has room
// for it; after Close it does nothing.
func (h *Hub[E]) Publish(ev E) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.bump()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default: // the reader is its buffer behind: it loses this one
		}
	}
}

// Touch counts a change that no event reports.
func (h *Hub[E]) Touch() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.bump()
	}
}

// bump counts a change and wakes Wait; h.mu is held.
func (h *Hub[E]) bump() {
	h.idx++
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// Index returns the number of changes counted so far.
func (h *Hub[E]) Index() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.idx
}

// Wait returns once the count differs from index: at once if it does,
// else at the next change. It returns ctx's error when ctx ends first,
// sdkerr.ErrClosed when the hub is closed. It costs no goroutine and never
// makes Publish wait.
func (h *Hub[E]) Wait(ctx context.Context, index uint64) error {
	h.mu.Lock()
	if h.idx != index {
		h.mu.Unlock()
		return nil
	}
	if h.closed {
		h.mu.Unlock()
		return sdkerr.ErrClosed
	}
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	ch := h.changed
	h.mu.Unlock()
	select {
	case <-ch:
		if h.Index() == index {
			return sdkerr.ErrClosed // Close woke it, with no change
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Subscribe returns a channel of the events published from now on, with
// room for buffer unread ones. The channel is closed when ctx is done or
// the hub is closed (at once if it is).
func (h *Hub[E]) Subscribe(ctx context.Context, buffer int) <-chan E {
	ch := make(chan E, buffer)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(ch)
		return ch
	}
	if h.subs == nil {
		h.subs = make(map[chan E]struct{})
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
	})
	return ch
}

// Close closes every subscriber's channel, wakes the waiters, and makes
// the hub inert. It is idempotent.
func (h *Hub[E]) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	for ch := range h.subs {
		close(ch)
		delete(h.subs, ch)
	}
}
