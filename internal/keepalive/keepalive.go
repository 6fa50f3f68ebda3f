// Package keepalive renews a lease with a TTL (a KV session) until it is
// over: the loop both the SDK's kv.Session and the Go client's
// client.Session run.
package keepalive

import (
	"context"
	"sync"
	"time"

	"github.com/qcluster/qcluster/internal/backoff"
)

// Lease is what Run keeps alive.
type Lease struct {
	// TTL is the lease's time to live; Run renews it every TTL/3.
	TTL time.Duration
	// Renew renews the lease once, within ctx.
	Renew func(ctx context.Context) error
	// Gone reports whether a Renew error says the lease is over (revoked,
	// expired): Run then returns.
	Gone func(err error) bool
	// Alive, when not nil, reports whether the lease still exists as far
	// as this process knows, and a channel closed when that may change:
	// Run returns as soon as it is false.
	Alive func() (alive bool, changed <-chan struct{})
	// Expired, when not nil, is called when no renewal succeeded for a
	// whole TTL, before Run returns.
	Expired func()
	// Failed, when not nil, is called with each failed renewal that is
	// retried.
	Failed func(err error)
}

// Run renews l every TTL/3 until ctx ends, l is over (Gone, Alive), or no
// renewal succeeded for a TTL since the start of the last one that did (or
// since granted, before the first). A failed renewal is retried with
// backoff (from TTL/24 to TTL/6, jittered), each attempt bounded by TTL/3.
func Run(ctx context.Context, granted time.Time, l Lease) {
	every := l.TTL / 3
	bo := backoff.New(every/8, every/2)
	next := time.NewTimer(every - time.Since(granted))
	defer next.Stop()
	expire := time.NewTimer(l.TTL - time.Since(granted))
	defer expire.Stop()
	for {
		var changed <-chan struct{}
		if l.Alive != nil {
			var alive bool
			if alive, changed = l.Alive(); !alive {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			if l.Expired != nil {
				l.Expired()
			}
			return
		case <-changed:
			continue
		case <-next.C:
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		err := l.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			bo.Reset()
			expire.Reset(l.TTL - time.Since(start))
			next.Reset(every - time.Since(start))
		case l.Gone(err), ctx.Err() != nil:
			return
		default:
			if l.Failed != nil {
				l.Failed(err)
			}
			next.Reset(bo.Next())
		}
	}
}

// Handle is a lease kept alive by a goroutine of its own (Start): what
// kv.Session and client.Session hold. Its methods are safe for
// concurrent use.
type Handle struct {
	lease  Lease
	done   chan struct{} // closed once the lease is over, as far as this process knows
	cancel context.CancelFunc
	ended  chan struct{} // the goroutine returned

	mu     sync.Mutex
	closed bool
}

// Start runs Run(ctx, granted, l) in a goroutine until ctx ends or Close.
func Start(ctx context.Context, granted time.Time, l Lease) *Handle {
	kctx, cancel := context.WithCancel(ctx)
	h := &Handle{lease: l, done: make(chan struct{}), cancel: cancel, ended: make(chan struct{})}
	go func() {
		defer close(h.ended)
		defer close(h.done)
		Run(kctx, granted, l)
	}()
	return h
}

// Done returns a channel closed once the lease is over (see Run).
func (h *Handle) Done() <-chan struct{} { return h.done }

// Close stops the renewals and, once they have stopped, revokes the lease.
// A lease already over (Lease.Gone) is not an error. After a nil return,
// later calls return nil; after an error, a later call revokes again.
func (h *Handle) Close(ctx context.Context, revoke func(ctx context.Context) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.cancel()
	<-h.ended
	err := revoke(ctx)
	if err != nil && h.lease.Gone(err) {
		err = nil
	}
	if err == nil {
		h.closed = true
	}
	return err
}
