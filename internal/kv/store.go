// Package kv is the replicated key-value store of a leader-mode cluster as
// a pure state machine on the Raft log: keys with values, revisions,
// compare-and-swap, ephemeral keys bound to a member, and a bounded history
// of events for watches.
//
// It does no I/O, starts no goroutine and reads no clock. One writer (the
// apply path of the peer) feeds Apply the committed entries in order; any
// number of readers call Get, List, Since, Changed concurrently (a
// sync.RWMutex inside). Peers fed the same entries hold the same state and
// write the same Snapshot bytes.
//
// What the log carries:
//
//   - a normal entry whose first byte is Kind carries an Op (EncodeOp): a
//     put or a delete, optionally compared with the key's mod revision
//     (0: the key must be absent), a put optionally bound to a member
//     (ephemeral);
//   - a configuration change (V1 or V2) that removes a node deletes every
//     key bound to it, all at one revision;
//   - every other entry (the registry's, empty ones) only moves the applied
//     index.
//
// Revisions: one revision for the whole store, +1 per applied entry that
// changes something (a failed compare, a refused put, a delete of an
// absent key change nothing). Each key records the revision that created
// it, the one that last modified it, and its version (puts since it was
// created).
//
// Quota: a put that would take the keys and values over the quota is
// refused with Result.Err = ErrQuota. The quota starts at Options.Quota
// (the same on every peer: the root package leaves the default) and is
// changed by OpSetQuota entries in the log (the leader proposes its
// configured kv_quota_bytes), so every peer refuses the same puts. It is
// part of the Snapshot.
//
// De-duplication: the store remembers the outcome of the last
// DedupeWindow operations with a ReqID (in the Snapshot). An operation
// whose ReqID it remembers (a proposal delivered twice) does not apply
// again: its Result is the first one's outcome, marked Duplicate.
//
// Every byte given to DecodeOp, Apply and Restore may come from a hostile
// peer: bad input is an error (or, for Apply, no change but the applied
// index), never a panic.
package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/btree"
	"go.etcd.io/raft/v3/raftpb"
)

// Defaults of Options.
const (
	DefaultQuota        = 64 << 20
	DefaultHistory      = 10000
	DefaultHistoryBytes = 64 << 20
)

// Options configure a Store. The zero value takes the defaults.
type Options struct {
	// Quota is the most bytes of keys plus values the store holds until
	// an OpSetQuota entry changes it (default 64 MiB; negative: no
	// quota). Must be the same on every peer.
	Quota int64
	// History is how many events Since can return at most (default
	// 10000; negative: none kept). A local setting: it changes which
	// watches see ErrCompacted, never the state.
	History int
	// HistoryBytes bounds the bytes of keys and values the kept events
	// hold (default 64 MiB; negative: none kept).
	HistoryBytes int64
}

func (o Options) withDefaults() Options {
	if o.Quota == 0 {
		o.Quota = DefaultQuota
	}
	if o.History == 0 {
		o.History = DefaultHistory
	}
	if o.HistoryBytes == 0 {
		o.HistoryBytes = DefaultHistoryBytes
	}
	return o
}

// KeyValue is one key as the store holds it.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision uint64 // the revision that created the key
	ModRevision    uint64 // the revision that last changed it
	Version        uint64 // puts since it was created (1 after the first)
	// Owner is the node ID of the member an ephemeral key is bound to; 0:
	// persistent.
	Owner uint64
	// Session is the session the key is bound to (0: none); see
	// session.go. Its Owner is then the session's.
	Session uint64
}

// size is what a key counts against the quota.
func (kv *KeyValue) size() int64 { return int64(len(kv.Key) + len(kv.Value)) }

func (kv *KeyValue) clone() *KeyValue {
	if kv == nil {
		return nil
	}
	c := *kv
	c.Value = bytes.Clone(kv.Value)
	return &c
}

// EventType says what an event did.
type EventType uint8

// Event types.
const (
	EventPut    EventType = 1
	EventDelete EventType = 2
)

// String returns "put" or "delete".
func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event is one change to one key. For a delete, KV holds only the Key and,
// as ModRevision, the deletion's revision. Prev is the key before the
// change (nil: it did not exist).
type Event struct {
	Type     EventType
	Revision uint64
	KV       KeyValue
	Prev     *KeyValue
}

