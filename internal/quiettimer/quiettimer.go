package quiettimer

import (
	"sync"
	"time"
)

// Timer is a one-shot timer. C delivers a fire when the time given to the
// last Reset has passed; after Reset or Stop returns, C never delivers the
// fire of an earlier setting. Reset, Stop and Close must not be called
// concurrently with each other; C may be received from anywhere.
type Timer struct {
	c    chan time.Time
	impl mechanism

	mu    sync.Mutex
	gen   uint64 // the current setting, counted by Reset and Stop
	armed bool   // the current setting is a Reset whose fire is not delivered
}

// mechanism is what makes a Timer expire: a timerfd (Linux) or a
// time.Timer. It calls Timer.expired when it expires.
type mechanism interface {
	// set arms it to expire d (> 0) from now, for setting gen, replacing
	// any earlier setting; stop disarms it.
	set(d time.Duration, gen uint64)
	stop()
	// stale reports whether an expiry reported for setting gen belongs to
	// an earlier setting than cur. Called with Timer.mu held.
	stale(gen, cur uint64) bool
	close()
}

// New returns a disarmed Timer. Close releases it.
func New() *Timer {
	t := &Timer{c: make(chan time.Time, 1)}
	if m, ok := newKernelTimer(t.expired); ok {
		t.impl = m
	} else {
		t.impl = &runtimeTimer{expired: t.expired}
	}
	return t
}

// C returns the channel on which the timer delivers its fire: the time
// it was delivered.
func (t *Timer) C() <-chan time.Time { return t.c }

// Reset arms the timer to fire d from now (at once when d <= 0), replacing
// any earlier setting, and drops a fire not yet received.
func (t *Timer) Reset(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	t.impl.set(max(d, time.Nanosecond), t.gen)
	t.armed = true
	t.drain()
}

// Stop disarms the timer and drops a fire not yet received.
func (t *Timer) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	t.impl.stop()
	t.armed = false
	t.drain()
}

// Close stops the timer and releases what it holds (on Linux its file
// descriptor, and the goroutine that waits on it, which has ended when
// Close returns). The Timer must not be used afterwards.
func (t *Timer) Close() {
	t.Stop()
	t.impl.close()
}

// expired is called by the mechanism when setting gen expired: it delivers
// the fire unless a later Reset or a Stop came since.
func (t *Timer) expired(gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.armed || t.impl.stale(gen, t.gen) {
		return
	}
	t.armed = false
	offer(t.c)
}

// offer puts the time in c unless c is full: a fire or tick for a slow
// receiver is dropped, never waited on (the goroutine that waits on a
// timerfd delivers it, and Close waits for that goroutine).
func offer(c chan time.Time) {
	select {
	case c <- time.Now():
	default:
	}
}

func (t *Timer) drain() {
	select {
	case <-t.c:
	default:
	}
}

// runtimeTimer is the portable mechanism: a time.Timer per setting, which
// reports the setting it was armed for.
type runtimeTimer struct {
	expired func(gen uint64)
	tm      *time.Timer
}

func (r *runtimeTimer) set(d time.Duration, gen uint64) {
	r.stop()
	r.tm = time.AfterFunc(d, func() { r.expired(gen) })
}

func (r *runtimeTimer) stop() {
	if r.tm != nil {
		r.tm.Stop()
	}
}

func (r *runtimeTimer) stale(gen, cur uint64) bool { return gen != cur }

func (r *runtimeTimer) close() {}

// Ticker delivers the time every period, as a time.Ticker does, and drops
// ticks for a slow receiver. On Linux it is a periodic timerfd: the
// runtime's timers wake the process twice for each (its poller waits in
// whole milliseconds, rounded down) and the runtime's monitor thread once
// more (its deep sleep ends at the next runtime timer); a timerfd wakes
// one thread once.
type Ticker struct {
	c    <-chan time.Time
	stop func()
}

// NewTicker returns a Ticker of period d (> 0). Close stops it.
func NewTicker(d time.Duration) *Ticker {
	c := make(chan time.Time, 1)
	if stop, ok := newKernelTicker(d, func() { offer(c) }); ok {
		return &Ticker{c: c, stop: stop}
	}
	tk := time.NewTicker(d)
	return &Ticker{c: tk.C, stop: tk.Stop}
}

// C returns the channel of the ticks.
func (t *Ticker) C() <-chan time.Time { return t.c }

// Close stops the ticker and releases what it holds (on Linux its file
// descriptor, and the goroutine that waits on it, which has ended when
// Close returns).
func (t *Ticker) Close() { t.stop() }
