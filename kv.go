package qcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/qcluster/qcluster/internal/kv"
)

// Errors of the key-value store and locks. They are wrapped with %w: test
// with errors.Is.
var (
	// ErrKeyNotFound: the key does not exist.
	ErrKeyNotFound = errors.New("qcluster: key not found")
	// ErrCompareFailed: a write with IfModRevision or IfAbsent found the key
	// otherwise; nothing changed. The KVResult holds the key as it is (nil
	// KV: absent).
	ErrCompareFailed = errors.New("qcluster: compare failed")
	// ErrQuota: the put would take the store over its quota (keys plus
	// values, 64 MiB); nothing changed.
	ErrQuota = errors.New("qcluster: key-value quota exceeded")
	// ErrInvalidKey: the key is empty, not UTF-8, holds a NUL byte, or
	// starts with NUL (the internal key space, reserved for QCluster).
	ErrInvalidKey = errors.New("qcluster: invalid key")
	// ErrTooLarge: a key over 1 KiB (kv.MaxKeySize) or a value over 1 MiB.
	ErrTooLarge = errors.New("qcluster: key or value too large")
	// ErrCompacted: the revision a watch starts from is older than the
	// history this peer keeps; a *CompactedError says the oldest kept.
	ErrCompacted = errors.New("qcluster: revision compacted")
	// ErrOutcomeUnknown: the context ended (or the peer closed) after a
	// write was proposed and before it was applied here: it may still be
	// applied. It is not retried for you; read the key to find out.
	ErrOutcomeUnknown = errors.New("qcluster: outcome unknown")
	// ErrLockLost: Unlock found the lock no longer held (its key was
	// deleted or changed: its member was removed, for instance).
	ErrLockLost = errors.New("qcluster: lock lost")
)

// CompactedError says that a watch cannot start from the revision asked
// for: the history this peer keeps starts at Oldest. errors.Is(err,
// ErrCompacted) holds.
type CompactedError struct {
	// Oldest is the oldest revision a watch can start from.
	Oldest uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("qcluster: revision compacted: the oldest revision kept is %d", e.Oldest)
}

// Unwrap returns ErrCompacted.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// KV is the replicated key-value store of a leader-mode cluster: every
// write goes through the Raft log, so every peer holds the same keys. Get
// it with Cluster.KV. Its methods are safe for concurrent use.
//
// Revisions: the store has one revision, raised by every write that
// changes something; each key records the revision that created it
// (CreateRevision), the one that last changed it (ModRevision, what
// IfModRevision compares) and how many puts it has seen since it was
// created (Version).
//
// Reads are linearizable unless Stale is given: a read sees every write
// acknowledged (anywhere) before it began. The leader answers them from
// its own store under its lease, without a round trip; a follower commits
// a barrier through the log first (one round trip to the leader).
//
// Writes are proposed on the peer they are called on (a follower's go to
// the leader inside Raft) and return once this peer applied them. When
// the context ends first the error is ErrOutcomeUnknown: the write may yet
// apply, and is never retried behind your back (a compare-and-swap must
// not apply twice).
type KV struct{ c *Cluster }

// KV returns the cluster's key-value store. In masterless mode every call
// returns ErrMasterless.
func (c *Cluster) KV() *KV { return &KV{c: c} }

// KeyValue is one key of the store.
type KeyValue struct {
	Key   string
	Value []byte
	// CreateRevision is the revision that created the key, ModRevision
	// the one that last changed it; Version counts its puts since it was
	// created (1 after the first).
	CreateRevision, ModRevision, Version uint64
	// Owner is the identifier of the member an ephemeral key is bound to
	// ("" for a persistent key): the key is deleted when that member
	// leaves or is removed.
	Owner string
	// Session is the ID of the session the key is bound to (InSession; 0:
	// none): the key is deleted when the session ends. Owner is then the
	// session's member.
	Session uint64
}

// KVResult is the outcome of a write.
type KVResult struct {
	// Revision is the store's revision once the write applied.
	Revision uint64
	// KV is the key after a put; after a failed compare, the key as it is
	// (nil: absent).
	KV *KeyValue
	// Prev is the key before the write (nil: absent).
	Prev *KeyValue
}

// KVEventType is what a KVEvent did.
type KVEventType int

// Event types.
const (
	// KVPut: the key was created or changed.
	KVPut KVEventType = iota + 1
	// KVDelete: the key was deleted.
	KVDelete
)

// String returns "put" or "delete".
func (t KVEventType) String() string {
	switch t {
	case KVPut:
		return "put"
	case KVDelete:
		return "delete"
	}
	return "unknown"
}

