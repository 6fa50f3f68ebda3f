// Package kv is the replicated key-value store of a QCluster peer in
// leader mode, its sessions and its named locks: the Go surface of the
// store. Get the handle of a running peer with qcluster.Cluster.KV.
//
// Every write goes through the Raft log, so every peer holds the same keys.
// The handle's methods are safe for concurrent use.
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
//
// A KV handle runs over a Backend: the peer implements it, and a test can
// give New a fake of its own.
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	store "github.com/qcluster/qcluster/internal/kv"
)

// Errors of the key-value store, sessions and locks. They are wrapped with
// %w: test with errors.Is. Package qcluster exports the same values under
// the same names.
var (
	// ErrKeyNotFound: the key does not exist.
	ErrKeyNotFound = errors.New("qcluster: key not found")
	// ErrCompareFailed: a write with IfModRevision or IfAbsent found the key
	// otherwise; nothing changed. The Result holds the key as it is (nil
	// KV: absent).
	ErrCompareFailed = errors.New("qcluster: compare failed")
	// ErrQuota: the put would take the store over its quota (keys plus
	// values, 64 MiB); nothing changed.
	ErrQuota = errors.New("qcluster: key-value quota exceeded")
	// ErrInvalidKey: the key is empty, not UTF-8, holds a NUL byte, or
	// starts with NUL (the internal key space, reserved for QCluster).
	ErrInvalidKey = errors.New("qcluster: invalid key")
	// ErrTooLarge: a key over 1 KiB (MaxKeySize) or a value over 1 MiB
	// (MaxValueSize).
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
	// ErrSessionNotFound: the session does not exist: it expired, was
	// revoked, or its member left the cluster (or it never existed).
	ErrSessionNotFound = errors.New("qcluster: session not found")
	// ErrInvalidTTL: a session TTL below MinSessionTTL (for this
	// cluster's election timeout: see qcluster.Cluster.MinSessionTTL) or
	// above MaxSessionTTL.
	ErrInvalidTTL = errors.New("qcluster: invalid session TTL")
)

// Sizes of keys and values.
const (
	MaxKeySize   = store.MaxKeySize
	MaxValueSize = store.MaxValueSize
)

