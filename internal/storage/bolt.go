package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// FileName is the name of the data file inside the data directory.
const FileName = "raft.db"

// lockTimeout bounds how long Open waits for another process's file lock.
const lockTimeout = time.Second

var (
	entriesBucket = []byte("entries") // 8-byte big-endian index -> raftpb.Entry
	metaBucket    = []byte("meta")
	formatKey     = []byte("format")    // formatV1
	hardStateKey  = []byte("hardstate") // raftpb.HardState
	snapshotKey   = []byte("snapshot")  // raftpb.Snapshot
	offsetKey     = []byte("offset")    // raftpb.Entry: index and term of the entry before the first one
	formatV1      = []byte{1}
)

// Options tune Open.
type Options struct {
	// NoSync skips fsync (tests that do not exercise crash durability).
	// Default false.
	NoSync bool
	// BeforeSync, if set, is called inside every write transaction just
	// before its commit (which fsyncs): a fault hook that tests use to
	// simulate a slow or stalled disk.
	BeforeSync func()
	// OnSave, if set, is called after every successful durable write (one
	// bbolt transaction, committed and fsynced: Save, CreateSnapshot or
	// Compact) with how long it took. It runs on the writing goroutine and
	// must not block: metrics record it.
	OnSave func(time.Duration)
	// Logger receives open/close events; nil discards them.
	Logger *slog.Logger
}

// Bolt is a Storage kept in a bbolt file, with every read served from memory.
type Bolt struct {
	core
	db   *bolt.DB
	opts Options
	log  *slog.Logger
}

var _ Storage = (*Bolt)(nil)

// Open opens dir/raft.db, creating dir (mode 0700) and the file if missing,
// and loads the stored state into memory. It fails with an error wrapping
// ErrLocked if another process holds the file (after waiting about a second),
// and with one wrapping ErrCorrupt if the file cannot be decoded.
func Open(dir string, opts Options) (*Bolt, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	path := filepath.Join(dir, FileName)
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	db, ms, err := openState(path, opts.NoSync)
	if err != nil {
		return nil, err
	}
	if created && !opts.NoSync {
		if err := syncDir(dir); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("storage: %w", err)
		}
	}
	b := &Bolt{core: core{ms: ms}, db: db, opts: opts, log: log}
	b.persist = b.persistChange
	hs, _, _ := b.InitialState()
	first, _ := ms.FirstIndex()
	last, _ := ms.LastIndex()
	log.Info("raft storage opened", "path", path, "created", created,
		"term", hs.Term, "vote", hs.Vote, "commit", hs.Commit, "first", first, "last", last)
	return b, nil
}

// openState opens the bbolt file and loads it. bbolt panics on some damaged
// files; that is reported as ErrCorrupt too, and the file is left unlocked.
func openState(path string, noSync bool) (db *bolt.DB, ms *raft.MemoryStorage, err error) {
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			} else if file != nil { // bbolt panicked inside Open
				unlock(file)
				_ = file.Close()
			}
			db, ms, err = nil, nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, NoSync: noSync, OpenFile: openFile})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, fmt.Errorf("%w: %s", ErrLocked, path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	case err != nil:
		return nil, nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	fail := func(err error) (*bolt.DB, *raft.MemoryStorage, error) {
		_ = db.Close()
		return nil, nil, err
	}
	var fresh bool
	_ = db.View(func(tx *bolt.Tx) error { fresh = tx.Bucket(metaBucket) == nil; return nil })
	if fresh {
		if err := db.Update(initBuckets); err != nil {
			return fail(fmt.Errorf("storage: init %s: %w", path, err))
		}
	}
	var img image
	err = db.View(func(tx *bolt.Tx) (err error) {
		img, err = load(tx)
		return err
	})
	if err == nil {
		ms, err = build(img)
	}
	if err != nil {
		return fail(fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err))
	}
	return db, ms, nil
}

