package qcluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kv"
)

// Sessions, in the manner of etcd's leases and Consul's sessions: a
// session has a TTL; keys (Put with InSession) and locks (Lock with
// WithSession) bound to it are deleted when it ends: revoked (Close,
// KV.RevokeSession), expired (no renewal for its TTL), or its member left
// the cluster or was removed.
//
// Grants, keep-alives and revocations go through the Raft log, like every
// write (one entry per session per TTL/3: a handful per second at most at
// the scale QCluster is for). Keeping them in the log keeps the state
// machine deterministic (it holds no clock) and lets any peer renew a
// session, a follower as well as the leader, with the same guarantees as
// a write. Expiry is the leader's: it notes, with its own clock, when it
// sees each session renewed (every peer notes it, so a new leader starts
// from what it saw as a follower) and, on gaining leadership, restarts
// every session's clock from now, as etcd does when it promotes a lessor:
// a session never expires because of a fail-over. When a session's TTL
// passed with no renewal seen, the leader proposes its revocation, fenced
// to its term and conditioned on the renewal it judged by (a keep-alive
// already in the log wins).

// Errors of sessions. They are wrapped with %w: test with errors.Is.
var (
	// ErrSessionNotFound: the session does not exist: it expired, was
	// revoked, or its member left the cluster (or it never existed).
	ErrSessionNotFound = errors.New("qcluster: session not found")
	// ErrInvalidTTL: a session TTL below MinSessionTTL (for this
	// cluster's election timeout: see Cluster.MinSessionTTL) or above
	// MaxSessionTTL.
	ErrInvalidTTL = errors.New("qcluster: invalid session TTL")
)

// Bounds of a session's TTL. The least TTL is MinSessionTTL or two
// election timeouts, whichever is longer (Cluster.MinSessionTTL): a
// session must outlive a fail-over's election.
const (
	MinSessionTTL = time.Second
	MaxSessionTTL = kv.MaxSessionTTL
)

// MinSessionTTL returns the shortest session TTL this cluster grants:
// MinSessionTTL or two election timeouts, whichever is longer.
func (c *Cluster) MinSessionTTL() time.Duration {
	return max(MinSessionTTL, 2*time.Duration(c.cfg.ElectionTimeout))
}

// SessionInfo describes a session as the store holds it.
type SessionInfo struct {
	// ID identifies the session (the log index that granted it).
	ID uint64
	// TTL is how long the session lives without a renewal.
	TTL time.Duration
	// Owner is the identifier of the member that granted it: the session
	// ends when that member leaves or is removed.
	Owner string
}

// checkTTL refuses a TTL out of bounds and rounds it up to whole
// milliseconds.
func (c *Cluster) checkTTL(ttl time.Duration) (time.Duration, error) {
	if lo := c.MinSessionTTL(); ttl < lo || ttl > MaxSessionTTL {
		return 0, fmt.Errorf("%w: %v (from %v to %v)", ErrInvalidTTL, ttl, lo, MaxSessionTTL)
	}
	return ttl.Round(time.Millisecond), nil
}

// sessionWrite proposes a session op and maps its result.
func (c *Cluster) sessionWrite(ctx context.Context, op kv.Op) (kv.Result, error) {
	res, err := c.kvPropose(ctx, op, nil)
	if err != nil {
		return res, err
	}
	if res.Err != nil {
		return res, sessionError(res.Err, op.Session)
	}
	return res, nil
}

// sessionError maps the store's session errors.
func sessionError(err error, id uint64) error {
	if errors.Is(err, kv.ErrSessionNotFound) {
		return fmt.Errorf("%w: %d", ErrSessionNotFound, id)
	}
	return kvError(err)
}

// GrantSession creates a session with the given TTL, owned by this
// member, and returns it. Nothing renews it: call RenewSession within
// every TTL, or it expires. NewSession grants one and keeps it alive for
// you. Errors: ErrInvalidTTL, ErrMasterless, and those of a write.
func (s *KV) GrantSession(ctx context.Context, ttl time.Duration) (SessionInfo, error) {
	c := s.c
	if err := c.kvReady(); err != nil {
		return SessionInfo{}, err
	}
	ttl, err := c.checkTTL(ttl)
	if err != nil {
		return SessionInfo{}, err
	}
	res, err := c.sessionWrite(ctx, kv.Op{Type: kv.OpGrant, Owner: c.selfID, TTL: ttl})
	if err != nil {
		return SessionInfo{}, err
	}
	return SessionInfo{ID: res.Index, TTL: ttl, Owner: c.cfg.Identifier}, nil
}

// RenewSession renews session id (a keep-alive): it lives another TTL
// from when the leader applies the renewal. ErrSessionNotFound when it
// no longer exists. Any member may renew any session.
func (s *KV) RenewSession(ctx context.Context, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%w: 0", ErrSessionNotFound)
	}
	_, err := s.c.sessionWrite(ctx, kv.Op{Type: kv.OpKeepAlive, Session: id})
	return err
}

