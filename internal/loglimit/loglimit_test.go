package loglimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOncePerPeriod(t *testing.T) {
	var l Limiter // zero value: once a second
	t0 := time.Unix(1_700_000_000, 0)
	if !l.Allow(t0) {
		t.Fatal("the first event was not allowed")
	}
	for _, d := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond} {
		if l.Allow(t0.Add(d)) {
			t.Fatalf("an event %v after the allowed one was allowed", d)
		}
	}
	if !l.Allow(t0.Add(time.Second)) {
		t.Fatal("the first event of the next second was not allowed")
	}
	slow := Limiter{Period: 30 * time.Second}
	slow.Allow(t0)
	if slow.Allow(t0.Add(29*time.Second)) || !slow.Allow(t0.Add(30*time.Second)) {
		t.Fatal("Period is not honoured")
	}
}

// TestRacingCallersOneAllowed: of many callers at the same moment, one
// is allowed.
func TestRacingCallersOneAllowed(t *testing.T) {
	var l Limiter
	now := time.Now()
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.Allow(now) {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n != 1 {
		t.Fatalf("%d callers allowed at one moment, want 1", n)
	}
}
