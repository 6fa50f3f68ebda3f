package qcluster

import (
	"context"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/internal/kvnode"
	"github.com/qcluster/qcluster/kv"
)

// The replicated key-value store, its sessions and locks are package kv
// (the handle) over internal/kvnode (the machinery); this file wires them
// to the peer.

// Errors of the key-value store, sessions and locks: the very values of
// package kv, so that errors.Is matches either name.
var (
	ErrKeyNotFound     = kv.ErrKeyNotFound
	ErrCompareFailed   = kv.ErrCompareFailed
	ErrQuota           = kv.ErrQuota
	ErrInvalidKey      = kv.ErrInvalidKey
	ErrTooLarge        = kv.ErrTooLarge
	ErrCompacted       = kv.ErrCompacted
	ErrOutcomeUnknown  = kv.ErrOutcomeUnknown
	ErrLockLost        = kv.ErrLockLost
	ErrSessionNotFound = kv.ErrSessionNotFound
	ErrInvalidTTL      = kv.ErrInvalidTTL
)

// KV returns the cluster's replicated key-value store (see package kv).
// In masterless mode every call returns ErrMasterless.
func (c *Cluster) KV() *kv.KV { return kv.New(c.kv, c.log) }

// Lock takes the named lock: c.KV().Lock (see kv.KV.Lock).
func (c *Cluster) Lock(ctx context.Context, name string, opts ...kv.LockOption) (*kv.Lock, error) {
	return c.KV().Lock(ctx, name, opts...)
}

// MinSessionTTL returns the shortest session TTL this cluster grants:
// kv.MinSessionTTL or two election timeouts, whichever is longer.
func (c *Cluster) MinSessionTTL() time.Duration { return c.kv.MinSessionTTL() }

// newKVNode builds the machinery of c's store.
func newKVNode(c *Cluster) *kvnode.Node {
	return kvnode.New(kvnode.Deps{
		Identifier:        c.cfg.Identifier,
		SelfID:            NodeID(c.cfg.Identifier),
		Log:               c.log,
		HeartbeatInterval: time.Duration(c.cfg.HeartbeatInterval),
		ElectionTimeout:   time.Duration(c.cfg.ElectionTimeout),
		Quota:             c.cfg.KVQuotaBytes,
		Ready:             c.kvReady,
		Running: func() (context.Context, kvnode.Do, bool) {
			if r := c.running(); r != nil && r.Node != nil {
				return r.Ctx, r.Node.Do, true
			}
			return nil, nil, false
		},
		Done:     c.done,
		IsLeader: c.IsLeader,
		Term:     c.Term,
		WaitForLeader: func(ctx context.Context) error {
			_, err := c.WaitForLeader(ctx)
			return err
		},
		Member: func(id uint64) (string, bool) {
			if m, ok := c.reg.Load().Get(id); ok {
				return m.Identifier, true
			}
			return "", false
		},
		Mono:           func() time.Duration { return c.stamp().mono },
		ObserveApply:   func(d time.Duration) { c.metrics.observeKVApply(d) },
		ErrClosed:      ErrClosed,
		ErrNoLeader:    ErrNoLeader,
		ErrUnknownPeer: ErrUnknownPeer,
	})
}

// kvReady returns why the KV store cannot be used now, or nil.
func (c *Cluster) kvReady() error {
	if c.cfg.Mode == ModeMasterless {
		return fmt.Errorf("%w: the key-value store and locks need leader mode", ErrMasterless)
	}
	if c.snap.Load().closed {
		return ErrClosed
	}
	if c.node() == nil {
		return ErrNotStarted
	}
	return nil
}

// snapshotData is what a raft snapshot taken now holds: the registry and
// the KV store. It runs on the node goroutine, where both are at the
// applied index.
func (c *Cluster) snapshotData() []byte {
	return kvnode.EncodeSnapshot(c.reg.Load().Snapshot(), c.kv.Store().Snapshot())
}
