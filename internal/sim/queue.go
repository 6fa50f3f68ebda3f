package sim

import "time"

type evKind uint8

const (
	evTimer   evKind = iota // a peer's tick timer fires
	evDeliver               // a message arrives at a peer
	evWake                  // a peer's stalled fsync completes
	evFunc                  // a scheduled action (faults, heals, restarts, proposals)
)

// event is one entry of the queue. Peer-scoped events carry the peer's
// incarnation (or timer generation) so that a crash invalidates them.
type event struct {
	at   time.Duration
	seq  uint64
	kind evKind
	peer int32
	from int32
	gen  uint64
	data []byte
	fn   func()
}

// eventQueue is a min-heap ordered by (at, seq): ties in virtual time run in
// the order they were scheduled.
type eventQueue []event

func (q eventQueue) less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}

func (q *eventQueue) push(e event) {
	*q = append(*q, e)
	h := *q
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = event{}
	h = h[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(l, m) {
			m = l
		}
		if r < n && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*q = h
	return top
}
