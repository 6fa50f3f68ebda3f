package qcluster

import (
	"context"
	"errors"
	"sync"

	"github.com/qcluster/qcluster/api"
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
	return api.KeyValue{Key: v.Key, Value: v.Value, CreateRevision: v.CreateRevision, ModRevision: v.ModRevision, Version: v.Version, Owner: v.Owner}
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