// Result is the outcome of one applied Op.
//
//   - Succeeded: the op changed the store (Revision is the new revision).
//   - !Succeeded and Err == nil: the compare failed; KV is the key as it is
//     (nil: absent).
//   - Err != nil: the op was refused (ErrQuota, ErrNotFound,
//     ErrOwnerRemoved, ErrStaleTerm); nothing changed.
//
// After a put, KV is the key as written; Prev is the key before a put or
// delete. The Values share the store's memory: copy them before handing
// them out.
//
// A Duplicate result answers an op whose ReqID was already applied (a
// proposal delivered twice): nothing changed, and ReqID, Index, Revision,
// Succeeded and Err are those of the first apply (KV and Prev are nil).
// The proposer got the first result already; a duplicate is for nobody.
type Result struct {
	ReqID     uint64
	Index     uint64 // the entry's log index
	Revision  uint64 // the store's revision after the entry
	Succeeded bool
	KV        *KeyValue
	Prev      *KeyValue
	Err       error
	Duplicate bool
}

// Store is the state machine. The zero value is not usable: call New.
type Store struct {
	opts Options

	mu      sync.RWMutex
	keys    *btree.BTreeG[*KeyValue] // by Key
	bytes   int64                    // keys plus values
	rev     uint64
	applied uint64
	removed map[uint64]struct{} // node IDs removed and not added again
	changed chan struct{}       // closed at the next revision change
	quota   int64               // the quota in force (Options.Quota, then OpSetQuota)
	// dedupe: the outcomes of the last DedupeWindow ops with a ReqID, by
	// ReqID; dedupeOrder is their ReqIDs in apply order (oldest first).
	dedupe      map[uint64]outcome
	dedupeOrder []uint64

	// The history: events[start:] in revision order, with every event of
	// revisions oldest.. rev.
	events    []Event
	start     int
	oldest    uint64
	histBytes int64

	sess sessionTable // sessions (session.go)
}

func lessKV(a, b *KeyValue) bool { return a.Key < b.Key }

// New returns an empty store at revision 0.
func New(opts Options) *Store {
	s := &Store{opts: opts.withDefaults()}
	s.reset()
	return s
}

// reset empties the state (callers hold mu, or own s alone).
func (s *Store) reset() {
	s.keys = btree.NewG(32, lessKV)
	s.bytes, s.rev, s.applied = 0, 0, 0
	s.removed = map[uint64]struct{}{}
	s.events, s.start, s.histBytes = nil, 0, 0
	s.oldest = 1
	s.sess.reset()
	s.quota = s.opts.Quota
	s.dedupe, s.dedupeOrder = map[uint64]outcome{}, nil
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
}

// Revision returns the store's revision.
func (s *Store) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// AppliedIndex returns the index of the last entry applied (or of the
// snapshot restored).
func (s *Store) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Stats returns the number of keys (internal ones included) and their
// bytes (keys plus values, what the quota counts).
func (s *Store) Stats() (keys int, bytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys.Len(), s.bytes
}

// Quota returns the quota in force: bytes of keys plus values (negative:
// none).
func (s *Store) Quota() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.quota
}

// Changed returns a channel closed at the next change of the revision (or
// Restore). Take it before reading the state to miss nothing.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Get returns the key (a copy), whether it exists, and the store's
// revision.
func (s *Store) Get(key string) (KeyValue, bool, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	kv, ok := s.keys.Get(&KeyValue{Key: key})
	if !ok {
		return KeyValue{}, false, s.rev
	}
	return *kv.clone(), true, s.rev
}

// List returns the keys that start with prefix, sorted, at most limit of
// them (limit <= 0: all), as copies, and the store's revision. Internal
// keys (leading NUL) are listed only when prefix starts with
// InternalPrefix.
func (s *Store) List(prefix string, limit int) ([]KeyValue, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []KeyValue
	from := prefix
	if from == "" {
		from = "\x01" // past the internal key space
	}
	s.keys.AscendGreaterOrEqual(&KeyValue{Key: from}, func(kv *KeyValue) bool {
		if !strings.HasPrefix(kv.Key, prefix) {
			return false
		}
		out = append(out, *kv.clone())
		return limit <= 0 || len(out) < limit
	})
	return out, s.rev
}

// visible reports whether a watch or list of prefix sees key.
func visible(key, prefix string) bool {
	if !strings.HasPrefix(key, prefix) {
		return false
	}
	return prefix != "" || !strings.HasPrefix(key, InternalPrefix)
}

// Since returns the events with Revision >= rev on the keys that start
// with prefix (internal keys only for a prefix that starts with
// InternalPrefix), in order, as copies. When events from rev on are no
// longer all kept, it returns a *CompactedError (errors.Is ErrCompacted)
// naming the oldest revision it can start from.
func (s *Store) Since(rev uint64, prefix string) ([]Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rev = max(rev, 1) // revision 0 has no events
	if rev < s.oldest {
		return nil, &CompactedError{Oldest: s.oldest}
	}
	evs := s.events[s.start:]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].Revision >= rev })
	var out []Event
	for _, ev := range evs[i:] {
		if !visible(ev.KV.Key, prefix) {
			continue
		}
		c := ev
		c.KV = *ev.KV.clone()
		c.Prev = ev.Prev.clone()
		out = append(out, c)
	}
	return out, nil
}