// Bounds of a session's TTL. The least TTL is MinSessionTTL or two
// election timeouts, whichever is longer (qcluster.Cluster.MinSessionTTL):
// a session must outlive a fail-over's election.
const (
	MinSessionTTL = time.Second
	MaxSessionTTL = store.MaxSessionTTL
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

// Result is the outcome of a write.
type Result struct {
	// Revision is the store's revision once the write applied.
	Revision uint64
	// KV is the key after a put; after a failed compare, the key as it is
	// (nil: absent).
	KV *KeyValue
	// Prev is the key before the write (nil: absent).
	Prev *KeyValue
}

// EventType is what an Event did.
type EventType int

// Event types.
const (
	// EventPut: the key was created or changed.
	EventPut EventType = iota + 1
	// EventDelete: the key was deleted.
	EventDelete
)

// String returns "put" or "delete".
func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change to one key. For a delete, KV holds the Key and, as
// ModRevision, the revision of the deletion.
type Event struct {
	Type     EventType
	Revision uint64
	KV       KeyValue
	Prev     *KeyValue // the key before the change (nil: absent, or not known)
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

// Write is what the write options of a Put or Delete asked for, as a
// Backend receives it.
type Write struct {
	// Compare: apply only if the key's ModRevision is ModRevision (0:
	// only if the key is absent).
	Compare     bool
	ModRevision uint64
	// Ephemeral: bind the key to this member (Put only).
	Ephemeral bool
	// Session: bind the key to this session (Put only; 0: none).
	Session uint64
}

// Backend is what a KV handle runs on: a peer's store (qcluster.Cluster.KV
// gives a handle over its own), or a fake in tests. The handle checks the
// options and keys it is given before it calls the backend. Errors are
// those documented on the KV methods.
type Backend interface {
	// Get reads key (linearizable unless stale): found is false when it
	// is absent; rev is the store's revision it was read at.
	Get(ctx context.Context, key string, stale bool) (kv KeyValue, found bool, rev uint64, err error)
	// List reads the keys under prefix, sorted, and the revision.
	List(ctx context.Context, prefix string, stale bool) ([]KeyValue, uint64, error)
	// Put and Delete write one key.
	Put(ctx context.Context, key string, value []byte, w Write) (Result, error)
	Delete(ctx context.Context, key string, w Write) (Result, error)
	// Watch streams the changes under prefix from revision from (see
	// KV.Watch).
	Watch(ctx context.Context, prefix string, from uint64) (<-chan Event, error)
	// GrantSession, RenewSession, RevokeSession and Sessions: see KV.
	GrantSession(ctx context.Context, ttl time.Duration) (SessionInfo, error)
	RenewSession(ctx context.Context, id uint64) error
	RevokeSession(ctx context.Context, id uint64) error
	Sessions(ctx context.Context, stale bool) ([]SessionInfo, error)
	// SessionAlive reports whether the local store holds session id, and
	// a channel closed at the next change to the sessions.
	SessionAlive(id uint64) (alive bool, changed <-chan struct{})
	// Lock takes the named lock (bound to session when not 0, else to
	// this member), waiting while another holder has it, and returns its
	// token (see KV.Lock).
	Lock(ctx context.Context, name string, session uint64) (token uint64, err error)
	// LockLost returns nil once the lock is no longer held at token (its
	// key deleted or changed), ctx's error, or an error once the peer
	// closed.
	LockLost(ctx context.Context, name string, token uint64) error
	// Unlock deletes the lock's key if it is held at token; released is
	// false when it was not.
	Unlock(ctx context.Context, name string, token uint64) (released bool, err error)
	// Context ends when the peer closes: sessions stop being renewed.
	Context() context.Context
}

// KV is a handle on the replicated key-value store. Its methods are safe
// for concurrent use.
type KV struct {
	b   Backend
	log *slog.Logger
}

// New returns a handle over b that logs to log (nil: nowhere).
func New(b Backend, log *slog.Logger) *KV {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KV{b: b, log: log}
}

// ReadOption adjusts a read.
type ReadOption func(*readOptions)

type readOptions struct{ stale bool }

// Stale makes a read local: this peer answers from its own store at once,
// with no leader needed; it may miss the latest writes of other peers.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

func stale(opts []ReadOption) bool {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.stale
}

// WriteOption adjusts a write.
type WriteOption func(*Write)

// IfModRevision makes a write apply only if the key's ModRevision is rev
// (0: only if the key is absent); otherwise it fails with
// ErrCompareFailed and changes nothing.
func IfModRevision(rev uint64) WriteOption {
	return func(o *Write) { o.Compare, o.ModRevision = true, rev }
}

// IfAbsent makes a put apply only if the key does not exist
// (IfModRevision(0)).
func IfAbsent() WriteOption { return IfModRevision(0) }

// Ephemeral binds the key a Put writes to this member: the key is deleted
// when this member leaves the cluster or is removed from it (also when it
// stayed dead for DeadMemberTimeout). A later Put without Ephemeral makes
// it persistent again.
func Ephemeral() WriteOption { return func(o *Write) { o.Ephemeral = true } }

// InSession binds the key a Put writes to session s: the key is deleted
// when the session ends (revoked, expired, or its member gone). Its Owner
// is the session's member. ErrSessionNotFound when the session is over.
func InSession(s *Session) WriteOption { return InSessionID(s.ID()) }

// InSessionID is InSession for a session known by its ID (GrantSession,
// or another process's).
func InSessionID(id uint64) WriteOption { return func(o *Write) { o.Session = id } }

func writeOpts(opts []WriteOption) Write {
	var o Write
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// checkKey returns why key cannot be used (ErrInvalidKey, ErrTooLarge),
// or nil.
func checkKey(key string) error {
	err := store.CheckKey(key)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	default:
		return fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
}

// checkUserKey refuses keys an application may not write.
func checkUserKey(key string) error {
	if strings.HasPrefix(key, store.InternalPrefix) {
		return fmt.Errorf("%w: keys starting with NUL are reserved for QCluster", ErrInvalidKey)
	}
	return checkKey(key)
}

// Get returns the key, or ErrKeyNotFound. It is linearizable unless Stale
// is given.
func (s *KV) Get(ctx context.Context, key string, opts ...ReadOption) (KeyValue, error) {
	v, ok, _, err := s.b.Get(ctx, key, stale(opts))
	if err == nil && !ok {
		err = fmt.Errorf("%w: %q", ErrKeyNotFound, key)
	}
	return v, err
}

// List returns the keys that start with prefix, sorted by key, and the
// store's revision they were read at. It is linearizable unless Stale is
// given. QCluster's own keys (starting with NUL) are listed only for a
// prefix that starts with NUL.
func (s *KV) List(ctx context.Context, prefix string, opts ...ReadOption) ([]KeyValue, uint64, error) {
	return s.b.List(ctx, prefix, stale(opts))
}

// Put sets key to value. With IfModRevision or IfAbsent it applies only if
// the key is as expected (else ErrCompareFailed, with the current key in
// the result); with Ephemeral the key is bound to this member, with
// InSession to a session (deleted when it ends). Other errors:
// ErrInvalidKey, ErrTooLarge, ErrQuota, ErrSessionNotFound,
// qcluster.ErrNoLeader (ctx ended while no leader was known: not applied),
// ErrOutcomeUnknown (ctx ended after it was proposed: it may apply).
func (s *KV) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (Result, error) {
	o := writeOpts(opts)
	if err := checkUserKey(key); err != nil {
		return Result{}, err
	}
	if o.Ephemeral && o.Session != 0 {
		return Result{}, fmt.Errorf("%w: a key is bound to its member (Ephemeral) or to a session (InSession), not both", ErrInvalidKey)
	}
	return s.b.Put(ctx, key, value, o)
}

// Delete deletes key: ErrKeyNotFound when it does not exist. With
// IfModRevision it applies only if the key's ModRevision is as given (else
// ErrCompareFailed).
func (s *KV) Delete(ctx context.Context, key string, opts ...WriteOption) (Result, error) {
	o := writeOpts(opts)
	if err := checkUserKey(key); err != nil {
		return Result{}, err
	}
	if o.Ephemeral || o.Session != 0 {
		return Result{}, fmt.Errorf("%w: Ephemeral and InSession are options of Put", ErrInvalidKey)
	}
	return s.b.Delete(ctx, key, o)
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
func (s *KV) Watch(ctx context.Context, prefix string, fromRevision uint64) (<-chan Event, error) {
	return s.b.Watch(ctx, prefix, fromRevision)
}
