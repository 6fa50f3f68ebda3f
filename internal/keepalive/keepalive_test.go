package keepalive

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

var errGone = errors.New("gone")

func isGone(err error) bool { return errors.Is(err, errGone) }

// run runs Run in a goroutine and returns a channel closed when it returns.
func run(ctx context.Context, l Lease) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, time.Now(), l)
	}()
	return done
}

// waitDone fails the test unless done closes within 5 s: Run returns
// within milliseconds of its cause (a cancel, an expiry, a lease gone).
func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("Run did not return within 5 s: %s", what)
	}
}

func TestRenewsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var renewals atomic.Int32
	enough := make(chan struct{})
	done := run(ctx, Lease{
		TTL: 90 * time.Millisecond,
		Renew: func(context.Context) error {
			if renewals.Add(1) == 5 {
				close(enough)
			}
			return nil
		},
		Gone:    isGone,
		Expired: func() { t.Error("expired although every renewal succeeded") },
	})
	select {
	case <-enough:
	case <-time.After(20 * time.Second):
		t.Fatalf("%d renewals in 20 s, want 5", renewals.Load())
	}
	cancel()
	waitDone(t, done, "after its context ended")
}

func TestStopsWhenGone(t *testing.T) {
	var renewals atomic.Int32
	done := run(t.Context(), Lease{
		TTL:   30 * time.Millisecond,
		Renew: func(context.Context) error { renewals.Add(1); return errGone },
		Gone:  isGone,
	})
	waitDone(t, done, "after the lease was gone")
	if n := renewals.Load(); n != 1 {
		t.Errorf("%d renewals, want 1 (the one that found it gone)", n)
	}
}

func TestExpiresAfterATTLOfFailures(t *testing.T) {
	var failed atomic.Int32
	expired := make(chan struct{})
	done := run(t.Context(), Lease{
		TTL:     60 * time.Millisecond,
		Renew:   func(context.Context) error { return errors.New("unreachable") },
		Gone:    isGone,
		Failed:  func(error) { failed.Add(1) },
		Expired: func() { close(expired) },
	})
	waitDone(t, done, "after a TTL without a renewal")
	select {
	case <-expired:
	default:
		t.Error("Expired was not called")
	}
	if failed.Load() == 0 {
		t.Error("Failed was never called: the failures were not retried")
	}
}

func TestStopsWhenNotAlive(t *testing.T) {
	alive := atomic.Bool{}
	alive.Store(true)
	changed := make(chan struct{})
	var renewals atomic.Int32
	done := run(t.Context(), Lease{
		TTL:   time.Hour, // no renewal falls due in this test
		Renew: func(context.Context) error { renewals.Add(1); return nil },
		Gone:  isGone,
		Alive: func() (bool, <-chan struct{}) { return alive.Load(), changed },
	})
	alive.Store(false)
	close(changed)
	waitDone(t, done, "after Alive turned false")
	if n := renewals.Load(); n != 0 {
		t.Errorf("%d renewals, want 0", n)
	}
}

func TestHandleClose(t *testing.T) {
	h := Start(t.Context(), time.Now(), Lease{
		TTL:   time.Hour,
		Renew: func(context.Context) error { return nil },
		Gone:  isGone,
	})
	revokes := 0
	fail := errors.New("unreachable")
	if err := h.Close(t.Context(), func(context.Context) error { revokes++; return fail }); !errors.Is(err, fail) {
		t.Fatalf("Close = %v, want the revoke's error", err)
	}
	waitDone(t, h.Done(), "Done after Close")
	if err := h.Close(t.Context(), func(context.Context) error { revokes++; return errGone }); err != nil {
		t.Fatalf("Close of a lease already gone = %v, want nil", err)
	}
	if err := h.Close(t.Context(), func(context.Context) error { revokes++; return nil }); err != nil || revokes != 2 {
		t.Fatalf("a closed handle's Close = %v after %d revokes, want nil after 2 (no revoke again)", err, revokes)
	}
}