// initBuckets sets up a new file.
func initBuckets(tx *bolt.Tx) error {
	meta, err := tx.CreateBucket(metaBucket)
	if err == nil {
		_, err = tx.CreateBucketIfNotExists(entriesBucket)
	}
	if err == nil {
		err = meta.Put(formatKey, formatV1)
	}
	return err
}

// load reads the whole stored state.
func load(tx *bolt.Tx) (img image, err error) {
	meta, ents := tx.Bucket(metaBucket), tx.Bucket(entriesBucket)
	if meta == nil || ents == nil {
		return img, errors.New("missing buckets")
	}
	if v := meta.Get(formatKey); !bytes.Equal(v, formatV1) {
		return img, fmt.Errorf("unknown format %x", v)
	}
	for name, dst := range map[string]interface{ Unmarshal([]byte) error }{
		string(hardStateKey): &img.hs, string(snapshotKey): &img.snap, string(offsetKey): &img.offset,
	} {
		if v := meta.Get([]byte(name)); v != nil {
			if err := dst.Unmarshal(v); err != nil {
				return img, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	err = ents.ForEach(func(k, v []byte) error {
		var e raftpb.Entry
		if err := e.Unmarshal(v); err != nil {
			return fmt.Errorf("entry %x: %w", k, err)
		}
		if !bytes.Equal(k, key(e.Index)) {
			return fmt.Errorf("entry %d stored under key %x", e.Index, k)
		}
		img.ents = append(img.ents, e)
		return nil
	})
	return img, err
}

// persistChange writes ch in one transaction, committed (and fsynced) before
// it returns.
func (b *Bolt) persistChange(ch change) error {
	start := time.Now()
	err := b.db.Update(func(tx *bolt.Tx) (err error) {
		meta, ents := tx.Bucket(metaBucket), tx.Bucket(entriesBucket)
		put := func(bk *bolt.Bucket, k []byte, v interface{ Marshal() ([]byte, error) }) {
			var data []byte
			if err == nil {
				if data, err = v.Marshal(); err == nil {
					err = bk.Put(k, data)
				}
			}
		}
		if ch.offset.Index > 0 {
			to := key(ch.offset.Index + 1)
			if ch.reset {
				to = nil
			}
			err = deleteRange(ents, nil, to)
			put(meta, offsetKey, &ch.offset)
		}
		if len(ch.ents) > 0 && err == nil {
			err = deleteRange(ents, key(ch.ents[0].Index), nil)
		}
		for i := range ch.ents {
			put(ents, key(ch.ents[i].Index), &ch.ents[i])
		}
		if !raft.IsEmptySnap(ch.snap) {
			put(meta, snapshotKey, &ch.snap)
		}
		if !raft.IsEmptyHardState(ch.hs) {
			put(meta, hardStateKey, &ch.hs)
		}
		if err == nil && b.opts.BeforeSync != nil {
			b.opts.BeforeSync()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: write: %w", err)
	}
	if b.opts.OnSave != nil {
		b.opts.OnSave(time.Since(start))
	}
	return nil
}

// Close closes the file. Reads keep working from memory; writes fail with
// ErrClosed. A second Close returns nil.
func (b *Bolt) Close() error {
	return b.close(func() error {
		path := b.db.Path()
		err := b.db.Close()
		if err != nil {
			b.log.Warn("raft storage closed with an error", "path", path, "err", err)
		} else {
			b.log.Debug("raft storage closed", "path", path)
		}
		return err
	})
}

// key encodes an index so that byte order is index order.
func key(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

// deleteRange deletes the keys in [from, to); nil bounds are open.
func deleteRange(b *bolt.Bucket, from, to []byte) error {
	c := b.Cursor()
	seek := func() []byte {
		if from == nil {
			k, _ := c.First()
			return k
		}
		k, _ := c.Seek(from)
		return k
	}
	// Seek again after each delete: bbolt cursors may skip keys when Next
	// follows Delete.
	for k := seek(); k != nil && (to == nil || bytes.Compare(k, to) < 0); k = seek() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// syncDir makes a newly created file's directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
