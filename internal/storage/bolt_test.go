package storage

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3/raftpb"
)

func TestOpenLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "node") // created by Open
	b, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode: %v, %v", fi.Mode(), err)
	}
	start := time.Now()
	b2, err := Open(dir, Options{NoSync: true})
	if !errors.Is(err, ErrLocked) {
		if b2 != nil {
			_ = b2.Close()
		}
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	t.Log(err)
}

// tamper edits a stored file directly.
func tamper(t *testing.T, dir string, f func(meta, ents *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return f(tx.Bucket(metaBucket), tx.Bucket(entriesBucket))
	}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCorrupt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	snapBytes, _ := (&raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 50, Term: 1}}).Marshal()
	cases := map[string]func(t *testing.T, dir string){
		"garbage file": func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, FileName), garbage, 0o600)
		},
		"short file": func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, FileName), []byte("not a database"), 0o600)
		},
		"damaged pages": func(t *testing.T, dir string) {
			path := filepath.Join(dir, FileName)
			data, _ := os.ReadFile(path)
			copy(data[2*4096:], garbage) // keep the meta pages, smash the rest
			_ = os.WriteFile(path, data, 0o600)
		},
		"undecodable hard state": func(t *testing.T, dir string) {
			tamper(t, dir, func(meta, _ *bolt.Bucket) error { return meta.Put(hardStateKey, []byte{0xff, 0xff, 0xff}) })
		},
		"undecodable entry": func(t *testing.T, dir string) {
			tamper(t, dir, func(_, ents *bolt.Bucket) error { return ents.Put(key(3), []byte{0xff, 0xff}) })
		},
		"entry under the wrong key": func(t *testing.T, dir string) {
			tamper(t, dir, func(_, ents *bolt.Bucket) error { return ents.Put(key(30), ents.Get(key(3))) })
		},
		"missing entry": func(t *testing.T, dir string) {
			tamper(t, dir, func(_, ents *bolt.Bucket) error { return ents.Delete(key(3)) })
		},
		"snapshot beyond the log": func(t *testing.T, dir string) {
			tamper(t, dir, func(meta, _ *bolt.Bucket) error { return meta.Put(snapshotKey, snapBytes) })
		},
		"unknown format": func(t *testing.T, dir string) {
			tamper(t, dir, func(meta, _ *bolt.Bucket) error { return meta.Put(formatKey, []byte{9}) })
		},
		"missing bucket": func(t *testing.T, dir string) {
			db, _ := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
			_ = db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(entriesBucket) })
			_ = db.Close()
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			b, err := Open(dir, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			for i := uint64(1); i <= 20; i++ {
				// Big entries so the file spans many pages.
				e := raftpb.Entry{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 2000)}
				mustSave(t, b, raftpb.HardState{Term: 1, Commit: i}, []raftpb.Entry{e}, raftpb.Snapshot{})
			}
			_ = b.Close()
			damage(t, dir)
			for range 2 { // a failed Open must not leave the file locked
				b, err := Open(dir, Options{NoSync: true})
				if err == nil {
					_ = b.Close()
					t.Fatal("Open succeeded on a damaged file")
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open: %v, want ErrCorrupt", err)
				}
				t.Log(err)
			}
		})
	}
}

