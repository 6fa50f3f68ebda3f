package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/qcluster/qcluster/api"
)

// Lock is a named lock held through one peer (POST /v1/locks/{name}): it
// is held while its request stays open, and released by Unlock, which
// closes it; or, taken WithSession, held until Unlock or the session's
// end. Get one with Client.Lock.
type Lock struct {
	name  string
	token uint64
	addr  string
	s     *sseStream
	lost  chan struct{}
	done  chan struct{} // closed when the reader ends

	// A lock in a session (WithSession): no stream.
	c       *Client
	session *Session
	stop    chan struct{} // closed by Unlock

	mu       sync.Mutex
	unlocked bool
}

// lockRetryWait is how long one request of Client.Lock waits for the lock
// when ctx has no deadline (it asks again after a 408).
const lockRetryWait = 30 * time.Second

// Lock takes the lock name and returns once it is held, or ctx ends (a
// deadline of ctx bounds the wait; without one, Lock waits as long as it
// takes). The lock stays held, through the peer that answered, until
// Unlock, or until it is lost: Lost is closed then (the peer removed or
// stopped, the connection to it broken, or no keep-alive from it for
// Options.WatchWait + Options.Timeout). Token is the fencing token.
//
// WithSession binds the lock to a session instead: no request stays open;
// the lock is held until Unlock or until the session ends (Lost closes
// when the session's Done does).
func (c *Client) Lock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: an empty lock name", ErrBadRequest)
	}
	var o lockOptions
	for _, opt := range opts {
		opt(&o)
	}
	for {
		wait := lockRetryWait
		if d, ok := ctx.Deadline(); ok {
			wait = time.Until(d)
			if wait <= 0 {
				return nil, context.DeadlineExceeded
			}
		}
		var l *Lock
		var err error
		if o.session != nil {
			l, err = c.lockInSession(ctx, name, o.session, wait)
		} else {
			l, err = c.lockOnce(ctx, name, wait)
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusRequestTimeout && ctx.Err() == nil {
			if _, ok := ctx.Deadline(); !ok {
				continue // still held by another: ask again
			}
		}
		return l, err
	}
}

func (c *Client) lockOnce(ctx context.Context, name string, wait time.Duration) (*Lock, error) {
	// The request outlives ctx: it holds the lock until Unlock. ctx only
	// bounds the wait for it.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	q := url.Values{"wait": {max(wait, time.Millisecond).Round(time.Millisecond).String()}}
	s, err := c.openStream(rctx, http.MethodPost, "/v1/locks/"+url.PathEscape(name), q, nil, true)
	if err != nil {
		stop()
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qcluster client: lock %q: %w", name, ctx.Err())
		}
		return nil, err
	}
	ev, err := s.next()
	for err == nil && ev.event == "" {
		ev, err = s.next() // the retry hint
	}
	if !stop() || err != nil || ev.event != api.LockEventAcquired {
		s.close()
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("qcluster client: lock %q: %w", name, ctx.Err())
		case err != nil:
			return nil, fmt.Errorf("qcluster client: lock %q on %s: %w", name, s.addr, err)
		}
		return nil, fmt.Errorf("qcluster client: lock %q on %s: the first event is %q, not %q", name, s.addr, ev.event, api.LockEventAcquired)
	}
	var le api.LockEvent
	if err := json.Unmarshal(ev.data, &le); err != nil {
		s.close()
		cancel()
		return nil, fmt.Errorf("qcluster client: lock %q on %s: an acquired event that is not a LockEvent: %w", name, s.addr, err)
	}
	l := &Lock{name: name, token: le.Token, addr: s.addr, s: s, lost: make(chan struct{}), done: make(chan struct{})}
	go l.watch(cancel)
	return l, nil
}

// watch reads the stream until it ends: then the lock is lost, unless
// Unlock ended it.
func (l *Lock) watch(cancel context.CancelFunc) {
	defer close(l.done)
	defer cancel()
	for {
		ev, err := l.s.next()
		if err != nil || ev.event == api.LockEventLost {
			break
		}
	}
	l.s.close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.unlocked {
		close(l.lost)
	}
}

// Name returns the lock's name.
func (l *Lock) Name() string { return l.name }

// Token returns the fencing token: the revision at which the lock was
// taken, larger for every later holder. Pass it to what the lock protects
// so that it can refuse a stale holder.
func (l *Lock) Token() uint64 { return l.token }

// Addr returns the base URL of the peer that holds the lock for the
// client.
func (l *Lock) Addr() string { return l.addr }

// Lost returns a channel closed when the lock is lost before Unlock (the
// peer said so, its connection broke, or it went silent). Whoever holds a
// lock must stop the work it guards then.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Unlock releases the lock: it closes the request that holds it, and the
// peer releases the lock as soon as it sees the connection close. It
// returns once the connection is closed, or ctx ends. It is safe to call
// more than once, and after the lock was lost. A lock taken WithSession is
// released with DELETE /v1/locks/{name}?token=.
func (l *Lock) Unlock(ctx context.Context) error {
	if l.session != nil {
		return l.unlockInSession(ctx)
	}
	l.mu.Lock()
	select {
	case <-l.lost:
	default:
		l.unlocked = true
	}
	l.mu.Unlock()
	l.s.cancel(nil) // ends the request, and so the reader
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
