// Package latest holds the latest value of something that changes, for a
// reader that wants the newest value rather than every value: leadership
// states, for example, where a reader that falls behind should skip to the
// current state, and the writer must never wait for the reader.
//
//	s := latest.New[State]()
//	s.Set(st)             // the writer: never blocks
//	for st := range s.C() // the reader: the latest value not yet read
package latest

import "sync"

// Slot holds at most one value not yet read: the latest one Set. Set never
// blocks: it replaces the value the reader has not taken yet. The reader
// receives from C, which is closed by Close. A Slot is safe for concurrent
// use.
type Slot[T any] struct {
	mu     sync.Mutex
	ch     chan T
	closed bool
}

// New returns an empty, open Slot.
func New[T any]() *Slot[T] {
	return &Slot[T]{ch: make(chan T, 1)}
}

// Set makes v the value the reader gets next, replacing one it has not
// read yet. After Close it does nothing. It reports whether v was stored.
func (s *Slot[T]) Set(v T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	select {
	case <-s.ch: // not read yet: the new value replaces it
	default:
	}
	s.ch <- v // only Set sends, under mu, after draining: never blocks
	return true
}

// C returns the channel the reader receives from: it holds at most one
// value, the latest, and is closed by Close (a value set before Close
// can still be received).
func (s *Slot[T]) C() <-chan T { return s.ch }

// Close closes C. It reports whether this call closed it (false when it
// was already closed).
func (s *Slot[T]) Close() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	close(s.ch)
	return true
}