// KVEvent is one change to one key. For a delete, KV holds the Key and, as
// ModRevision, the revision of the deletion.
type KVEvent struct {
	Type     KVEventType
	Revision uint64
	KV       KeyValue
	Prev     *KeyValue // the key before the change (nil: absent, or not known)
}

// ReadOption adjusts a read.
type ReadOption func(*readOptions)

type readOptions struct{ stale bool }

// Stale makes a read local: this peer answers from its own store at once,
// with no leader needed; it may miss the latest writes of other peers.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

// WriteOption adjusts a write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	compare   bool
	rev       uint64
	ephemeral bool
	session   uint64 // InSession
}

// IfModRevision makes a write apply only if the key's ModRevision is rev
// (0: only if the key is absent); otherwise it fails with
// ErrCompareFailed and changes nothing.
func IfModRevision(rev uint64) WriteOption {
	return func(o *writeOptions) { o.compare, o.rev = true, rev }
}

// IfAbsent makes a put apply only if the key does not exist
// (IfModRevision(0)).
func IfAbsent() WriteOption { return IfModRevision(0) }

// Ephemeral binds the key a Put writes to this member: the key is deleted
// when this member leaves the cluster or is removed from it (also when it
// stayed dead for DeadMemberTimeout). A later Put without Ephemeral makes
// it persistent again.
func Ephemeral() WriteOption { return func(o *writeOptions) { o.ephemeral = true } }

// checkUserKey refuses keys an application may not use.
func checkUserKey(key string) error {
	if strings.HasPrefix(key, kv.InternalPrefix) {
		return fmt.Errorf("%w: keys starting with NUL are reserved for QCluster", ErrInvalidKey)
	}
	return kvError(kv.CheckKey(key))
}

// Get returns the key, or ErrKeyNotFound. It is linearizable unless Stale
// is given.
func (s *KV) Get(ctx context.Context, key string, opts ...ReadOption) (KeyValue, error) {
	v, ok, _, err := s.get(ctx, key, opts)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %q", ErrKeyNotFound, key)
	}
	return v, err
}

// get reads key (see Get) and the store's revision it was read at; ok is
// false when the key is absent.
func (s *KV) get(ctx context.Context, key string, opts []ReadOption) (KeyValue, bool, uint64, error) {
	if err := s.c.kvReady(); err != nil {
		return KeyValue{}, false, 0, err
	}
	if err := kvError(kv.CheckKey(key)); err != nil {
		return KeyValue{}, false, 0, err
	}
	if err := s.read(ctx, opts); err != nil {
		return KeyValue{}, false, 0, err
	}
	v, ok, rev := s.c.kv.store.Get(key)
	if !ok {
		return KeyValue{}, false, rev, nil
	}
	return s.c.keyValue(&v), true, rev, nil
}

// List returns the keys that start with prefix, sorted by key, and the
// store's revision they were read at. It is linearizable unless Stale is
// given. QCluster's own keys (starting with NUL) are listed only for a
// prefix that starts with NUL.
func (s *KV) List(ctx context.Context, prefix string, opts ...ReadOption) ([]KeyValue, uint64, error) {
	if err := s.c.kvReady(); err != nil {
		return nil, 0, err
	}
	if err := s.read(ctx, opts); err != nil {
		return nil, 0, err
	}
	kvs, rev := s.c.kv.store.List(prefix, 0)
	out := make([]KeyValue, len(kvs))
	for i := range kvs {
		out[i] = s.c.keyValue(&kvs[i])
	}
	return out, rev, nil
}

// read waits, unless the options say Stale, until a local read is
// linearizable.
func (s *KV) read(ctx context.Context, opts []ReadOption) error {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.stale {
		return nil
	}
	return s.c.kvLinearize(ctx)
}

// Put sets key to value. With IfModRevision or IfAbsent it applies only if
// the key is as expected (else ErrCompareFailed, with the current key in
// the result); with Ephemeral the key is bound to this member, with
// InSession to a session (deleted when it ends). Other errors:
// ErrInvalidKey, ErrTooLarge, ErrQuota, ErrSessionNotFound, ErrNoLeader
// (ctx ended while no leader was known: not applied), ErrOutcomeUnknown
// (ctx ended after it was proposed: it may apply).
func (s *KV) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (KVResult, error) {
	o := writeOpts(opts)
	if err := checkUserKey(key); err != nil {
		return KVResult{}, err
	}
	op := kv.Op{Type: kv.OpPut, Key: key, Value: value, Compare: o.compare, ModRevision: o.rev, Session: o.session}
	if o.ephemeral {
		if o.session != 0 {
			return KVResult{}, fmt.Errorf("%w: a key is bound to its member (Ephemeral) or to a session (InSession), not both", ErrInvalidKey)
		}
		op.Owner = s.c.selfID
	}
	return s.c.kvWrite(ctx, op)
}

