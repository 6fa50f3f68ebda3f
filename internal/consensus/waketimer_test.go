package consensus

import (
	"testing"
	"time"
)

// TestWakeTimer: a later wake takes a new timer (a Reset to a later time
// leaves the runtime's timer heap waking at the old one), an unchanged
// wake leaves the timer alone, an earlier wake or one after a fire resets
// it; it fires at the wake it was last set for, never at an older one.
func TestWakeTimer(t *testing.T) {
	clock := func() time.Duration { return time.Duration(time.Now().UnixNano()) }
	var w wakeTimer
	defer w.stop()
	now := clock()
	w.set(now+30*time.Millisecond, now)
	first := w.t

	w.set(now+30*time.Millisecond, clock())
	if w.t != first {
		t.Fatal("an unchanged wake replaced the timer")
	}
	w.set(now+120*time.Millisecond, clock())
	if w.t == first {
		t.Fatal("a later wake reset the timer instead of taking a new one")
	}
	later := w.t
	select {
	case <-first.C:
		t.Fatal("the replaced timer fired")
	case <-w.c():
		if got := clock() - now; got < 120*time.Millisecond {
			t.Fatalf("fired %v after set, before the later wake (120ms)", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no fire within 10s")
	}
	w.fired()

	now = clock()
	w.set(now+time.Hour, now)
	if w.t != later {
		t.Fatal("a wake after a fire took a new timer: the fired one is out of the heap, Reset will do")
	}
	w.set(now+20*time.Millisecond, clock())
	if w.t != later {
		t.Fatal("an earlier wake took a new timer")
	}
	select {
	case <-w.c():
	case <-time.After(10 * time.Second):
		t.Fatal("the earlier wake did not fire within 10s")
	}
}
