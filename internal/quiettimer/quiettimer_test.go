package quiettimer

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fake is a mechanism the test expires by hand.
type fake struct {
	sets, stops int
	d           time.Duration
	gen         uint64
	staleKernel bool // stale's answer when reported gen is 0 (as a timerfd)
	closed      bool
}

func (f *fake) set(d time.Duration, gen uint64) { f.sets++; f.d, f.gen = d, gen }
func (f *fake) stop()                           { f.stops++ }
func (f *fake) stale(gen, cur uint64) bool {
	if gen == 0 {
		return f.staleKernel
	}
	return gen != cur
}
func (f *fake) close() { f.closed = true }

func withFake() (*Timer, *fake) {
	f := &fake{}
	return &Timer{c: make(chan time.Time, 1), impl: f}, f
}

func fired(t *Timer) bool {
	select {
	case <-t.C():
		return true
	default:
		return false
	}
}

func TestDeliversTheCurrentSettingOnce(t *testing.T) {
	tm, f := withFake()
	tm.Reset(5 * time.Millisecond)
	if f.sets != 1 || f.d != 5*time.Millisecond {
		t.Fatalf("set %d times, last %v; want once, 5ms", f.sets, f.d)
	}
	tm.expired(f.gen)
	if !fired(tm) {
		t.Fatal("the current setting's expiry was not delivered")
	}
	tm.expired(f.gen)
	if fired(tm) {
		t.Fatal("one setting fired twice")
	}
}

func TestNonPositiveDurationFiresAtOnce(t *testing.T) {
	tm, f := withFake()
	tm.Reset(-time.Second)
	if f.d != time.Nanosecond {
		t.Fatalf("Reset(-1s) armed %v; want 1ns (a zero value would disarm a timerfd)", f.d)
	}
}

func TestEarlierSettingIsNotDelivered(t *testing.T) {
	tm, f := withFake()
	tm.Reset(time.Millisecond)
	old := f.gen
	tm.Reset(time.Hour)
	tm.expired(old) // the old setting's expiry, reported late
	if fired(tm) {
		t.Fatal("the expiry of a replaced setting was delivered")
	}
	f.staleKernel = true // a timerfd armed again since the expiry it read
	tm.expired(0)
	if fired(tm) {
		t.Fatal("a timerfd expiry read before the last Reset was delivered")
	}
	f.staleKernel = false
	tm.expired(0)
	if !fired(tm) {
		t.Fatal("the current setting's expiry was not delivered")
	}
}

func TestStopAndResetDropAPendingFire(t *testing.T) {
	tm, f := withFake()
	tm.Reset(time.Millisecond)
	tm.expired(f.gen)
	tm.Reset(time.Hour)
	if fired(tm) {
		t.Fatal("Reset left the earlier setting's fire in C")
	}
	tm.expired(f.gen)
	tm.Stop()
	if fired(tm) {
		t.Fatal("Stop left a fire in C")
	}
	tm.Reset(time.Hour)
	tm.Stop()
	tm.expired(0) // read from a timerfd that expired just before Stop disarmed it
	if fired(tm) {
		t.Fatal("an expiry after Stop was delivered")
	}
	tm.Close()
	if !f.closed || f.stops != 3 {
		t.Fatalf("Close: closed %v after %d stops; want closed, stopped again", f.closed, f.stops)
	}
}

// both runs fn on each mechanism this system has.
func both(t *testing.T, fn func(t *testing.T, tm *Timer)) {
	t.Run("runtime", func(t *testing.T) {
		tm := &Timer{c: make(chan time.Time, 1)}
		tm.impl = &runtimeTimer{expired: tm.expired}
		defer tm.Close()
		fn(t, tm)
	})
	t.Run("kernel", func(t *testing.T) {
		tm, _ := withKernel(t)
		defer tm.Close()
		fn(t, tm)
	})
}

// withKernel returns a Timer on a timerfd, and the timerfd; it skips t
// where there is none.
func withKernel(t *testing.T) (*Timer, mechanism) {
	tm := &Timer{c: make(chan time.Time, 1)}
	m, ok := newKernelTimer(tm.expired)
	if !ok {
		t.Skip("no timerfd on this system")
	}
	tm.impl = m
	return tm, m
}

