package qcluster

import (
	"context"
	"sync"

	"github.com/qcluster/qcluster/internal/latest"
)

// watchers fans State changes out to Watch channels. Each channel has room
// for one State and always holds the latest: a slow reader skips states it
// has not read yet but never misses the current one. A subscription costs
// no goroutine: context.AfterFunc ends it when its context ends.
type watchers struct {
	mu     sync.Mutex
	subs   map[*latest.Slot[State]]func() bool // each subscription, and the stop of its AfterFunc
	last   State
	idx    uint64
	closed bool
	wg     sync.WaitGroup // one per subscription whose AfterFunc may yet run
}

func (w *watchers) init() {
	w.subs = make(map[*latest.Slot[State]]func() bool)
}

func observable(a, b State) bool {
	return a.Role != b.Role || a.Term != b.Term || a.HasLeader != b.HasLeader ||
		a.IsLeader != b.IsLeader || a.Leader.Identifier != b.Leader.Identifier
}

// publish records st and, when it differs from the last State in a way an
// observer can see, delivers it to every watcher. It reports whether it did.
func (w *watchers) publish(st State) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || (w.idx > 0 && !observable(w.last, st)) {
		return false
	}
	w.idx++
	st.Index = w.idx
	w.last = st
	for s := range w.subs {
		s.Set(st) // never blocks: replaces what the reader has not read
	}
	return true
}

func (w *watchers) index() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.idx
}

// Watch returns a channel of leadership changes: the current State at once,
// then a State each time the role, term, leader or lease of this peer
// changes, including to "no leader". The channel holds one State and always
// the latest one, so a reader that falls behind skips intermediate states but
// always ends on the current one; the publisher never blocks. Index numbers
// the changes from 1 (Start publishes the first); a Watch begun before Start
// first receives a State with Index 0 and no leader. The channel is closed
// when ctx is done, when the Cluster is closed, or when the peer stops on its
// own (then Err says why). The subscription lasts until then: cancel ctx
// when done with it (a Watch on context.Background() lasts as long as the
// Cluster).
func (c *Cluster) Watch(ctx context.Context) <-chan State {
	w := &c.watch
	s := latest.New[State]()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		s.Close()
		return s.C()
	}
	st := w.last
	if w.idx == 0 {
		st = State{Identifier: c.cfg.Identifier}
	}
	s.Set(st)
	w.wg.Add(1)
	w.subs[s] = context.AfterFunc(ctx, func() {
		defer w.wg.Done()
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.subs[s]; ok {
			delete(w.subs, s)
			s.Close()
		}
	})
	return s.C()
}

// count returns how many Watch subscriptions are open.
func (w *watchers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subs)
}

// closeAll closes every watch channel, and waits for the AfterFuncs of
// their contexts that have started.
func (w *watchers) closeAll() {
	w.mu.Lock()
	w.closed = true
	for s, stop := range w.subs {
		delete(w.subs, s)
		s.Close()
		if stop() {
			w.wg.Done() // its AfterFunc will not run
		}
	}
	w.mu.Unlock()
	w.wg.Wait()
}
