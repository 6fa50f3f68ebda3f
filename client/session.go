package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/keepalive"
)

// ErrSessionNotFound: the session does not exist: it expired, was revoked,
// or its member left (404 "session_not_found").
var ErrSessionNotFound error = &sentinel{"qcluster client: session not found", api.ErrSessionNotFound}

func sessionPath(id uint64) string { return "/v1/sessions/" + strconv.FormatUint(id, 10) }

// CreateSession creates a session with the given TTL (POST /v1/sessions),
// owned by the member of the peer that answers. Nothing renews it: call
// RenewSession within every TTL, or use NewSession, which does.
func (kv *KV) CreateSession(ctx context.Context, ttl time.Duration) (api.Session, error) {
	body, err := json.Marshal(api.SessionRequest{TTL: ttl.String()})
	if err != nil {
		return api.Session{}, err
	}
	var s api.Session
	_, err = kv.c.call(ctx, request{method: http.MethodPost, path: "/v1/sessions", body: body}, &s)
	return s, err
}

// RenewSession renews session id (PUT /v1/sessions/{id}/renew);
// ErrSessionNotFound when it is over.
func (kv *KV) RenewSession(ctx context.Context, id uint64) (api.Session, error) {
	var s api.Session
	_, err := kv.c.call(ctx, request{method: http.MethodPut, path: sessionPath(id) + "/renew"}, &s)
	return s, err
}

// RevokeSession revokes session id (DELETE /v1/sessions/{id}), deleting
// the keys and locks bound to it; ErrSessionNotFound when it is over.
func (kv *KV) RevokeSession(ctx context.Context, id uint64) (api.Session, error) {
	var s api.Session
	_, err := kv.c.call(ctx, request{method: http.MethodDelete, path: sessionPath(id)}, &s)
	return s, err
}

// Sessions lists the sessions (GET /v1/sessions); Stale reads the
// answering peer's copy.
func (kv *KV) Sessions(ctx context.Context, opts ...ReadOption) (api.SessionList, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	q := url.Values{}
	if o.stale {
		q.Set("stale", "")
	}
	var list api.SessionList
	_, err := kv.c.call(ctx, request{method: http.MethodGet, path: "/v1/sessions", query: func(string) url.Values { return q }}, &list)
	return list, err
}

// Session is a session that the client keeps alive (KV.NewSession): a
// goroutine renews it every TTL/3, retrying with backoff when a renewal
// fails. Its methods are safe for concurrent use.
type Session struct {
	kv  *KV
	id  uint64
	ttl time.Duration
	h   *keepalive.Handle // the keep-alive goroutine
}

// NewSession creates a session with the given TTL and keeps it alive until
// Close, or until it is over: revoked, expired, or no renewal succeeded
// for a whole TTL (the peers unreachable); Done is closed then. Bind keys
// to it with InSession, locks with WithSession.
func (kv *KV) NewSession(ctx context.Context, ttl time.Duration) (*Session, error) {
	start := time.Now() // the TTL runs from no earlier than this
	info, err := kv.CreateSession(ctx, ttl)
	if err != nil {
		return nil, err
	}
	d, err := time.ParseDuration(info.TTL)
	if err != nil || d <= 0 {
		d = ttl
	}
	s := &Session{kv: kv, id: info.ID, ttl: d}
	s.h = keepalive.Start(context.Background(), start, keepalive.Lease{
		TTL: d,
		Renew: func(ctx context.Context) error {
			_, err := kv.RenewSession(ctx, s.id)
			return err
		},
		Gone: func(err error) bool { return errors.Is(err, ErrSessionNotFound) },
	})
	return s, nil
}

// ID returns the session's ID.
func (s *Session) ID() uint64 { return s.id }

// TTL returns the session's TTL.
func (s *Session) TTL() time.Duration { return s.ttl }

// Done returns a channel closed once the session is over (Close, revoked,
// expired, or no renewal succeeded for a TTL).
func (s *Session) Done() <-chan struct{} { return s.h.Done() }

// Close stops renewing the session and revokes it, deleting its keys and
// locks. A session already over is not an error. Later calls return nil.
func (s *Session) Close(ctx context.Context) error {
	return s.h.Close(ctx, func(ctx context.Context) error {
		_, err := s.kv.RevokeSession(ctx, s.id)
		return err
	})
}

// InSession binds a put key to session s: the key is deleted when the
// session ends (PUT ?session=).
func InSession(s *Session) WriteOption { return InSessionID(s.ID()) }

// InSessionID is InSession for a session known by its ID.
func InSessionID(id uint64) WriteOption { return func(o *writeOptions) { o.session = id } }

// LockOption changes Client.Lock.
type LockOption func(*lockOptions)

type lockOptions struct{ session *Session }

// WithSession binds a lock to session s (POST /v1/locks/{name}?session=):
// it is held, with no request open, until Unlock or the end of the
// session; Lost closes when the session is over.
func WithSession(s *Session) LockOption { return func(o *lockOptions) { o.session = s } }

// lockInSession takes the lock bound to s, waiting up to wait.
func (c *Client) lockInSession(ctx context.Context, name string, s *Session, wait time.Duration) (*Lock, error) {
	q := url.Values{
		"wait":    {max(wait, time.Millisecond).Round(time.Millisecond).String()},
		"session": {strconv.FormatUint(s.ID(), 10)},
	}
	rctx, cancel := context.WithTimeout(ctx, wait+c.opts.Timeout)
	defer cancel()
	var le api.LockEvent
	m, err := c.call(rctx, request{method: http.MethodPost, path: "/v1/locks/" + url.PathEscape(name), query: func(string) url.Values { return q }}, &le)
	if err != nil {
		return nil, err
	}
	if le.Token == 0 || le.Session != s.ID() {
		return nil, fmt.Errorf("qcluster client: lock %q on %s: the answer names token %d in session %d", name, m.addr, le.Token, le.Session)
	}
	l := &Lock{c: c, name: name, token: le.Token, addr: m.addr, session: s, lost: make(chan struct{}), done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(l.done)
		select {
		case <-s.Done():
		case <-l.stop:
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if !l.unlocked {
			close(l.lost)
		}
	}()
	return l, nil
}

// unlockInSession releases a lock taken in a session: DELETE
// /v1/locks/{name}?token=. A lock no longer held is not an error.
func (l *Lock) unlockInSession(ctx context.Context) error {
	l.mu.Lock()
	select {
	case <-l.lost:
		l.mu.Unlock()
		return nil
	default:
	}
	if l.unlocked {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	q := url.Values{"token": {strconv.FormatUint(l.token, 10)}}
	_, err := l.c.call(ctx, request{method: http.MethodDelete, path: "/v1/locks/" + url.PathEscape(l.name), query: func(string) url.Values { return q }}, nil)
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return err
	}
	l.mu.Lock()
	if !l.unlocked {
		l.unlocked = true
		close(l.stop)
	}
	l.mu.Unlock()
	<-l.done
	return nil
}
