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
