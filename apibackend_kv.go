package qcluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/kv"
)

// The KV store and locks behind the HTTP API: apiBackend implements
// api.KVBackend with Cluster.KV and Cluster.Lock.

var _ api.KVBackend = apiBackend{}

// apiLocks holds the locks taken through the API, until Unlock.
type apiLocks struct {
	mu   sync.Mutex
	held map[apiLockKey]*Lock
}

type apiLockKey struct {
	name  string
	token uint64
}

func toAPIKeyValue(v KeyValue) api.KeyValue {
	return api.KeyValue{Key: v.Key, Value: v.Value, CreateRevision: v.CreateRevision, ModRevision: v.ModRevision, Version: v.Version, Owner: v.Owner, Session: v.Session}
}

func toAPIKeyValuePtr(v *KeyValue) *api.KeyValue {
	if v == nil {
		return nil
	}
	out := toAPIKeyValue(*v)
	return &out
}

func toAPIKVResult(r KVResult) api.KVResult {
	return api.KVResult{Revision: r.Revision, KV: toAPIKeyValuePtr(r.KV), Prev: toAPIKeyValuePtr(r.Prev)}
}

// kvAPIError translates the SDK's KV errors into the API's (a
// *CompactedError keeps its oldest revision).
func kvAPIError(err error) error {
	var ce *CompactedError
	if errors.As(err, &ce) {
		return &api.CompactedError{Oldest: ce.Oldest}
	}
	return toAPIError(err)
}

// kvRead reads the keys a GET asks for, linearizable unless stale: the
// key (prefix false) or every key under prefix, and the store's revision.
func (b apiBackend) kvRead(ctx context.Context, key string, prefix, stale bool) (api.KVList, error) {
	var opts []ReadOption
	if stale {
		opts = append(opts, Stale())
	}
	if !prefix {
		v, ok, rev, err := b.c.KV().get(ctx, key, opts)
		if err != nil {
			return api.KVList{}, kvAPIError(err)
		}
		out := api.KVList{Revision: rev, KVs: []api.KeyValue{}}
		if ok {
			out.KVs = append(out.KVs, toAPIKeyValue(v))
		}
		return out, nil
	}
	kvs, rev, err := b.c.KV().List(ctx, key, opts...)
	if err != nil {
		return api.KVList{}, kvAPIError(err)
	}
	out := api.KVList{Revision: rev, KVs: make([]api.KeyValue, len(kvs))}
	for i, v := range kvs {
		out.KVs[i] = toAPIKeyValue(v)
	}
	return out, nil
}

// KVGet reads one key (see KV.Get).
func (b apiBackend) KVGet(ctx context.Context, key string, stale bool) (api.KVList, error) {
	return b.kvRead(ctx, key, false, stale)
}

// KVList reads the keys under prefix (see KV.List).
func (b apiBackend) KVList(ctx context.Context, prefix string, stale bool) (api.KVList, error) {
	return b.kvRead(ctx, prefix, true, stale)
}

func apiWriteOptions(o api.KVWriteOptions) []WriteOption {
	var opts []WriteOption
	if o.Compare {
		opts = append(opts, IfModRevision(o.ModRevision))
	}
	if o.Ephemeral {
		opts = append(opts, Ephemeral())
	}
	if o.Session != 0 {
		opts = append(opts, InSessionID(o.Session))
	}
	return opts
}

// KVPut sets a key (see KV.Put).
func (b apiBackend) KVPut(ctx context.Context, key string, value []byte, o api.KVWriteOptions) (api.KVResult, error) {
	r, err := b.c.KV().Put(ctx, key, value, apiWriteOptions(o)...)
	return toAPIKVResult(r), kvAPIError(err)
}

// KVDelete deletes a key (see KV.Delete).
func (b apiBackend) KVDelete(ctx context.Context, key string, o api.KVWriteOptions) (api.KVResult, error) {
	r, err := b.c.KV().Delete(ctx, key, apiWriteOptions(o)...)
	return toAPIKVResult(r), kvAPIError(err)
}

// KVWatch streams the changes under prefix from revision from (0: after
// the current revision; see KV.Watch).
func (b apiBackend) KVWatch(ctx context.Context, prefix string, from uint64) (<-chan api.KVEvent, uint64, error) {
	if err := b.c.kvReady(); err != nil {
		return nil, 0, kvAPIError(err)
	}
	if from == 0 {
		from = b.c.kv.store.Revision() + 1
	}
	evs, err := b.c.KV().Watch(ctx, prefix, from)
	if err != nil {
		return nil, 0, kvAPIError(err)
	}
	out := make(chan api.KVEvent)
	go func() {
		defer close(out)
		for ev := range evs {
			e := api.KVEvent{Type: api.KVEventPut, Revision: ev.Revision, KV: toAPIKeyValue(ev.KV), Prev: toAPIKeyValuePtr(ev.Prev)}
			if ev.Type == KVDelete {
				e.Type = api.KVEventDelete
			}
			select {
			case out <- e:
			case <-ctx.Done():
				for range evs { // KV.Watch closes evs once ctx is done
				}
				return
			}
		}
	}()
	return out, from, nil
}