// Apply applies one committed entry and returns the results of the KV
// operations it carries (one for a KV entry, none otherwise). Entries at
// or below the applied index are skipped. It never panics on bad data.
func (s *Store) Apply(e raftpb.Entry) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Index <= s.applied {
		return nil
	}
	s.applied = e.Index
	rev := s.rev
	var out []Result
	switch e.Type {
	case raftpb.EntryNormal:
		if op, err := DecodeOp(e.Data); err == nil {
			if o, dup := s.dedupe[op.ReqID]; dup && op.ReqID != 0 {
				out = append(out, o.result(op.ReqID))
				break
			}
			r := Result{Err: ErrStaleTerm}
			if op.Term == 0 || op.Term == e.Term {
				r = s.op(op)
			}
			r.ReqID, r.Index, r.Revision = op.ReqID, e.Index, s.rev
			s.remember(r)
			out = append(out, r)
		}
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if cc.Unmarshal(e.Data) == nil {
			s.confChange(cc.AsV2())
		}
	case raftpb.EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if cc.Unmarshal(e.Data) == nil {
			s.confChange(cc)
		}
	}
	if s.rev != rev {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.sess.notify()
	return out
}

// op applies one decoded operation (callers hold mu).
func (s *Store) op(op Op) Result {
	if op.Type.isSession() {
		return s.sessionOp(op)
	}
	if op.Type == OpSetQuota {
		s.quota = op.Quota
		return Result{Succeeded: true}
	}
	cur, ok := s.keys.Get(&KeyValue{Key: op.Key})
	if op.Compare {
		var mod uint64
		if ok {
			mod = cur.ModRevision
		}
		if mod != op.ModRevision {
			return Result{KV: cur}
		}
	}
	switch op.Type {
	case OpPut:
		if op.Owner != 0 {
			if _, gone := s.removed[op.Owner]; gone {
				return Result{Err: ErrOwnerRemoved}
			}
		}
		owner, err := s.bindSession(op)
		if err != nil {
			return Result{Err: err}
		}
		next := &KeyValue{Key: op.Key, Value: op.Value, Owner: owner, Session: op.Session, Version: 1}
		bytes := s.bytes + next.size()
		if ok {
			bytes -= cur.size()
		}
		if s.quota >= 0 && bytes > s.quota && bytes > s.bytes {
			return Result{Err: ErrQuota}
		}
		s.rev++
		next.CreateRevision, next.ModRevision = s.rev, s.rev
		if ok {
			next.CreateRevision, next.Version = cur.CreateRevision, cur.Version+1
		}
		s.keys.ReplaceOrInsert(next)
		s.bytes = bytes
		s.record(Event{Type: EventPut, Revision: s.rev, KV: *next, Prev: cur})
		return Result{Succeeded: true, KV: next, Prev: cur}
	default: // OpDelete: DecodeOp knows no other
		if !ok {
			return Result{Err: ErrNotFound}
		}
		s.rev++
		s.remove(cur)
		return Result{Succeeded: true, Prev: cur}
	}
}

// remove deletes kv at the current revision and records the event
// (callers hold mu).
func (s *Store) remove(kv *KeyValue) {
	s.keys.Delete(kv)
	s.bytes -= kv.size()
	s.record(Event{Type: EventDelete, Revision: s.rev, KV: KeyValue{Key: kv.Key, ModRevision: s.rev}, Prev: kv})
}

// confChange drops the keys of the nodes cc removes, all at one revision,
// and forgets the removal of nodes it adds (callers hold mu).
func (s *Store) confChange(cc raftpb.ConfChangeV2) {
	gone := map[uint64]bool{}
	for _, ch := range cc.Changes {
		switch ch.Type {
		case raftpb.ConfChangeRemoveNode:
			if ch.NodeID == 0 {
				continue
			}
			s.removed[ch.NodeID] = struct{}{}
			gone[ch.NodeID] = true
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
			delete(s.removed, ch.NodeID)
			delete(gone, ch.NodeID)
		}
	}
	if len(gone) == 0 {
		return
	}
	s.dropSessionsOf(gone)
	var drop []*KeyValue
	s.keys.Ascend(func(kv *KeyValue) bool {
		if kv.Owner != 0 && gone[kv.Owner] {
			drop = append(drop, kv)
		}
		return true
	})
	if len(drop) == 0 {
		return
	}
	s.rev++
	for _, kv := range drop { // in key order
		s.remove(kv)
	}
}

