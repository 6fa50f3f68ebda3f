package consensus

import "time"

// wakeTimer is the node loop's timer: it fires at the wake the Loop
// promised (Loop.NextWake), on the node clock.
//
// An idle follower's wake moves later with every message from its leader
// (the election deadline it would act at). time.Timer.Reset to a later
// time leaves the runtime's timer heap holding the old, earlier time until
// that time comes (the heap is fixed lazily), so the thread waiting in the
// network poller and the runtime's monitor thread, which both sleep until
// the earliest timer, wake at every stale deadline for nothing: three
// thread context switches per lease round instead of one, measured with a
// goroutine that resets a 150 ms timer on each of 20 messages a second
// (GOMAXPROCS 1: 60 against 21 a second; a new timer each time: 35). So a
// later wake takes a new timer, whose first wait takes the stopped one out
// of the heap (runtime timers.cleanHead); an unchanged wake leaves the
// timer alone; an earlier one resets it (the heap then wakes on time).
type wakeTimer struct {
	t     *time.Timer
	at    time.Duration // the node-clock time t fires at, while armed
	armed bool          // t is set and has not fired (to our knowledge)
}

// set arms the timer for at, the node clock reading now.
func (w *wakeTimer) set(at, now time.Duration) {
	switch {
	case w.t == nil:
		w.t = time.NewTimer(at - now)
	case w.armed && at == w.at:
		return
	case w.armed && at > w.at:
		w.t.Stop()
		w.t = time.NewTimer(at - now)
	default:
		// Go 1.23+ timers: Reset also drops a fire not yet received.
		w.t.Reset(at - now)
	}
	w.at, w.armed = at, true
}

// c is the channel the timer fires on.
func (w *wakeTimer) c() <-chan time.Time { return w.t.C }

// fired records that the timer's fire was received: the next set arms it
// again whatever its time.
func (w *wakeTimer) fired() { w.armed = false }

// stop stops the timer.
func (w *wakeTimer) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}