// RevokeSession ends session id at once, deleting the keys and locks
// bound to it. ErrSessionNotFound when it no longer exists.
func (s *KV) RevokeSession(ctx context.Context, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%w: 0", ErrSessionNotFound)
	}
	_, err := s.c.sessionWrite(ctx, kv.Op{Type: kv.OpRevoke, Session: id})
	return err
}

// Sessions returns the sessions, by ID. It is linearizable unless Stale
// is given.
func (s *KV) Sessions(ctx context.Context, opts ...ReadOption) ([]SessionInfo, error) {
	if err := s.c.kvReady(); err != nil {
		return nil, err
	}
	if err := s.read(ctx, opts); err != nil {
		return nil, err
	}
	ss := s.c.kv.store.Sessions()
	out := make([]SessionInfo, len(ss))
	for i, se := range ss {
		out[i] = SessionInfo{ID: se.ID, TTL: se.TTL, Owner: s.c.ownerName(se.Owner)}
	}
	return out, nil
}

// Session is a session that this process keeps alive (KV.NewSession): a
// goroutine renews it every TTL/3, retrying with backoff when a renewal
// fails. Its methods are safe for concurrent use.
type Session struct {
	c   *Cluster
	id  uint64
	ttl time.Duration

	done   chan struct{} // closed once the session is over (as far as this process knows)
	cancel context.CancelFunc
	ended  chan struct{} // the keep-alive goroutine returned

	mu     sync.Mutex
	closed bool
}

// NewSession grants a session with the given TTL, owned by this member,
// and keeps it alive until Close, until it is revoked or expires (the
// renewals failed for a whole TTL: the leader was unreachable, say), or
// until the member leaves or closes; Done is closed then. Bind keys to it
// with InSession, locks with WithSession: they are deleted when it ends.
//
// ttl must be from Cluster.MinSessionTTL (one second, or two election
// timeouts when that is longer) to MaxSessionTTL (ErrInvalidTTL).
func (s *KV) NewSession(ctx context.Context, ttl time.Duration) (*Session, error) {
	start := time.Now() // the TTL runs from no earlier than this
	info, err := s.GrantSession(ctx, ttl)
	if err != nil {
		return nil, err
	}
	c := s.c
	r := c.running()
	kctx, cancel := context.WithCancel(r.ctx)
	se := &Session{c: c, id: info.ID, ttl: info.TTL, done: make(chan struct{}), cancel: cancel, ended: make(chan struct{})}
	go se.keepAlive(kctx, start)
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
func (s *Session) Done() <-chan struct{} { return s.done }

// Close stops renewing the session and revokes it, deleting the keys and
// locks bound to it. It returns nil when the session was already over
// (ErrSessionNotFound is not an error here); ErrOutcomeUnknown and the
// like when ctx ended first (the session expires after its TTL anyway).
// Later calls return nil.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.cancel()
	<-s.ended
	err := s.c.KV().RevokeSession(ctx, s.id)
	if errors.Is(err, ErrSessionNotFound) {
		err = nil
	}
	if err == nil {
		s.closed = true
	}
	return err
}

// keepAlive renews the session every TTL/3 until ctx ends, the session
// is gone from this peer's store, or no renewal succeeded for a TTL
// since the start of the last one that did (or since granted, before
// the first). It closes done when it returns.
func (s *Session) keepAlive(ctx context.Context, granted time.Time) {
	defer close(s.ended)
	defer close(s.done)
	store := s.c.kv.store
	every := s.ttl / 3
	bo := backoff.New(every/8, every/2)
	next := time.NewTimer(every - time.Since(granted))
	defer next.Stop()
	expire := time.NewTimer(s.ttl - time.Since(granted))
	defer expire.Stop()
	for {
		changed := store.SessionsChanged()
		if _, ok := store.Session(s.id); !ok {
			return // revoked, expired or its owner removed
		}
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			s.c.log.Warn("session: no renewal succeeded for its TTL; it is over", "session", s.id, "ttl", s.ttl)
			return
		case <-changed:
			continue
		case <-next.C:
		}
		start := time.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		err := s.c.KV().RenewSession(rctx, s.id)
		cancel()
		switch {
		case err == nil:
			bo.Reset()
			expire.Reset(s.ttl - time.Since(start))
			next.Reset(every - time.Since(start))
		case errors.Is(err, ErrSessionNotFound):
			return
		case ctx.Err() != nil:
			return
		default:
			s.c.log.Debug("session: renewal failed; retrying", "session", s.id, "err", err)
			next.Reset(bo.Next())
		}
	}
}