// record appends an event to the history and drops the oldest revisions
// beyond the bounds (callers hold mu).
func (s *Store) record(ev Event) {
	s.events = append(s.events, ev)
	s.histBytes += ev.KV.size()
	for s.start < len(s.events) && (len(s.events)-s.start > max(s.opts.History, 0) || s.histBytes > max(s.opts.HistoryBytes, 0)) {
		// Drop a whole revision, so that Since never starts inside one.
		r := s.events[s.start].Revision
		for s.start < len(s.events) && s.events[s.start].Revision == r {
			s.histBytes -= s.events[s.start].KV.size()
			s.events[s.start] = Event{}
			s.start++
		}
		s.oldest = r + 1
	}
	if s.start > 64 && s.start > len(s.events)/2 {
		s.events = slices.Clone(s.events[s.start:])
		s.start = 0
	}
}

// snapshotMagic starts every snapshot (the version of the format).
const snapshotMagic = "KVS\x01"

// Snapshot encodes the whole state: revision, applied index, the node IDs
// removed, the keys in order, then the quota in force and the remembered
// request outcomes (dedupe.go). Equal states encode to equal bytes.
func (s *Store) Snapshot() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := make([]byte, 0, 64+s.bytes+int64(s.keys.Len())*40)
	b = append(b, snapshotMagic...)
	b = appendUvarints(b, s.rev, s.applied, uint64(len(s.removed)))
	removed := make([]uint64, 0, len(s.removed))
	for id := range s.removed {
		removed = append(removed, id)
	}
	slices.Sort(removed)
	b = appendUvarints(b, removed...)
	b = appendUvarints(b, uint64(s.keys.Len()))
	s.keys.Ascend(func(kv *KeyValue) bool {
		b = appendBytes(b, []byte(kv.Key))
		b = appendBytes(b, kv.Value)
		b = appendUvarints(b, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Owner)
		return true
	})
	b = s.appendTail(b)        // the quota and the request outcomes (dedupe.go)
	return s.appendSessions(b) // trailing section (session.go)
}

// Restore replaces the state with one Snapshot encoded, after checking
// it whole: on error nothing changes. The history restarts at the
// restored revision (Since from an older one is ErrCompacted).
func (s *Store) Restore(data []byte) error {
	if !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		return fmt.Errorf("%w: snapshot: bad magic", ErrMalformed)
	}
	d := decoder{b: data[len(snapshotMagic):]}
	rev, applied := d.uvarint(), d.uvarint()
	removed := map[uint64]struct{}{}
	var last uint64
	for i, n := uint64(0), d.uvarint(); i < n && d.err == nil; i++ {
		id := d.uvarint()
		if d.err == nil && (id <= last) {
			return fmt.Errorf("%w: snapshot: removed node IDs out of order", ErrMalformed)
		}
		removed[id], last = struct{}{}, id
	}
	keys := btree.NewG(32, lessKV)
	var total int64
	prev := ""
	for i, n := uint64(0), d.uvarint(); i < n && d.err == nil; i++ {
		kv := &KeyValue{Key: string(d.bytes(MaxKeySize))}
		if v := d.bytes(MaxValueSize); len(v) > 0 {
			kv.Value = v
		}
		kv.CreateRevision, kv.ModRevision, kv.Version, kv.Owner = d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
		if d.err != nil {
			break
		}
		if err := CheckKey(kv.Key); err != nil {
			return fmt.Errorf("%w: snapshot: %w", ErrMalformed, err)
		}
		if i > 0 && kv.Key <= prev {
			return fmt.Errorf("%w: snapshot: keys out of order", ErrMalformed)
		}
		if kv.CreateRevision == 0 || kv.CreateRevision > kv.ModRevision || kv.ModRevision > rev || kv.Version == 0 {
			return fmt.Errorf("%w: snapshot: key %q has impossible revisions", ErrMalformed, kv.Key)
		}
		if _, gone := removed[kv.Owner]; gone && kv.Owner != 0 {
			return fmt.Errorf("%w: snapshot: key %q bound to a removed node", ErrMalformed, kv.Key)
		}
		prev = kv.Key
		total += kv.size()
		keys.ReplaceOrInsert(kv)
	}
	tl, err := decodeTail(&d, applied, rev)
	if err != nil {
		return err
	}
	sessions, err := restoreSessions(&d, applied, removed, keys) // trailing section (session.go)
	if err != nil {
		return err
	}
	if d.err != nil {
		return fmt.Errorf("%w: snapshot: %w", ErrMalformed, d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: snapshot: %d trailing bytes", ErrMalformed, len(d.b))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	s.keys, s.bytes, s.rev, s.applied, s.removed = keys, total, rev, applied, removed
	s.oldest = rev + 1
	s.sess.byID = sessions
	s.sess.notify()
	if tl.set {
		s.quota = tl.quota
	}
	s.dedupe, s.dedupeOrder = tl.dedup, tl.order
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func appendUvarints(b []byte, vs ...uint64) []byte {
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