func TestBeforeSyncAndLogger(t *testing.T) {
	var calls int
	var logs bytes.Buffer
	b, err := Open(t.TempDir(), Options{
		BeforeSync: func() { calls++ },
		Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, b, raftpb.HardState{Term: 1}, ents(1, 2, 1), raftpb.Snapshot{})
	if _, err := b.CreateSnapshot(2, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Compact(1); err != nil {
		t.Fatal(err)
	}
	// Nothing to write: no transaction. A rejected write never reaches the disk.
	if err := b.Save(raftpb.HardState{}, ents(1, 1, 1), raftpb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(raftpb.HardState{}, ents(9, 9, 1), raftpb.Snapshot{}); err == nil {
		t.Fatal("Save with a gap succeeded")
	}
	if calls != 3 {
		t.Fatalf("BeforeSync called %d times, want 3", calls)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logs.Bytes(), []byte("raft storage opened")) || !bytes.Contains(logs.Bytes(), []byte("raft storage closed")) {
		t.Fatalf("logs: %s", logs.String())
	}
}

func TestOnSaveReportsEveryWrite(t *testing.T) {
	var got []time.Duration
	b, err := Open(t.TempDir(), Options{OnSave: func(d time.Duration) { got = append(got, d) }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hs := raftpb.HardState{Term: 2, Vote: 1, Commit: 0}
	if err := b.Save(hs, nil, raftpb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(raftpb.HardState{}, nil, raftpb.Snapshot{}); err != nil { // nothing to write
		t.Fatal(err)
	}
	ents := []raftpb.Entry{{Index: 1, Term: 2}, {Index: 2, Term: 2}}
	if err := b.Save(raftpb.HardState{}, ents, raftpb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("OnSave called %d times, want 2 (one per durable write)", len(got))
	}
	for _, d := range got {
		if d <= 0 {
			t.Errorf("OnSave reported %v", d)
		}
	}
}

// crashCopy returns a directory holding the bytes b's file holds now, as
// if the process died here (without Close).
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	cp := t.TempDir()
	if err := os.WriteFile(filepath.Join(cp, FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestCommitOnlySave: a Save that only moves the commit index writes
// nothing (no transaction, no fsync: it would be on the path of every
// commit); a change of term or vote is written at once; CreateSnapshot
// and Close write the commit index kept in memory, so that a restart never
// finds a durable commit below its snapshot (raft would refuse to start).
func TestCommitOnlySave(t *testing.T) {
	dir := t.TempDir()
	writes := 0
	b, err := Open(dir, Options{BeforeSync: func() { writes++ }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mustSave(t, b, raftpb.HardState{Term: 2, Vote: 1, Commit: 1}, ents(1, 5, 2), raftpb.Snapshot{})
	n := writes
	mustSave(t, b, raftpb.HardState{Term: 2, Vote: 1, Commit: 4}, nil, raftpb.Snapshot{})
	if writes != n {
		t.Errorf("a commit-only Save wrote %d transactions", writes-n)
	}
	if hs, _, _ := b.InitialState(); hs.Commit != 4 {
		t.Errorf("in memory: commit %d, want 4", hs.Commit)
	}
	mustSave(t, b, raftpb.HardState{Term: 3, Vote: 0, Commit: 4}, nil, raftpb.Snapshot{})
	if writes != n+1 {
		t.Errorf("a new term was not written at once (%d transactions)", writes-n)
	}
	mustSave(t, b, raftpb.HardState{Term: 3, Vote: 2, Commit: 5}, nil, raftpb.Snapshot{})
	if writes != n+2 {
		t.Errorf("a new vote was not written at once (%d transactions)", writes-n)
	}
	reopen := func(d string) raftpb.HardState {
		t.Helper()
		c, err := Open(d, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hs, _, _ := c.InitialState()
		return hs
	}
	if hs := reopen(crashCopy(t, dir)); hs.Term != 3 || hs.Vote != 2 || hs.Commit != 5 {
		t.Errorf("after a crash: %+v, want term 3 vote 2 commit 5", hs)
	}
	mustSave(t, b, raftpb.HardState{Term: 3, Vote: 2, Commit: 5}, nil, raftpb.Snapshot{})
	mustSave(t, b, raftpb.HardState{Term: 3, Vote: 2, Commit: 5}, ents(6, 8, 3), raftpb.Snapshot{})
	mustSave(t, b, raftpb.HardState{Term: 3, Vote: 2, Commit: 8}, nil, raftpb.Snapshot{})
	if hs := reopen(crashCopy(t, dir)); hs.Commit != 5 {
		t.Errorf("after a crash: commit %d, want the last written, 5", hs.Commit)
	}
	if _, err := b.CreateSnapshot(7, nil, []byte("app")); err != nil {
		t.Fatal(err)
	}
	if hs := reopen(crashCopy(t, dir)); hs.Commit < 7 {
		t.Errorf("after a crash past a snapshot at 7: durable commit %d", hs.Commit)
	}
	mustSave(t, b, raftpb.HardState{Term: 3, Vote: 2, Commit: 8}, ents(9, 10, 3), raftpb.Snapshot{})
	mustSave(t, b, raftpb.HardState{Term: 3, Vote: 2, Commit: 10}, nil, raftpb.Snapshot{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if hs := reopen(dir); hs.Commit != 10 {
		t.Errorf("after Close: commit %d, want 10", hs.Commit)
	}
}