// Lock takes the named lock for the API (see Cluster.Lock) and keeps it
// until Unlock.
func (b apiBackend) Lock(ctx context.Context, name string) (uint64, <-chan struct{}, error) {
	l, err := b.c.Lock(ctx, name)
	if err != nil {
		return 0, nil, kvAPIError(err)
	}
	t := &b.c.apiLocks
	t.mu.Lock()
	if t.held == nil {
		t.held = map[apiLockKey]*Lock{}
	}
	t.held[apiLockKey{name, l.Token()}] = l
	t.mu.Unlock()
	return l.Token(), l.Lost(), nil
}

// Unlock releases a lock Lock took (one no longer held with that token is
// left alone).
func (b apiBackend) Unlock(ctx context.Context, name string, token uint64) error {
	t := &b.c.apiLocks
	k := apiLockKey{name, token}
	t.mu.Lock()
	l := t.held[k]
	delete(t.held, k)
	t.mu.Unlock()
	if l == nil {
		return nil
	}
	if err := l.Unlock(ctx); err != nil && !errors.Is(err, ErrLockLost) {
		return kvAPIError(err)
	}
	return nil
}

var _ api.SessionBackend = apiBackend{}

func toAPISession(s SessionInfo) api.Session {
	return api.Session{ID: s.ID, TTL: s.TTL.String(), Owner: s.Owner}
}

// sessionInfo returns what this peer's store holds of session id.
func (b apiBackend) sessionInfo(id uint64) (SessionInfo, bool) {
	se, ok := b.c.kv.store.Session(id)
	if !ok {
		return SessionInfo{ID: id}, false
	}
	return SessionInfo{ID: se.ID, TTL: se.TTL, Owner: b.c.ownerName(se.Owner)}, true
}

// SessionCreate grants a session (see KV.GrantSession): the API's client
// renews it.
func (b apiBackend) SessionCreate(ctx context.Context, ttl time.Duration) (api.Session, error) {
	s, err := b.c.KV().GrantSession(ctx, ttl)
	if err != nil {
		return api.Session{}, kvAPIError(err)
	}
	return toAPISession(s), nil
}

// SessionRenew renews a session (see KV.RenewSession).
func (b apiBackend) SessionRenew(ctx context.Context, id uint64) (api.Session, error) {
	if err := b.c.KV().RenewSession(ctx, id); err != nil {
		return api.Session{}, kvAPIError(err)
	}
	s, _ := b.sessionInfo(id)
	return toAPISession(s), nil
}

// SessionRevoke revokes a session (see KV.RevokeSession).
func (b apiBackend) SessionRevoke(ctx context.Context, id uint64) (api.Session, error) {
	s, _ := b.sessionInfo(id)
	if err := b.c.KV().RevokeSession(ctx, id); err != nil {
		return api.Session{}, kvAPIError(err)
	}
	return toAPISession(s), nil
}

// SessionList lists the sessions (see KV.Sessions).
func (b apiBackend) SessionList(ctx context.Context, stale bool) (api.SessionList, error) {
	var opts []ReadOption
	if stale {
		opts = append(opts, Stale())
	}
	ss, err := b.c.KV().Sessions(ctx, opts...)
	if err != nil {
		return api.SessionList{}, kvAPIError(err)
	}
	out := api.SessionList{Sessions: make([]api.Session, len(ss))}
	for i, s := range ss {
		out.Sessions[i] = toAPISession(s)
	}
	return out, nil
}

// LockInSession takes a lock bound to a session (see Cluster.Lock and
// WithSessionID); it is held until the session ends or LockRelease.
func (b apiBackend) LockInSession(ctx context.Context, name string, session uint64) (uint64, error) {
	l, err := b.c.Lock(ctx, name, WithSessionID(session))
	if err != nil {
		return 0, kvAPIError(err)
	}
	return l.Token(), nil
}

// LockRelease deletes the lock's key if it is held with token.
func (b apiBackend) LockRelease(ctx context.Context, name string, token uint64) error {
	res, err := b.c.kvWrite(ctx, kv.Op{Type: kv.OpDelete, Key: lockPrefix + name, Compare: true, ModRevision: token})
	if errors.Is(err, ErrCompareFailed) || errors.Is(err, ErrKeyNotFound) || (err == nil && res.Prev == nil) {
		return fmt.Errorf("%w: the lock %q is not held with token %d", api.ErrKeyNotFound, name, token)
	}
	return kvAPIError(err)
}
