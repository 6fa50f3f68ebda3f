package kvnode

import (
	"context"
	"time"

	store "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/kv"
)

// Lock takes the named lock (see kv.KV.Lock; the handle checked the
// name): a put of kv.LockPrefix+name, only if absent, bound to this
// member or to session. While another holder has it, it waits until that
// holding ends and tries again.
func (n *Node) Lock(ctx context.Context, name string, session uint64) (uint64, error) {
	if err := n.d.Ready(); err != nil {
		return 0, err
	}
	key := kv.LockPrefix + name
	op := store.Op{Type: store.OpPut, Key: key, Value: []byte(n.d.Identifier), Compare: true, Owner: n.d.SelfID}
	if session != 0 {
		op.Owner, op.Session = 0, session
	}
	for {
		res, err := n.Propose(ctx, op, n.releaseLate)
		switch {
		case err == nil && res.Succeeded:
			return res.KV.ModRevision, nil
		case err == nil && res.Err != nil:
			return 0, n.kvError(res.Err)
		case err == nil:
			// Held: wait until that holding ends.
			if err := n.waitChange(ctx, key, res.KV.ModRevision); err != nil {
				return 0, err
			}
		default:
			return 0, err
		}
	}
}

// releaseLate deletes a lock whose Lock call gave up before the lock was
// taken, but that was taken all the same.
func (n *Node) releaseLate(res store.Result) {
	if !res.Succeeded || res.KV == nil {
		return
	}
	rctx, _, ok := n.d.Running()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(rctx, 30*time.Second)
	defer cancel()
	_, err := n.Propose(ctx, store.Op{Type: store.OpDelete, Key: res.KV.Key, Compare: true, ModRevision: res.KV.ModRevision}, nil)
	if err != nil {
		n.d.Log.Warn("a lock taken after its Lock call gave up could not be released; it is released when this member leaves",
			"lock", res.KV.Key[len(kv.LockPrefix):], "err", err)
	}
}

// LockLost returns nil once the lock's key is no longer at token (see
// kv.Backend).
func (n *Node) LockLost(ctx context.Context, name string, token uint64) error {
	return n.waitChange(ctx, kv.LockPrefix+name, token)
}

// Unlock deletes the lock's key if it is still held at token (compared
// on the token: a holder that lost the lock cannot release the next
// holder's).
func (n *Node) Unlock(ctx context.Context, name string, token uint64) (bool, error) {
	res, err := n.Propose(ctx, store.Op{Type: store.OpDelete, Key: kv.LockPrefix + name, Compare: true, ModRevision: token}, nil)
	if err != nil {
		return false, err
	}
	return res.Succeeded, nil
}

// waitChange returns nil once key is no longer at mod revision mod
// (deleted or changed), as this peer's store sees it; ErrClosed when the
// peer closes; ctx's error.
func (n *Node) waitChange(ctx context.Context, key string, mod uint64) error {
	rctx, _, ok := n.d.Running()
	if !ok {
		return n.d.ErrClosed
	}
	st := n.store
	next := mod + 1
	for {
		changed := st.Changed()
		rev := st.Revision()
		evs, err := st.Since(next, key)
		if err != nil {
			// The history moved on: judge by the key as it is.
			if cur, ok, _ := st.Get(key); !ok || cur.ModRevision != mod {
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
		case <-rctx.Done():
			return n.d.ErrClosed
		}
	}
}
