package latest

import (
	"context"
	"sync"
)

// Fanout hands the latest value to every subscriber, each through a Slot of
// its own: a slow reader skips values it has not read yet but never misses
// the current one, and Publish never blocks. It numbers the values it
// publishes from 1. A subscription costs no goroutine: context.AfterFunc
// ends it when its context ends. A Fanout is safe for concurrent use.
type Fanout[T any] struct {
	same  func(a, b T) bool    // nil: every value differs from the last
	stamp func(v *T, i uint64) // stores a value's number in it (nil: none)

	mu     sync.Mutex
	subs   map[*Slot[T]]func() bool // each subscription, and the stop of its AfterFunc
	last   T
	idx    uint64
	closed bool
	wg     sync.WaitGroup // one per subscription whose AfterFunc may yet run
}

// NewFanout returns a Fanout that publishes a value only when same (nil:
// always) says it differs from the last one published, and that stores
// each published value's number in it with stamp (nil: nowhere).
func NewFanout[T any](same func(a, b T) bool, stamp func(v *T, index uint64)) *Fanout[T] {
	return &Fanout[T]{same: same, stamp: stamp, subs: make(map[*Slot[T]]func() bool)}
}

// Publish records v and, unless it is the same as the last value published
// (or the Fanout is closed), numbers it and hands it to every subscriber.
// It reports whether it did.
func (f *Fanout[T]) Publish(v T) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || (f.idx > 0 && f.same != nil && f.same(f.last, v)) {
		return false
	}
	f.idx++
	if f.stamp != nil {
		f.stamp(&v, f.idx)
	}
	f.last = v
	for s := range f.subs {
		s.Set(v) // never blocks: replaces what the reader has not read
	}
	return true
}

// Index returns the number of the last value published (0: none yet).
func (f *Fanout[T]) Index() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.idx
}

// Subscribe returns a channel that holds the latest value: at once the last
// one published (initial while none is), then each one published. It is
// closed when ctx is done or the Fanout is closed (at once, empty, if it
// is).
func (f *Fanout[T]) Subscribe(ctx context.Context, initial T) <-chan T {
	s := New[T]()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		s.Close()
		return s.C()
	}
	v := f.last
	if f.idx == 0 {
		v = initial
	}
	s.Set(v)
	f.wg.Add(1)
	f.subs[s] = context.AfterFunc(ctx, func() {
		defer f.wg.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[s]; ok {
			delete(f.subs, s)
			s.Close()
		}
	})
	return s.C()
}

// Count returns how many subscriptions are open.
func (f *Fanout[T]) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Close closes every subscriber's channel (each keeps the value it has not
// read), makes Publish do nothing, and waits for the AfterFuncs of the
// subscriptions' contexts that have started.
func (f *Fanout[T]) Close() {
	f.mu.Lock()
	f.closed = true
	for s, stop := range f.subs {
		delete(f.subs, s)
		s.Close()
		if stop() {
			f.wg.Done() // its AfterFunc will not run
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
}