// Delete deletes key: ErrKeyNotFound when it does not exist. With
// IfModRevision it applies only if the key's ModRevision is as given (else
// ErrCompareFailed).
func (s *KV) Delete(ctx context.Context, key string, opts ...WriteOption) (KVResult, error) {
	o := writeOpts(opts)
	if err := checkUserKey(key); err != nil {
		return KVResult{}, err
	}
	if o.ephemeral || o.session != 0 {
		return KVResult{}, fmt.Errorf("%w: Ephemeral and InSession are options of Put", ErrInvalidKey)
	}
	return s.c.kvWrite(ctx, kv.Op{Type: kv.OpDelete, Key: key, Compare: o.compare, ModRevision: o.rev})
}

func writeOpts(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// kvWrite proposes op, waits for its result and maps it.
func (c *Cluster) kvWrite(ctx context.Context, op kv.Op) (KVResult, error) {
	if err := c.kvReady(); err != nil {
		return KVResult{}, err
	}
	if err := op.Check(); err != nil {
		return KVResult{}, kvError(err)
	}
	start := c.stamp()
	res, err := c.kvPropose(ctx, op, nil)
	if err != nil {
		return KVResult{}, err
	}
	c.metrics.observeKVApply(c.stamp().mono - start.mono)
	out := KVResult{Revision: res.Revision, KV: c.keyValuePtr(res.KV), Prev: c.keyValuePtr(res.Prev)}
	switch {
	case res.Succeeded:
		return out, nil
	case res.Err != nil:
		return out, kvError(res.Err)
	default:
		return out, fmt.Errorf("%w: %q", ErrCompareFailed, op.Key)
	}
}

// Watch returns a channel of every change to the keys that start with
// prefix, in revision order and without gaps, from fromRevision on (0:
// from the next change). When the history this peer keeps no longer
// reaches back to fromRevision, it returns a *CompactedError (errors.Is
// ErrCompacted) naming the oldest revision it can start from: read the
// keys again (List) and watch from the revision List returned, plus one.
//
// The channel is closed when ctx ends, when the peer closes, or when the
// reader fell so far behind that the history no longer holds the next
// change (a snapshot replaced this peer's store, for instance): resume
// with Watch(ctx, prefix, lastRevision+1), which then says whether that is
// possible. Events wait in the channel until read; the store never waits
// for a reader. QCluster's own keys (starting with NUL) are seen only with
// a prefix that starts with NUL.
func (s *KV) Watch(ctx context.Context, prefix string, fromRevision uint64) (<-chan KVEvent, error) {
	c := s.c
	if err := c.kvReady(); err != nil {
		return nil, err
	}
	r := c.running()
	store := c.kv.store
	next := fromRevision
	if next == 0 {
		next = store.Revision() + 1
	}
	if _, err := store.Since(next, prefix); err != nil {
		return nil, c.compacted(err)
	}
	ch := make(chan KVEvent, 64)
	go func() {
		defer close(ch)
		for {
			changed := store.Changed()
			rev := store.Revision()
			evs, err := store.Since(next, prefix)
			if err != nil {
				return
			}
			for _, ev := range evs {
				select {
				case ch <- c.kvEvent(ev):
				case <-ctx.Done():
					return
				case <-r.ctx.Done():
					return
				}
				next = ev.Revision + 1
			}
			// Every event up to rev was in evs (or not on prefix).
			next = max(next, rev+1)
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-r.ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// compacted maps the store's *kv.CompactedError to the SDK's.
func (c *Cluster) compacted(err error) error {
	var ce *kv.CompactedError
	if errors.As(err, &ce) {
		return &CompactedError{Oldest: ce.Oldest}
	}
	return err
}

// keyValue converts a store key (copying its value).
func (c *Cluster) keyValue(v *kv.KeyValue) KeyValue {
	return KeyValue{
		Key: v.Key, Value: bytes.Clone(v.Value),
		CreateRevision: v.CreateRevision, ModRevision: v.ModRevision, Version: v.Version,
		Owner: c.ownerName(v.Owner), Session: v.Session,
	}
}

func (c *Cluster) keyValuePtr(v *kv.KeyValue) *KeyValue {
	if v == nil {
		return nil
	}
	out := c.keyValue(v)
	return &out
}

func (c *Cluster) kvEvent(ev kv.Event) KVEvent {
	out := KVEvent{Type: KVPut, Revision: ev.Revision, KV: c.keyValue(&ev.KV), Prev: c.keyValuePtr(ev.Prev)}
	if ev.Type == kv.EventDelete {
		out.Type = KVDelete
	}
	return out
}
