package backoff

import (
	"context"
	"testing"
	"time"
)

func TestGrowsWithJitterUpToTheMaximum(t *testing.T) {
	const lo, hi = 200 * time.Millisecond, 5 * time.Second
	b := New(lo, hi)
	nominal := lo
	for i := range 12 {
		d := b.Next()
		low := time.Duration(float64(nominal) * (1 - Jitter))
		high := min(time.Duration(float64(nominal)*(1+Jitter)), hi)
		if d < low || d > high {
			t.Fatalf("wait %d: %v, want within [%v, %v]", i, d, low, high)
		}
		nominal = min(2*nominal, hi)
	}
	if b.Attempts() != 12 {
		t.Errorf("attempts %d, want 12", b.Attempts())
	}
	b.Reset()
	if d := b.Next(); d > time.Duration(float64(lo)*(1+Jitter)) {
		t.Errorf("after Reset: %v", d)
	}
}

func TestJitterSpreadsWaits(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[New(time.Second, time.Minute).Next()] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 first waits took only %d values: no jitter", len(seen))
	}
}

func TestBadBounds(t *testing.T) {
	b := New(0, -1)
	for range 5 {
		if d := b.Next(); d <= 0 || d > time.Nanosecond {
			t.Fatalf("wait %v", d)
		}
	}
	b = New(time.Second, time.Millisecond) // hi below lo: hi = lo
	if d := b.Next(); d > time.Second {
		t.Errorf("wait %v above the raised maximum", d)
	}
}

func TestWaitEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(time.Hour, time.Hour).Wait(ctx); err != context.Canceled {
		t.Errorf("Wait: %v", err)
	}
	if err := New(time.Millisecond, time.Millisecond).Wait(context.Background()); err != nil {
		t.Errorf("Wait: %v", err)
	}
}
