package kvnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qcluster/qcluster/api"
	store "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/kv"
)

// API is the KV store, sessions and locks behind the HTTP API: it
// implements api.KVBackend and api.SessionBackend over a Node and a kv.KV
// handle on it.
type API struct {
	n  *Node
	kv *kv.KV
	// toAPIError translates the peer's errors (and kv's) into the API's.
	toAPIError func(error) error

	mu   sync.Mutex
	held map[apiLockKey]*kv.Lock // the locks taken through the API, until Unlock
}

var (
	_ api.KVBackend      = (*API)(nil)
	_ api.SessionBackend = (*API)(nil)
)

type apiLockKey struct {
	name  string
	token uint64
}

// NewAPI returns the API adapter of n; toAPIError translates the errors
// the API does not know of itself.
func NewAPI(n *Node, toAPIError func(error) error) *API {
	return &API{n: n, kv: kv.New(n, n.d.Log), toAPIError: toAPIError}
}

func toAPIKeyValue(v kv.KeyValue) api.KeyValue {
	return api.KeyValue{Key: v.Key, Value: v.Value, CreateRevision: v.CreateRevision, ModRevision: v.ModRevision, Version: v.Version, Owner: v.Owner, Session: v.Session}
}

func toAPIKeyValuePtr(v *kv.KeyValue) *api.KeyValue {
	if v == nil {
		return nil
	}
	out := toAPIKeyValue(*v)
	return &out
}

func toAPIKVResult(r kv.Result) api.KVResult {
	return api.KVResult{Revision: r.Revision, KV: toAPIKeyValuePtr(r.KV), Prev: toAPIKeyValuePtr(r.Prev)}
}

// apiError translates the KV errors into the API's (a *kv.CompactedError
// keeps its oldest revision).
func (a *API) apiError(err error) error {
	var ce *kv.CompactedError
	if errors.As(err, &ce) {
		return &api.CompactedError{Oldest: ce.Oldest}
	}
	return a.toAPIError(err)
}

// KVGet reads one key (see kv.KV.Get).
func (a *API) KVGet(ctx context.Context, key string, stale bool) (api.KVList, error) {
	v, ok, rev, err := a.n.Get(ctx, key, stale)
	if err != nil {
		return api.KVList{}, a.apiError(err)
	}
	out := api.KVList{Revision: rev, KVs: []api.KeyValue{}}
	if ok {
		out.KVs = append(out.KVs, toAPIKeyValue(v))
	}
	return out, nil
}

// KVList reads the keys under prefix (see kv.KV.List).
func (a *API) KVList(ctx context.Context, prefix string, stale bool) (api.KVList, error) {
	kvs, rev, err := a.n.List(ctx, prefix, stale)
	if err != nil {
		return api.KVList{}, a.apiError(err)
	}
	out := api.KVList{Revision: rev, KVs: make([]api.KeyValue, len(kvs))}
	for i, v := range kvs {
		out.KVs[i] = toAPIKeyValue(v)
	}
	return out, nil
}

func apiWriteOptions(o api.KVWriteOptions) []kv.WriteOption {
	var opts []kv.WriteOption
	if o.Compare {
		opts = append(opts, kv.IfModRevision(o.ModRevision))
	}
	if o.Ephemeral {
		opts = append(opts, kv.Ephemeral())
	}
	if o.Session != 0 {
		opts = append(opts, kv.InSessionID(o.Session))
	}
	return opts
}

// KVPut sets a key (see kv.KV.Put).
func (a *API) KVPut(ctx context.Context, key string, value []byte, o api.KVWriteOptions) (api.KVResult, error) {
	r, err := a.kv.Put(ctx, key, value, apiWriteOptions(o)...)
	return toAPIKVResult(r), a.apiError(err)
}

// KVDelete deletes a key (see kv.KV.Delete).
func (a *API) KVDelete(ctx context.Context, key string, o api.KVWriteOptions) (api.KVResult, error) {
	r, err := a.kv.Delete(ctx, key, apiWriteOptions(o)...)
	return toAPIKVResult(r), a.apiError(err)
}

