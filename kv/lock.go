package kv

import (
	"context"
	"fmt"
	"sync"

	store "github.com/qcluster/qcluster/internal/kv"
)

// LockPrefix starts the key of every lock: a lock is the key
// LockPrefix+name, in the internal key space.
const LockPrefix = store.InternalPrefix + "lock/"

// LockOption adjusts KV.Lock.
type LockOption func(*lockOptions)

type lockOptions struct{ session uint64 }

// WithSession binds a lock to session s instead of to this member: the
// lock is released when the session ends (revoked, expired, its member
// gone), and not otherwise until Unlock. Lost closes then.
func WithSession(s *Session) LockOption { return WithSessionID(s.ID()) }

// WithSessionID is WithSession for a session known by its ID.
func WithSessionID(id uint64) LockOption { return func(o *lockOptions) { o.session = id } }

// Lock is a held named lock (KV.Lock). Its methods are safe for
// concurrent use.
type Lock struct {
	b     Backend
	name  string
	token uint64

	lost   chan struct{} // closed once the lock is no longer held
	cancel context.CancelFunc
	done   chan struct{} // the watcher ended

	mu       sync.Mutex
	unlocked bool
}

// Lock takes the named lock, waiting while another holder has it, until
// ctx ends. A lock is the ephemeral key LockPrefix+name ("\x00lock/"+name)
// bound to this member, created only if absent: it is released by Unlock,
// or when this member leaves the cluster or is removed from it (also when
// it stayed dead for DeadMemberTimeout). With WithSession it is bound to a
// session instead, and released when the session ends too (revoked, or
// expired: not renewed for its TTL). Many locks may be held at once, each
// by one holder; a member may hold several. Waiters are not served in
// order.
//
// Token is a fencing token: each holding of a name gets a greater token
// than the one before. Pass it to the resources the lock protects so they
// can refuse a holder that lost the lock without noticing (Lost).
//
// Errors: ErrInvalidKey (an empty name, or one that makes a key over 1
// KiB), ErrSessionNotFound (WithSession: the session is over),
// qcluster.ErrMasterless, ctx's error, qcluster.ErrClosed.
func (s *KV) Lock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	var o lockOptions
	for _, opt := range opts {
		opt(&o)
	}
	if name == "" {
		return nil, fmt.Errorf("%w: empty lock name", ErrInvalidKey)
	}
	if err := checkKey(LockPrefix + name); err != nil {
		return nil, err
	}
	token, err := s.b.Lock(ctx, name, o.session)
	if err != nil {
		return nil, err
	}
	return s.held(name, token), nil
}

// held returns the Lock for name held at token and starts watching it.
func (s *KV) held(name string, token uint64) *Lock {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lock{b: s.b, name: name, token: token, lost: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer close(l.lost)
		// Ends when the key changes, at Unlock (ctx), or when the peer
		// closes; the lock is no longer held (or no longer known to be) in
		// each case.
		_ = s.b.LockLost(ctx, name, token)
	}()
	return l
}

// Name returns the lock's name.
func (l *Lock) Name() string { return l.name }

// Token returns the lock's fencing token: the revision that created this
// holding of it, greater than that of every earlier holding of the name.
func (l *Lock) Token() uint64 { return l.token }

// Lost returns a channel closed once the lock is no longer held: released
// by Unlock, its key deleted (this member was removed) or changed, or this
// peer closed. A holder must stop acting under the lock when it closes.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Unlock releases the lock: it deletes the lock's key if it is still this
// holding's (compared on the token). It returns ErrLockLost if the lock
// was lost before; ErrOutcomeUnknown (and the ctx error) if ctx ended
// before the release applied (call Unlock again). Once it returned nil,
// later calls return nil.
func (l *Lock) Unlock(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unlocked {
		return nil
	}
	released, err := l.b.Unlock(ctx, l.name, l.token)
	if err != nil {
		return err
	}
	l.unlocked = true
	l.cancel()
	<-l.done
	if !released {
		return fmt.Errorf("%w: %q", ErrLockLost, l.name)
	}
	return nil
}
