// Package storage keeps a node's durable Raft state: the hard state (term,
// vote, commit), the log entries and the latest snapshot.
//
// Bolt stores that state in a bbolt file (dir/raft.db); Memory is its
// in-memory twin for simulations and tests. Both serve every read from a
// raft.MemoryStorage cache, so reads never touch the disk, and both follow the
// same rules for Save, CreateSnapshot and Compact.
//
// Durability contract: when Save, CreateSnapshot or Compact returns nil, the
// change is on stable storage (a single bbolt transaction, fsynced unless
// Options.NoSync is set) and visible to readers, so a crash keeps it. When it
// returns an error, readers see no change; the disk is untouched too unless
// the error came from the disk itself, after which the node should stop.
// Writes must come from one goroutine at a time; reads may run concurrently
// with them.
package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Storage is what the consensus core needs: raft.Storage for reads plus a
// durable Save.
type Storage interface {
	raft.Storage
	// Save durably persists, in this order and atomically (one transaction,
	// fsynced before it returns): the snapshot if !raft.IsEmptySnap(snap) (it
	// replaces the whole log, as raft.MemoryStorage.ApplySnapshot does), then
	// the entries (an entry at index i first truncates any stored entries at
	// >= i; entries already compacted are skipped), then the hard state if
	// !raft.IsEmptyHardState(hs). It rejects, changing nothing, a snapshot
	// not newer than the current one and entries that are not contiguous,
	// leave a gap after the last index, or would overwrite the snapshot.
	Save(hs raftpb.HardState, ents []raftpb.Entry, snap raftpb.Snapshot) error
	// CreateSnapshot records and persists a snapshot at applied index i, with
	// conf state cs (nil keeps the previous one) and application data.
	CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (raftpb.Snapshot, error)
	// Compact discards the entries before index i, which must not be beyond
	// the latest snapshot.
	Compact(i uint64) error
	// Close releases the storage; later writes fail with ErrClosed.
	Close() error
}

var (
	// ErrLocked is returned by Open when another process holds the data file.
	ErrLocked = errors.New("storage: data directory is in use by another process")
	// ErrCorrupt is returned by Open when the stored state cannot be decoded
	// or is inconsistent.
	ErrCorrupt = errors.New("storage: corrupt raft state")
	// ErrClosed is returned by writes after Close.
	ErrClosed = errors.New("storage: closed")
)

// change is one validated write, in the form the disk needs it.
type change struct {
	snap   raftpb.Snapshot  // recorded unless empty
	offset raftpb.Entry     // new log start (index, term) unless Index is 0: entries up to it are dropped
	reset  bool             // with offset: drop the entries after it too (snapshot restore)
	ents   []raftpb.Entry   // replace the stored entries from ents[0].Index on
	hs     raftpb.HardState // recorded unless empty
}

// image is the whole stored state, the form Open loads and Clone copies.
type image struct {
	hs     raftpb.HardState
	snap   raftpb.Snapshot
	offset raftpb.Entry // index and term of the entry just before the first one
	ents   []raftpb.Entry
}

// core validates writes, hands them to persist and then applies them to the
// read cache. Bolt and Memory share it.
type core struct {
	mu      sync.Mutex // serializes writes, Clone and Close
	ms      *raft.MemoryStorage
	persist func(change) error // makes a validated change durable
	closed  bool
	// commitOnly: Save kept a newer commit index in memory only (see
	// Save); Close writes it.
	commitOnly bool
}

// InitialState implements raft.Storage.
func (c *core) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	// raft.MemoryStorage.InitialState does not lock; Save may be running.
	c.ms.Lock()
	defer c.ms.Unlock()
	return c.ms.InitialState()
}

// Entries implements raft.Storage.
func (c *core) Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	return c.ms.Entries(lo, hi, maxSize)
}

// Term implements raft.Storage.
func (c *core) Term(i uint64) (uint64, error) { return c.ms.Term(i) }

// LastIndex implements raft.Storage.
func (c *core) LastIndex() (uint64, error) { return c.ms.LastIndex() }

// FirstIndex implements raft.Storage.
func (c *core) FirstIndex() (uint64, error) { return c.ms.FirstIndex() }

// Snapshot implements raft.Storage.
func (c *core) Snapshot() (raftpb.Snapshot, error) { return c.ms.Snapshot() }

