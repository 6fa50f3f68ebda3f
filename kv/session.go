package kv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/internal/keepalive"
)

// Sessions, in the manner of etcd's leases and Consul's sessions: a
// session has a TTL; keys (Put with InSession) and locks (Lock with
// WithSession) bound to it are deleted when it ends: revoked (Close,
// KV.RevokeSession), expired (no renewal for its TTL), or its member left
// the cluster or was removed. Grants, keep-alives and revocations go
// through the Raft log, like every write; expiry is the leader's, judged
// by its own clock, restarted when it gains leadership, so a session
// never expires because of a fail-over.

// GrantSession creates a session with the given TTL, owned by this
// member, and returns it. Nothing renews it: call RenewSession within
// every TTL, or it expires. NewSession grants one and keeps it alive for
// you. Errors: ErrInvalidTTL, qcluster.ErrMasterless, and those of a
// write.
func (s *KV) GrantSession(ctx context.Context, ttl time.Duration) (SessionInfo, error) {
	return s.b.GrantSession(ctx, ttl)
}

// RenewSession renews session id (a keep-alive): it lives another TTL
// from when the leader applies the renewal. ErrSessionNotFound when it
// no longer exists. Any member may renew any session.
func (s *KV) RenewSession(ctx context.Context, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%w: 0", ErrSessionNotFound)
	}
	return s.b.RenewSession(ctx, id)
}

// RevokeSession ends session id at once, deleting the keys and locks
// bound to it. ErrSessionNotFound when it no longer exists.
func (s *KV) RevokeSession(ctx context.Context, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%w: 0", ErrSessionNotFound)
	}
	return s.b.RevokeSession(ctx, id)
}

// Sessions returns the sessions, by ID. It is linearizable unless Stale
// is given.
func (s *KV) Sessions(ctx context.Context, opts ...ReadOption) ([]SessionInfo, error) {
	return s.b.Sessions(ctx, stale(opts))
}

// Session is a session that this process keeps alive (KV.NewSession): a
// goroutine renews it every TTL/3, retrying with backoff when a renewal
// fails. Its methods are safe for concurrent use.
type Session struct {
	kv  *KV
	id  uint64
	ttl time.Duration
	h   *keepalive.Handle // the keep-alive goroutine
}

// NewSession grants a session with the given TTL, owned by this member,
// and keeps it alive until Close, until it is revoked or expires (the
// renewals failed for a whole TTL: the leader was unreachable, say), or
// until the member leaves or closes; Done is closed then. Bind keys to it
// with InSession, locks with WithSession: they are deleted when it ends.
//
// ttl must be from qcluster.Cluster.MinSessionTTL (one second, or two
// election timeouts when that is longer) to MaxSessionTTL
// (ErrInvalidTTL).
func (s *KV) NewSession(ctx context.Context, ttl time.Duration) (*Session, error) {
	start := time.Now() // the TTL runs from no earlier than this
	info, err := s.GrantSession(ctx, ttl)
	if err != nil {
		return nil, err
	}
	se := &Session{kv: s, id: info.ID, ttl: info.TTL}
	se.h = keepalive.Start(s.b.Context(), start, se.lease())
	return se, nil
}

// ID returns the session's ID.
func (s *Session) ID() uint64 { return s.id }

// TTL returns the session's TTL.
func (s *Session) TTL() time.Duration { return s.ttl }

// Done returns a channel closed once the session is over: revoked (by
// Close or anyone), expired, its member gone, this peer closed, or no
// renewal succeeded for a whole TTL (the session has then expired, or is
// about to). Stop acting on what the session protects when it closes.
func (s *Session) Done() <-chan struct{} { return s.h.Done() }

// Close stops renewing the session and revokes it, deleting the keys and
// locks bound to it. It returns nil when the session was already over
// (ErrSessionNotFound is not an error here); ErrOutcomeUnknown and the
// like when ctx ended first (the session expires after its TTL anyway).
// Later calls return nil.
func (s *Session) Close(ctx context.Context) error {
	return s.h.Close(ctx, func(ctx context.Context) error { return s.kv.RevokeSession(ctx, s.id) })
}

// lease is what keeps the session alive: renewed every TTL/3 until it is
// gone from this peer's store, or no renewal succeeded for a TTL since
// the start of the last one that did (or since granted, before the
// first).
func (s *Session) lease() keepalive.Lease {
	return keepalive.Lease{
		TTL:   s.ttl,
		Renew: func(ctx context.Context) error { return s.kv.RenewSession(ctx, s.id) },
		Gone:  func(err error) bool { return errors.Is(err, ErrSessionNotFound) },
		Alive: func() (bool, <-chan struct{}) { return s.kv.b.SessionAlive(s.id) }, // revoked, expired or its owner removed
		Expired: func() {
			s.kv.log.Warn("session: no renewal succeeded for its TTL; it is over", "session", s.id, "ttl", s.ttl)
		},
		Failed: func(err error) { s.kv.log.Debug("session: renewal failed; retrying", "session", s.id, "err", err) },
	}
}
