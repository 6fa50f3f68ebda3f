package qcluster

import (
	"context"
	"sync"
	"time"
)

// eventHub fans membership and leadership events out to Events channels,
// and counts the changes of what Peers shows (the API's membership index):
// every event it publishes, and the changes that have none (touch).
type eventHub struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	closed  bool
	idx     uint64        // changes so far
	changed chan struct{} // closed at the next change (nil: nobody waits)
}

func (h *eventHub) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.bump()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default: // the reader is EventBuffer behind: it loses this one
		}
	}
}

// touch counts a change of what Peers shows that no Event reports (a
// member known only to gossip, this peer's own metadata in masterless
// mode).
func (h *eventHub) touch() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.bump()
	}
}

// bump counts a change and wakes wait; h.mu is held.
func (h *eventHub) bump() {
	h.idx++
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// index returns the number of changes counted so far.
func (h *eventHub) index() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.idx
}

// wait returns once the count differs from index: at once if it does,
// else at the next change. It returns ctx's error when ctx ends first,
// ErrClosed when the hub is closed. It costs no goroutine and never makes
// publish wait.
func (h *eventHub) wait(ctx context.Context, index uint64) error {
	h.mu.Lock()
	if h.idx != index {
		h.mu.Unlock()
		return nil
	}
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	ch := h.changed
	h.mu.Unlock()
	select {
	case <-ch:
		if h.index() == index {
			return ErrClosed // closeAll woke it, with no change
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *eventHub) closeAll() {
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
