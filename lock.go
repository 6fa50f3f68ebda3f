package qcluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/qcluster/qcluster/internal/kv"
)

// lockPrefix starts the key of every lock (internal key space).
const lockPrefix = kv.InternalPrefix + "lock/"

// Lock is a held named lock (Cluster.Lock). Its methods are safe for
// concurrent use.
type Lock struct {
	c     *Cluster
	name  string
	key   string
	token uint64

	lost   chan struct{} // closed once the lock is no longer held
	cancel context.CancelFunc
	done   chan struct{} // the watcher ended

	mu       sync.Mutex
	unlocked bool
}

// Lock takes the named lock, waiting while another holder has it, until
// ctx ends. A lock is the ephemeral key "\x00lock/"+name bound to this
// member, created only if absent: it is released by Unlock, or when this
// member leaves the cluster or is removed from it (also when it stayed
// dead for DeadMemberTimeout). With WithSession it is bound to a session
// instead, and released when the session ends too (revoked, or expired:
// not renewed for its TTL). Many locks may be held at once, each by one
// holder; a member may hold several. Waiters are not served in order.
//
// Token is a fencing token: each holding of a name gets a greater token
// than the one before. Pass it to the resources the lock protects so they
// can refuse a holder that lost the lock without noticing (Lost).
//
// Errors: ErrInvalidKey (an empty name, or one that makes a key over 1
// KiB), ErrSessionNotFound (WithSession: the session is over),
// ErrMasterless, ctx's error, ErrClosed.
func (c *Cluster) Lock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	var o lockOptions
	for _, opt := range opts {
		opt(&o)
	}
	if name == "" {
		return nil, fmt.Errorf("%w: empty lock name", ErrInvalidKey)
	}
	key := lockPrefix + name
	if err := kvError(kv.CheckKey(key)); err != nil {
		return nil, err
	}
	if err := c.kvReady(); err != nil {
		return nil, err
	}
	op := kv.Op{Type: kv.OpPut, Key: key, Value: []byte(c.cfg.Identifier), Compare: true, Owner: c.selfID}
	if o.session != 0 {
		op.Owner, op.Session = 0, o.session
	}
	for {
		res, err := c.kvPropose(ctx, op, c.releaseLate)
		switch {
		case err == nil && res.Succeeded:
			return c.heldLock(name, key, res.KV.ModRevision), nil
		case err == nil && res.Err != nil:
			return nil, kvError(res.Err)
		case err == nil:
			// Held: wait until that holding ends.
			if err := c.kvWaitChange(ctx, key, res.KV.ModRevision); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// releaseLate deletes a lock whose Lock call gave up before the lock was
// taken, but that was taken all the same.
func (c *Cluster) releaseLate(res kv.Result) {
	if !res.Succeeded || res.KV == nil {
		return
	}
	r := c.running()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	_, err := c.kvPropose(ctx, kv.Op{Type: kv.OpDelete, Key: res.KV.Key, Compare: true, ModRevision: res.KV.ModRevision}, nil)
	if err != nil {
		c.log.Warn("a lock taken after its Lock call gave up could not be released; it is released when this member leaves",
			"lock", res.KV.Key[len(lockPrefix):], "err", err)
	}
}

// sleep waits d, or until ctx ends or the peer closes.
func (c *Cluster) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
}

// heldLock returns the Lock for key held at token and starts watching it.
func (c *Cluster) heldLock(name, key string, token uint64) *Lock {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lock{c: c, name: name, key: key, token: token, lost: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer close(l.lost)
		// Ends when the key changes, at Unlock (ctx), or when the peer
		// closes; the lock is no longer held (or no longer known to be) in
		// each case.
		_ = c.kvWaitChange(ctx, key, token)
	}()
	return l
}

// kvWaitChange returns nil once key is no longer at mod revision mod
// (deleted or changed), as this peer's store sees it; ErrClosed when the
// peer closes; ctx's error.
func (c *Cluster) kvWaitChange(ctx context.Context, key string, mod uint64) error {
	r := c.running()
	if r == nil {
		return ErrClosed
	}
	store := c.kv.store
	next := mod + 1
	for {
		changed := store.Changed()
		rev := store.Revision()
		evs, err := store.Since(next, key)
		if err != nil {
			// The history moved on: judge by the key as it is.
			if cur, ok, _ := store.Get(key); !ok || cur.ModRevision != mod {
				return nil
			}
		}
		for _, ev := range evs {
			if ev.KV.Key == key {
				return nil
			}
		}
		next = max(next, rev+1)
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.ctx.Done():
			return ErrClosed
		}
	}
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
	res, err := l.c.kvPropose(ctx, kv.Op{Type: kv.OpDelete, Key: l.key, Compare: true, ModRevision: l.token}, nil)
	if err != nil {
		return err
	}
	l.unlocked = true
	l.cancel()
	<-l.done
	if !res.Succeeded {
		return fmt.Errorf("%w: %q", ErrLockLost, l.name)
	}
	return nil
}
