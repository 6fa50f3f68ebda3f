// Package fifo is a bounded first-in first-out queue whose memory follows
// its length, for the message queues of an idle peer.
//
// A buffered channel of capacity n allocates n slots at once, and its ring
// writes every slot in turn: after n messages all of its pages are resident,
// however few were ever waiting together. A raft message is 160 bytes, so a
// 4096-message channel is 640 KiB of resident memory per queue (one inbox
// per peer, one outbound queue per other member) that an idle peer never
// needs. A Queue holds the same bound but grows its ring only as far as
// the messages waiting at once need, and gives a large ring back when it
// empties.
//
// The consumer waits on Ready, then Pops until Pop reports empty. One
// that stops with messages left calls Notify, so that Ready fires again.
package fifo

import "sync"

// minRing is the ring a Queue allocates first and keeps while empty: the
// few messages of an idle peer's rounds fit without a new allocation.
const minRing = 16

// Queue is a bounded FIFO, safe for one or more producers and one consumer.
type Queue[T any] struct {
	mu    sync.Mutex
	ring  []T // len(ring) is the current capacity, a power of two
	head  int // index of the oldest item
	n     int // items queued
	limit int
	ready chan struct{} // capacity 1: the queue became non-empty
}

// New returns an empty Queue that holds at most limit items (at least 1).
func New[T any](limit int) *Queue[T] {
	return &Queue[T]{limit: max(limit, 1), ready: make(chan struct{}, 1)}
}

// Limit is the most items the Queue holds.
func (q *Queue[T]) Limit() int { return q.limit }

// Len is the number of items queued.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Ready receives a value after the queue went from empty to non-empty (or
// after Notify). It may also fire when a Pop has already taken the items
// since: the consumer must accept an empty Pop after it.
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Push appends v unless the queue holds Limit items; it reports whether v
// was queued. It never blocks.
func (q *Queue[T]) Push(v T) bool {
	q.mu.Lock()
	if q.n >= q.limit {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = v
	q.n++
	wake := q.n == 1
	q.mu.Unlock()
	if wake {
		q.signal()
	}
	return true
}

// grow doubles the ring (the first one is minRing), keeping the order.
func (q *Queue[T]) grow() {
	ring := make([]T, max(2*len(q.ring), minRing))
	for i := range q.n {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}

// Pop removes and returns the oldest item, or reports false when the queue
// is empty. The slot it leaves is cleared (the item's memory is not kept
// alive), and a ring grown past minRing is dropped when the queue empties.
func (q *Queue[T]) Pop() (T, bool) {
	var zero T
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return zero, false
	}
	v := q.ring[q.head]
	q.ring[q.head] = zero
	q.head = (q.head + 1) & (len(q.ring) - 1)
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.ring) > minRing {
			// A burst is over: give its memory back.
			q.ring = nil
		}
	}
	return v, true
}

// Notify makes Ready fire if the queue is not empty: a consumer that
// stopped popping with items left calls it.
func (q *Queue[T]) Notify() {
	if q.Len() > 0 {
		q.signal()
	}
}

func (q *Queue[T]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