// Save implements Storage.
func (c *core) Save(hs raftpb.HardState, ents []raftpb.Entry, snap raftpb.Snapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	cur, _ := c.ms.Snapshot()
	snapIdx := cur.Metadata.Index
	first, _ := c.ms.FirstIndex()
	last, _ := c.ms.LastIndex()
	ch := change{hs: hs}
	if !raft.IsEmptySnap(snap) {
		if snap.Metadata.Index <= snapIdx {
			return fmt.Errorf("storage: save snapshot at %d (have %d): %w", snap.Metadata.Index, snapIdx, raft.ErrSnapOutOfDate)
		}
		snapIdx = snap.Metadata.Index
		first, last = snapIdx+1, snapIdx
		ch.snap, ch.reset = snap, true
		ch.offset = raftpb.Entry{Index: snapIdx, Term: snap.Metadata.Term}
	}
	var err error
	if ch.ents, err = trim(ents, first, last, snapIdx); err != nil {
		return err
	}
	if !ch.reset && len(ch.ents) == 0 {
		if raft.IsEmptyHardState(hs) {
			return nil // nothing to write: no transaction, no fsync
		}
		if cur, _, _ := c.ms.InitialState(); hs.Term == cur.Term && hs.Vote == cur.Vote {
			// Only the commit index moved. raft does not need it durable
			// (etcd's raft.MustSync): a restarted peer learns it again from
			// the leader, or commits its log again when it leads. So no
			// transaction and no fsync on the path of every commit; it
			// reaches the disk with the next write (CreateSnapshot writes
			// it: a durable commit below the snapshot would stop raft at
			// restart; so does Close).
			c.commitOnly = true
			return c.ms.SetHardState(hs)
		}
	}
	if err := c.persist(ch); err != nil {
		return err
	}
	if !raft.IsEmptyHardState(hs) {
		c.commitOnly = false
	}
	if ch.reset {
		if err := c.ms.ApplySnapshot(snap); err != nil {
			return err
		}
	}
	if err := c.ms.Append(ch.ents); err != nil {
		return err
	}
	if !raft.IsEmptyHardState(hs) {
		return c.ms.SetHardState(hs)
	}
	return nil
}

// trim checks that ents can be appended to a log spanning [first, last] with
// a snapshot at snapIdx, and drops the entries already compacted.
func trim(ents []raftpb.Entry, first, last, snapIdx uint64) ([]raftpb.Entry, error) {
	if len(ents) == 0 {
		return nil, nil
	}
	lo := ents[0].Index
	for k, e := range ents {
		if e.Index != lo+uint64(k) {
			return nil, fmt.Errorf("storage: entries not contiguous: %d follows %d", e.Index, ents[k-1].Index)
		}
	}
	if lo > last+1 {
		return nil, fmt.Errorf("storage: entries start at %d, past last index %d: %w", lo, last, raft.ErrUnavailable)
	}
	if lo < first {
		if lo+uint64(len(ents)) <= first {
			return nil, nil
		}
		ents, lo = ents[first-lo:], first
	}
	if lo <= snapIdx {
		return nil, fmt.Errorf("storage: entries from %d would overwrite the snapshot at %d", lo, snapIdx)
	}
	return ents, nil
}

// CreateSnapshot implements Storage. Unlike raft.MemoryStorage it returns an
// error instead of panicking when i is beyond the last index.
func (c *core) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (raftpb.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return raftpb.Snapshot{}, ErrClosed
	}
	snap, _ := c.ms.Snapshot()
	if i <= snap.Metadata.Index {
		return raftpb.Snapshot{}, raft.ErrSnapOutOfDate
	}
	if last, _ := c.ms.LastIndex(); i > last {
		return raftpb.Snapshot{}, fmt.Errorf("storage: snapshot at %d beyond last index %d: %w", i, last, raft.ErrUnavailable)
	}
	term, err := c.ms.Term(i)
	if err != nil {
		return raftpb.Snapshot{}, err
	}
	snap.Metadata.Index, snap.Metadata.Term, snap.Data = i, term, data
	if cs != nil {
		snap.Metadata.ConfState = *cs
	}
	// The commit index that Save kept in memory only goes with it: it is
	// at least i (only applied entries are snapshotted).
	hs, _, _ := c.ms.InitialState()
	if err := c.persist(change{snap: snap, hs: hs}); err != nil {
		return raftpb.Snapshot{}, err
	}
	c.commitOnly = false
	return c.ms.CreateSnapshot(i, cs, data)
}