// KVWatch streams the changes under prefix from revision from (0: after
// the current revision; see kv.KV.Watch).
func (a *API) KVWatch(ctx context.Context, prefix string, from uint64) (<-chan api.KVEvent, uint64, error) {
	if err := a.n.d.Ready(); err != nil {
		return nil, 0, a.apiError(err)
	}
	if from == 0 {
		from = a.n.store.Revision() + 1
	}
	evs, err := a.n.Watch(ctx, prefix, from)
	if err != nil {
		return nil, 0, a.apiError(err)
	}
	out := make(chan api.KVEvent)
	go func() {
		defer close(out)
		for ev := range evs {
			e := api.KVEvent{Type: api.KVEventPut, Revision: ev.Revision, KV: toAPIKeyValue(ev.KV), Prev: toAPIKeyValuePtr(ev.Prev)}
			if ev.Type == kv.EventDelete {
				e.Type = api.KVEventDelete
			}
			select {
			case out <- e:
			case <-ctx.Done():
				for range evs { // Watch closes evs once ctx is done
				}
				return
			}
		}
	}()
	return out, from, nil
}

// Lock takes the named lock for the API (see kv.KV.Lock) and keeps it
// until Unlock.
func (a *API) Lock(ctx context.Context, name string) (uint64, <-chan struct{}, error) {
	l, err := a.kv.Lock(ctx, name)
	if err != nil {
		return 0, nil, a.apiError(err)
	}
	a.mu.Lock()
	if a.held == nil {
		a.held = map[apiLockKey]*kv.Lock{}
	}
	a.held[apiLockKey{name, l.Token()}] = l
	a.mu.Unlock()
	return l.Token(), l.Lost(), nil
}

// Unlock releases a lock Lock took (one no longer held with that token is
// left alone).
func (a *API) Unlock(ctx context.Context, name string, token uint64) error {
	k := apiLockKey{name, token}
	a.mu.Lock()
	l := a.held[k]
	delete(a.held, k)
	a.mu.Unlock()
	if l == nil {
		return nil
	}
	if err := l.Unlock(ctx); err != nil && !errors.Is(err, kv.ErrLockLost) {
		return a.apiError(err)
	}
	return nil
}

func toAPISession(s kv.SessionInfo) api.Session {
	return api.Session{ID: s.ID, TTL: s.TTL.String(), Owner: s.Owner}
}

// SessionCreate grants a session (see kv.KV.GrantSession): the API's
// client renews it.
func (a *API) SessionCreate(ctx context.Context, ttl time.Duration) (api.Session, error) {
	s, err := a.kv.GrantSession(ctx, ttl)
	if err != nil {
		return api.Session{}, a.apiError(err)
	}
	return toAPISession(s), nil
}

// SessionRenew renews a session (see kv.KV.RenewSession).
func (a *API) SessionRenew(ctx context.Context, id uint64) (api.Session, error) {
	if err := a.kv.RenewSession(ctx, id); err != nil {
		return api.Session{}, a.apiError(err)
	}
	s, _ := a.n.sessionInfo(id)
	return toAPISession(s), nil
}

// SessionRevoke revokes a session (see kv.KV.RevokeSession).
func (a *API) SessionRevoke(ctx context.Context, id uint64) (api.Session, error) {
	s, _ := a.n.sessionInfo(id)
	if err := a.kv.RevokeSession(ctx, id); err != nil {
		return api.Session{}, a.apiError(err)
	}
	return toAPISession(s), nil
}

// SessionList lists the sessions (see kv.KV.Sessions).
func (a *API) SessionList(ctx context.Context, stale bool) (api.SessionList, error) {
	ss, err := a.n.Sessions(ctx, stale)
	if err != nil {
		return api.SessionList{}, a.apiError(err)
	}
	out := api.SessionList{Sessions: make([]api.Session, len(ss))}
	for i, s := range ss {
		out.Sessions[i] = toAPISession(s)
	}
	return out, nil
}

// LockInSession takes a lock bound to a session (see kv.KV.Lock and
// kv.WithSessionID); it is held until the session ends or LockRelease.
func (a *API) LockInSession(ctx context.Context, name string, session uint64) (uint64, error) {
	l, err := a.kv.Lock(ctx, name, kv.WithSessionID(session))
	if err != nil {
		return 0, a.apiError(err)
	}
	return l.Token(), nil
}

// LockRelease deletes the lock's key if it is held with token.
func (a *API) LockRelease(ctx context.Context, name string, token uint64) error {
	res, err := a.n.write(ctx, store.Op{Type: store.OpDelete, Key: kv.LockPrefix + name, Compare: true, ModRevision: token})
	if errors.Is(err, kv.ErrCompareFailed) || errors.Is(err, kv.ErrKeyNotFound) || (err == nil && res.Prev == nil) {
		return fmt.Errorf("%w: the lock %q is not held with token %d", api.ErrKeyNotFound, name, token)
	}
	return a.apiError(err)
}