func TestFiresNotBeforeItsTime(t *testing.T) {
	both(t, func(t *testing.T, tm *Timer) {
		for _, d := range []time.Duration{0, time.Millisecond, 20 * time.Millisecond} {
			start := time.Now()
			tm.Reset(d)
			select {
			case <-tm.C():
				if got := time.Since(start); got < d {
					t.Fatalf("Reset(%v) fired after %v", d, got)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Reset(%v) did not fire in 10s", d)
			}
		}
	})
}

func TestResetLaterMovesTheFire(t *testing.T) {
	both(t, func(t *testing.T, tm *Timer) {
		tm.Reset(time.Millisecond)
		start := time.Now()
		tm.Reset(100 * time.Millisecond)
		select {
		case <-tm.C():
			if got := time.Since(start); got < 100*time.Millisecond {
				t.Fatalf("fired %v after Reset(100ms): the replaced 1ms setting fired", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no fire in 10s")
		}
	})
}

// TestNoFireOfAnEarlierSetting resets the timer many times to deadlines
// that expire while it is reset again: every fire received must come no
// sooner than the last Reset's deadline (the races between an expiry being
// read and a Reset are what it exercises).
func TestNoFireOfAnEarlierSetting(t *testing.T) {
	both(t, func(t *testing.T, tm *Timer) {
		r := rand.New(rand.NewPCG(1, 2))
		n := 0
		for range 3000 {
			d := time.Duration(r.IntN(100)) * time.Microsecond
			at := time.Now()
			tm.Reset(d)
			due := at.Add(d)
			wait := r.IntN(3) == 0
			var got bool
			if wait {
				select {
				case <-tm.C():
					got = true
				case <-time.After(10 * time.Second):
					t.Fatalf("Reset(%v) did not fire in 10s", d)
				}
			} else {
				got = fired(tm)
			}
			if got {
				n++
				if now := time.Now(); now.Before(due) {
					t.Fatalf("a fire %v before the last Reset's deadline", due.Sub(now))
				}
			}
		}
		if n == 0 {
			t.Fatal("no fire at all")
		}
	})
}

func TestKernelStale(t *testing.T) {
	tm, m := withKernel(t)
	defer tm.Close()
	tm.Reset(time.Hour)
	if !m.stale(0, 0) {
		t.Fatal("a timerfd armed for an hour is not reported armed again")
	}
	tm.Stop()
	if m.stale(0, 0) {
		t.Fatal("a disarmed timerfd is reported armed")
	}
}

func TestNewUsesTheKernelTimerOnLinux(t *testing.T) {
	tm := New()
	defer tm.Close()
	if _, ok := tm.impl.(*runtimeTimer); ok && kernelTimers {
		t.Fatal("New fell back to a runtime timer where a timerfd is available")
	}
}

func TestTickerTicksEveryPeriod(t *testing.T) {
	const d = 5 * time.Millisecond
	tk := NewTicker(d)
	defer tk.Close()
	start := time.Now()
	for k := 1; k <= 4; k++ {
		select {
		case <-tk.C():
			if got := time.Since(start); got < time.Duration(k)*d {
				t.Fatalf("tick %d came %v after the start; want no sooner than %v", k, got, time.Duration(k)*d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tick %d did not come in 10s", k)
		}
	}
}

func TestOfferNeverWaits(t *testing.T) {
	c := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		offer(c)
		offer(c) // full: dropped
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		<-c // let a blocked offer end
		t.Fatal("offer waited on a full channel")
	}
	if len(c) != 1 {
		t.Fatalf("%d times in the channel; want 1", len(c))
	}
}

// TestTickerCloseWithUnreadTicks leaves the ticks unread: the waiting
// goroutine must drop them, not block on the channel, or Close (which
// waits for it) would never return.
func TestTickerCloseWithUnreadTicks(t *testing.T) {
	tk := NewTicker(time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for len(tk.C()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no tick in 10s")
		}
		runtime.Gosched()
	}
	// More periods pass with the channel full.
	for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
		runtime.Gosched()
	}
	closed := make(chan struct{})
	go func() {
		tk.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return in 10s: the ticker blocked on its full channel")
	}
}