// Compact implements Storage. It returns raft.ErrCompacted if i is already
// compacted, and an error (where raft.MemoryStorage would allow it or panic)
// if i is beyond the latest snapshot: compacted entries must stay reachable
// through a snapshot.
func (c *core) Compact(i uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	first, _ := c.ms.FirstIndex()
	if i < first {
		return raft.ErrCompacted
	}
	if snap, _ := c.ms.Snapshot(); i > snap.Metadata.Index {
		return fmt.Errorf("storage: compact to %d beyond the snapshot at %d", i, snap.Metadata.Index)
	}
	term, err := c.ms.Term(i)
	if err != nil {
		return err
	}
	if err := c.persist(change{offset: raftpb.Entry{Index: i, Term: term}}); err != nil {
		return err
	}
	return c.ms.Compact(i)
}

// close marks the storage closed once and runs fn (may be nil) that time.
func (c *core) close(fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var err error
	if c.commitOnly {
		// A clean stop keeps the commit index Save kept in memory.
		hs, _, _ := c.ms.InitialState()
		err = c.persist(change{hs: hs})
		c.commitOnly = false
	}
	if fn != nil {
		err = errors.Join(err, fn())
	}
	return err
}

// image returns the cached state; entries and data are shared, not copied.
// The caller holds c.mu.
func (c *core) image() image {
	c.ms.Lock()
	hs, _, _ := c.ms.InitialState()
	c.ms.Unlock()
	snap, _ := c.ms.Snapshot()
	first, _ := c.ms.FirstIndex()
	last, _ := c.ms.LastIndex()
	term, _ := c.ms.Term(first - 1)
	img := image{hs: hs, snap: snap, offset: raftpb.Entry{Index: first - 1, Term: term}}
	if last >= first {
		img.ents, _ = c.ms.Entries(first, last+1, math.MaxUint64)
	}
	return img
}

// deepCopy returns img with no memory shared with the original.
func (img image) deepCopy() image {
	img.snap.Data = bytes.Clone(img.snap.Data)
	cs := &img.snap.Metadata.ConfState
	cs.Voters, cs.Learners = slices.Clone(cs.Voters), slices.Clone(cs.Learners)
	cs.VotersOutgoing, cs.LearnersNext = slices.Clone(cs.VotersOutgoing), slices.Clone(cs.LearnersNext)
	img.ents = slices.Clone(img.ents)
	for i := range img.ents {
		img.ents[i].Data = bytes.Clone(img.ents[i].Data)
	}
	return img
}

// build checks img and loads it into a new raft.MemoryStorage.
func build(img image) (*raft.MemoryStorage, error) {
	ms := raft.NewMemoryStorage()
	off, sm := img.offset, img.snap.Metadata
	if off.Index > sm.Index || (off.Index == sm.Index && off.Term != sm.Term) {
		return nil, fmt.Errorf("log starts after %d/%d but the snapshot is at %d/%d", off.Index, off.Term, sm.Index, sm.Term)
	}
	for k, e := range img.ents {
		if e.Index != off.Index+1+uint64(k) {
			return nil, fmt.Errorf("entry %d found where %d was expected", e.Index, off.Index+1+uint64(k))
		}
	}
	if off.Index > 0 {
		start := img.snap
		if off.Index < sm.Index {
			// The log reaches back before the snapshot: start it at the
			// offset, then record the snapshot over it below.
			start = raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: off.Index, Term: off.Term, ConfState: sm.ConfState}}
		}
		if err := ms.ApplySnapshot(start); err != nil {
			return nil, err
		}
	}
	if err := ms.Append(img.ents); err != nil {
		return nil, err
	}
	if sm.Index > off.Index {
		if term, err := ms.Term(sm.Index); err != nil || term != sm.Term {
			return nil, fmt.Errorf("snapshot at %d/%d does not match the log (term %d, %v)", sm.Index, sm.Term, term, err)
		}
		if _, err := ms.CreateSnapshot(sm.Index, &sm.ConfState, img.snap.Data); err != nil {
			return nil, err
		}
	}
	if err := ms.SetHardState(img.hs); err != nil {
		return nil, err
	}
	return ms, nil
}