// InSession binds the key a Put writes to session s: the key is deleted
// when the session ends (revoked, expired, or its member gone). Its Owner
// is the session's member. ErrSessionNotFound when the session is over.
func InSession(s *Session) WriteOption { return InSessionID(s.ID()) }

// InSessionID is InSession for a session known by its ID (GrantSession,
// or another process's).
func InSessionID(id uint64) WriteOption { return func(o *writeOptions) { o.session = id } }

// LockOption adjusts Cluster.Lock.
type LockOption func(*lockOptions)

type lockOptions struct{ session uint64 }

// WithSession binds a lock to session s instead of to this member: the
// lock is released when the session ends (revoked, expired, its member
// gone), and not otherwise until Unlock. Lost closes then.
func WithSession(s *Session) LockOption { return WithSessionID(s.ID()) }

// WithSessionID is WithSession for a session known by its ID.
func WithSessionID(id uint64) LockOption { return func(o *lockOptions) { o.session = id } }

// sessionClocks is the expiry bookkeeping of a peer: when it last saw
// each session renewed, by its own monotonic clock (see the top of this
// file).
type sessionClocks struct {
	mu   sync.Mutex
	term uint64 // the term this peer leads in, reset at; 0: not leading
	seen map[uint64]*sessionSeen
}

type sessionSeen struct {
	renewed  uint64    // Session.Renewed when last seen changing
	at       time.Time // when this peer saw it change
	proposed time.Time // when a revocation was last proposed (zero: never)
}

// sessionTick is how often a peer looks at its sessions' clocks: a
// twentieth of the shortest TTL, within 10 to 100 ms.
func (c *Cluster) sessionTick() time.Duration {
	return min(max(c.MinSessionTTL()/20, 10*time.Millisecond), 100*time.Millisecond)
}

// checkSessions notes the renewals seen since the last call and, on the
// leader, proposes the revocation of the sessions whose TTL passed with
// no renewal seen.
func (c *Cluster) checkSessions(r *running, now time.Time) {
	k := &c.kv.clocks
	sessions := c.kv.store.Sessions()
	leading := c.IsLeader()
	term := c.Term()
	k.mu.Lock()
	if k.seen == nil {
		k.seen = map[uint64]*sessionSeen{}
	}
	if !leading {
		k.term = 0
	} else if k.term != term {
		// Leadership gained: every session's clock starts now.
		k.term = term
		for _, st := range k.seen {
			st.at, st.proposed = now, time.Time{}
		}
	}
	live := make(map[uint64]bool, len(sessions))
	var expired []kv.Session
	for _, se := range sessions {
		live[se.ID] = true
		st, ok := k.seen[se.ID]
		if !ok {
			st = &sessionSeen{renewed: se.Renewed, at: now}
			k.seen[se.ID] = st
		}
		if st.renewed != se.Renewed {
			st.renewed, st.at, st.proposed = se.Renewed, now, time.Time{}
		}
		retry := max(2*time.Duration(c.cfg.ElectionTimeout), se.TTL/4)
		if leading && now.Sub(st.at) >= se.TTL && now.Sub(st.proposed) >= retry {
			st.proposed = now
			expired = append(expired, se)
		}
	}
	for id := range k.seen {
		if !live[id] {
			delete(k.seen, id)
		}
	}
	k.mu.Unlock()
	for _, se := range expired {
		if !c.proposeExpiry(r, se, term) {
			// Not proposed (the node loop was busy, or leadership
			// moved): the next check tries again.
			k.mu.Lock()
			if st, ok := k.seen[se.ID]; ok {
				st.proposed = time.Time{}
			}
			k.mu.Unlock()
		}
	}
}

// proposeExpiry proposes the revocation of an expired session, fenced to
// term (still leading in it) and conditioned on the renewal it was judged
// by. Nobody waits for the result: a later check proposes it again if
// the session is still there. It reports whether it was proposed.
func (c *Cluster) proposeExpiry(r *running, se kv.Session, term uint64) bool {
	op := kv.Op{Type: kv.OpRevoke, Session: se.ID, IfRenewed: se.Renewed, Term: term}
	data, err := kv.EncodeOp(op)
	if err != nil {
		return false
	}
	node := c.node()
	if node == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(r.ctx, max(time.Duration(c.cfg.ElectionTimeout), time.Second))
	defer cancel()
	proposed := false
	err = node.Do(ctx, func(core *consensus.Core) error {
		if v := core.View(); v.Role != consensus.Leader || v.Term != term {
			return nil
		}
		if err := core.Propose(data); err != nil {
			return err
		}
		proposed = true
		return nil
	})
	if err != nil || !proposed {
		return false
	}
	c.log.Info("session expired: no renewal for its TTL; revoking it", "session", se.ID, "ttl", se.TTL)
	return true
}
