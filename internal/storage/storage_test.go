package storage

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend opens an empty store; reopen simulates a restart (or a crash) and
// returns what survived.
type backend struct {
	name string
	open func(t *testing.T) (s Storage, reopen func(Storage) Storage)
}

var backends = []backend{
	{"bolt", func(t *testing.T) (Storage, func(Storage) Storage) {
		dir := t.TempDir()
		open := func() Storage {
			t.Helper()
			// No fsync: these tests restart cleanly; TestRaftNode syncs.
			b, err := Open(dir, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		}
		return open(), func(s Storage) Storage {
			t.Helper()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open()
		}
	}},
	{"memory", func(t *testing.T) (Storage, func(Storage) Storage) {
		return NewMemory(), func(s Storage) Storage {
			c := s.(*Memory).Clone()
			_ = s.Close()
			return c
		}
	}},
}

func forEach(t *testing.T, f func(t *testing.T, s Storage, reopen func(Storage) Storage)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s, reopen := b.open(t)
			f(t, s, reopen)
		})
	}
}

func ents(lo, hi, term uint64) []raftpb.Entry {
	var es []raftpb.Entry
	for i := lo; i <= hi; i++ {
		es = append(es, raftpb.Entry{Index: i, Term: term, Data: []byte{byte(i), byte(term)}})
	}
	return es
}

func snap(i, term uint64, data string, voters ...uint64) raftpb.Snapshot {
	return raftpb.Snapshot{Data: []byte(data), Metadata: raftpb.SnapshotMetadata{
		Index: i, Term: term, ConfState: raftpb.ConfState{Voters: voters}}}
}

func mustSave(t *testing.T, s Storage, hs raftpb.HardState, es []raftpb.Entry, sn raftpb.Snapshot) {
	t.Helper()
	if err := s.Save(hs, es, sn); err != nil {
		t.Fatal(err)
	}
}

// state is everything raft can read from a Storage.
type state struct {
	HS          raftpb.HardState
	CS          raftpb.ConfState
	Snap        raftpb.Snapshot
	First, Last uint64
	OffsetTerm  uint64
	Ents        []raftpb.Entry
}

func read(t *testing.T, s raft.Storage) state {
	t.Helper()
	var st state
	var err error
	st.HS, st.CS, _ = s.InitialState()
	st.Snap, _ = s.Snapshot()
	st.First, _ = s.FirstIndex()
	st.Last, _ = s.LastIndex()
	if st.OffsetTerm, err = s.Term(st.First - 1); err != nil {
		t.Fatalf("Term(first-1 = %d): %v", st.First-1, err)
	}
	if st.Last >= st.First {
		if st.Ents, err = s.Entries(st.First, st.Last+1, math.MaxUint64); err != nil {
			t.Fatalf("Entries(%d, %d): %v", st.First, st.Last+1, err)
		}
	}
	return st
}

func same(t *testing.T, what string, got, want state) {
	t.Helper()
	// Normalize nil vs empty slices, which gogo decoding does not preserve.
	norm := func(s state) state {
		if len(s.Snap.Data) == 0 {
			s.Snap.Data = nil
		}
		s.Ents = append([]raftpb.Entry(nil), s.Ents...)
		for i := range s.Ents {
			if len(s.Ents[i].Data) == 0 {
				s.Ents[i].Data = nil
			}
		}
		return s
	}
	if got, want := norm(got), norm(want); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestSaveReopen(t *testing.T) {
	forEach(t, func(t *testing.T, s Storage, reopen func(Storage) Storage) {
		hs := raftpb.HardState{Term: 3, Vote: 2, Commit: 2}
		mustSave(t, s, hs, ents(1, 3, 3), raftpb.Snapshot{})
		before := read(t, s)
		s = reopen(s)
		after := read(t, s)
		same(t, "after reopen", after, before)
		if after.HS != hs || after.First != 1 || after.Last != 3 || len(after.Ents) != 3 {
			t.Fatalf("unexpected state %+v", after)
		}
		if term, err := s.Term(2); err != nil || term != 3 {
			t.Fatalf("Term(2) = %d, %v", term, err)
		}
		// An empty hard state leaves the stored one alone.
		mustSave(t, s, raftpb.HardState{}, ents(4, 4, 3), raftpb.Snapshot{})
		if got, _, _ := reopen(s).InitialState(); got != hs {
			t.Fatalf("hard state %+v, want %+v", got, hs)
		}
	})
}

func TestOverwriteSuffix(t *testing.T) {
	forEach(t, func(t *testing.T, s Storage, reopen func(Storage) Storage) {
		mustSave(t, s, raftpb.HardState{Term: 1, Commit: 3}, ents(1, 5, 1), raftpb.Snapshot{})
		mustSave(t, s, raftpb.HardState{Term: 2, Commit: 3}, ents(4, 6, 2), raftpb.Snapshot{})
		want := append(ents(1, 3, 1), ents(4, 6, 2)...)
		for round := range 2 {
			if round == 1 {
				s = reopen(s)
			}
			st := read(t, s)
			same(t, "log", state{Ents: st.Ents}, state{Ents: want})
			if st.Last != 6 || st.HS.Term != 2 {
				t.Fatalf("state %+v", st)
			}
		}
		// Overwriting with a shorter suffix drops the rest.
		s = reopen(s)
		mustSave(t, s, raftpb.HardState{}, ents(2, 2, 3), raftpb.Snapshot{})
		if last, _ := reopen(s).LastIndex(); last != 2 {
			t.Fatalf("LastIndex = %d, want 2", last)
		}
	})
}

func TestSnapshotViaSave(t *testing.T) {
	forEach(t, func(t *testing.T, s Storage, reopen func(Storage) Storage) {
		mustSave(t, s, raftpb.HardState{Term: 1, Commit: 2}, ents(1, 5, 1), raftpb.Snapshot{})
		sn := snap(10, 2, "app", 1, 2, 3)
		hs := raftpb.HardState{Term: 2, Vote: 1, Commit: 11}
		// The snapshot replaces the log, including entries after its index.
		mustSave(t, s, hs, ents(11, 12, 2), sn)
		for round := range 2 {
			if round == 1 {
				s = reopen(s)
			}
			st := read(t, s)
			if st.First != 11 || st.Last != 12 || st.OffsetTerm != 2 || st.HS != hs {
				t.Fatalf("state %+v", st)
			}
			same(t, "snapshot", state{Snap: st.Snap, CS: st.CS}, state{Snap: sn, CS: sn.Metadata.ConfState})
			if _, err := s.Entries(5, 12, math.MaxUint64); !errors.Is(err, raft.ErrCompacted) {
				t.Fatalf("Entries(5) err = %v, want ErrCompacted", err)
			}
			if _, err := s.Term(9); !errors.Is(err, raft.ErrCompacted) {
				t.Fatalf("Term(9) err = %v, want ErrCompacted", err)
			}
		}
		s = reopen(s)
		// A snapshot alone (no entries) also drops the entries after it.
		mustSave(t, s, raftpb.HardState{}, nil, snap(11, 2, "x", 1))
		st := read(t, reopen(s))
		if st.First != 12 || st.Last != 11 || len(st.Ents) != 0 {
			t.Fatalf("state %+v", st)
		}
	})
}

func TestCreateSnapshotCompact(t *testing.T) {
	forEach(t, func(t *testing.T, s Storage, reopen func(Storage) Storage) {
		mustSave(t, s, raftpb.HardState{Term: 2, Commit: 10}, append(ents(1, 6, 1), ents(7, 10, 2)...), raftpb.Snapshot{})
		cs := &raftpb.ConfState{Voters: []uint64{1, 2}}
		got, err := s.CreateSnapshot(8, cs, []byte("data"))
		if err != nil {
			t.Fatal(err)
		}
		want := snap(8, 2, "data", 1, 2)
		same(t, "created", state{Snap: got}, state{Snap: want})
		// Snapshot without compaction: the log still starts at 1 after reopen.
		s = reopen(s)
		if st := read(t, s); st.First != 1 || st.Last != 10 {
			t.Fatalf("state %+v", st)
		}
		if err := s.Compact(5); err != nil {
			t.Fatal(err)
		}
		for round := range 2 {
			if round == 1 {
				s = reopen(s)
			}
			st := read(t, s)
			if st.First != 6 || st.Last != 10 || st.OffsetTerm != 1 || len(st.Ents) != 5 {
				t.Fatalf("state %+v", st)
			}
			same(t, "snapshot", state{Snap: st.Snap, CS: st.CS}, state{Snap: want, CS: *cs})
			if _, err := s.Entries(3, 7, math.MaxUint64); !errors.Is(err, raft.ErrCompacted) {
				t.Fatalf("Entries(3) err = %v, want ErrCompacted", err)
			}
		}
		s = reopen(s)
		if err := s.Compact(5); !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("Compact(5) again: %v", err)
		}
		if err := s.Compact(9); err == nil {
			t.Fatal("Compact beyond the snapshot succeeded")
		}
		if _, err := s.CreateSnapshot(8, nil, nil); !errors.Is(err, raft.ErrSnapOutOfDate) {
			t.Fatalf("CreateSnapshot(8) again: %v", err)
		}
		if _, err := s.CreateSnapshot(11, nil, nil); !errors.Is(err, raft.ErrUnavailable) {
			t.Fatalf("CreateSnapshot beyond last: %v", err)
		}
		// A nil conf state keeps the previous one.
		if got, err := s.CreateSnapshot(10, nil, []byte("d2")); err != nil || !reflect.DeepEqual(got.Metadata.ConfState, *cs) {
			t.Fatalf("CreateSnapshot(10) = %+v, %v", got, err)
		}
		if err := s.Compact(10); err != nil {
			t.Fatal(err)
		}
		if st := read(t, reopen(s)); st.First != 11 || st.Last != 10 || string(st.Snap.Data) != "d2" {
			t.Fatalf("state %+v", st)
		}
	})
}

func TestInvalidWrites(t *testing.T) {
	forEach(t, func(t *testing.T, s Storage, reopen func(Storage) Storage) {
		mustSave(t, s, raftpb.HardState{Term: 1}, ents(1, 5, 1), raftpb.Snapshot{})
		if _, err := s.CreateSnapshot(3, nil, nil); err != nil {
			t.Fatal(err)
		}
		before := read(t, s)
		hs := raftpb.HardState{Term: 9}
		for name, err := range map[string]error{
			"gap":            s.Save(hs, ents(7, 8, 1), raftpb.Snapshot{}),
			"not contiguous": s.Save(hs, append(ents(6, 6, 1), ents(8, 8, 1)...), raftpb.Snapshot{}),
			"over snapshot":  s.Save(hs, ents(2, 6, 2), raftpb.Snapshot{}),
			"old snapshot":   s.Save(hs, nil, snap(3, 1, "")),
		} {
			if err == nil {
				t.Errorf("%s: Save succeeded", name)
			}
		}
		same(t, "after rejected writes", read(t, reopen(s)), before)
	})
}

func TestCloseTwice(t *testing.T) {
	forEach(t, func(t *testing.T, s Storage, _ func(Storage) Storage) {
		mustSave(t, s, raftpb.HardState{Term: 1}, ents(1, 2, 1), raftpb.Snapshot{})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := s.Save(raftpb.HardState{Term: 2}, nil, raftpb.Snapshot{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Save after Close: %v", err)
		}
		if last, _ := s.LastIndex(); last != 2 {
			t.Fatalf("LastIndex after Close = %d", last)
		}
	})
}

// TestMatchesMemoryStorage runs random valid writes against both backends
// and raft.MemoryStorage, comparing all readable state after each step and
// after restarts.
func TestMatchesMemoryStorage(t *testing.T) {
	forEach(t, func(t *testing.T, s Storage, reopen func(Storage) Storage) {
		rng := rand.New(rand.NewPCG(1, 2))
		ref := raft.NewMemoryStorage()
		term := uint64(1)
		for step := range 300 {
			first, _ := ref.FirstIndex()
			last, _ := ref.LastIndex()
			cur, _ := ref.Snapshot()
			switch op := rng.IntN(10); {
			case op < 6: // append, possibly overwriting a suffix
				term += uint64(rng.IntN(2))
				lo := max(first, cur.Metadata.Index+1, last+1-min(last, uint64(rng.IntN(3))))
				es := ents(lo, lo+uint64(rng.IntN(4)), term)
				hs := raftpb.HardState{Term: term, Vote: uint64(rng.IntN(3)), Commit: lo - 1}
				mustSave(t, s, hs, es, raftpb.Snapshot{})
				_ = ref.Append(es)
				_ = ref.SetHardState(hs)
			case op < 8 && last > cur.Metadata.Index: // snapshot, sometimes compact
				i := cur.Metadata.Index + 1 + uint64(rng.IntN(int(last-cur.Metadata.Index)))
				cs := &raftpb.ConfState{Voters: []uint64{uint64(step)}}
				if _, err := s.CreateSnapshot(i, cs, []byte{byte(step)}); err != nil {
					t.Fatal(err)
				}
				_, _ = ref.CreateSnapshot(i, cs, []byte{byte(step)})
				if rng.IntN(2) == 0 && i >= first {
					c := first + uint64(rng.IntN(int(i-first+1)))
					if err := s.Compact(c); err != nil {
						t.Fatal(err)
					}
					_ = ref.Compact(c)
				}
			case op == 8: // snapshot from a leader
				term++
				sn := snap(last+1+uint64(rng.IntN(3)), term, "leader", 1, 2)
				mustSave(t, s, raftpb.HardState{Term: term, Commit: sn.Metadata.Index}, nil, sn)
				_ = ref.ApplySnapshot(sn)
				_ = ref.SetHardState(raftpb.HardState{Term: term, Commit: sn.Metadata.Index})
			default:
				s = reopen(s)
			}
			same(t, "vs raft.MemoryStorage", read(t, s), read(t, ref))
		}
		same(t, "final reopen", read(t, reopen(s)), read(t, ref))
	})
}

// TestConcurrentReads reads while another goroutine writes (run with -race),
// and checks that a write stalled in BeforeSync is not yet visible.
func TestConcurrentReads(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	stall := false
	b, err := Open(t.TempDir(), Options{NoSync: true, BeforeSync: func() {
		if stall {
			entered <- struct{}{}
			<-release
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, s := range []Storage{b, NewMemory()} {
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := uint64(1); i <= 200; i++ {
				if err := s.Save(raftpb.HardState{Term: i, Commit: i - 1}, ents(i, i, i), raftpb.Snapshot{}); err != nil {
					t.Error(err)
				}
				if i%50 == 0 {
					if _, err := s.CreateSnapshot(i-10, nil, nil); err != nil {
						t.Error(err)
					}
					if err := s.Compact(i - 20); err != nil {
						t.Error(err)
					}
				}
			}
		})
		for range 200 {
			hs, _, _ := s.InitialState()
			last, _ := s.LastIndex()
			first, _ := s.FirstIndex()
			_, _ = s.Snapshot()
			if last >= first {
				if _, err := s.Entries(first, last+1, 100); err != nil && !errors.Is(err, raft.ErrCompacted) {
					t.Error(err)
				}
			}
			if hs.Term > 0 && last < hs.Commit {
				t.Errorf("commit %d beyond last %d", hs.Commit, last)
			}
		}
		wg.Wait()
	}

	stall = true
	done := make(chan error)
	go func() { done <- b.Save(raftpb.HardState{Term: 500}, ents(201, 201, 500), raftpb.Snapshot{}) }()
	<-entered
	if last, _ := b.LastIndex(); last != 200 {
		t.Errorf("LastIndex during a stalled Save = %d, want 200", last)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if last, _ := b.LastIndex(); last != 201 {
		t.Errorf("LastIndex after Save = %d, want 201", last)
	}
}

func TestMemoryCloneIndependent(t *testing.T) {
	m := NewMemory()
	es := ents(1, 3, 1)
	mustSave(t, m, raftpb.HardState{Term: 1, Commit: 1}, es, raftpb.Snapshot{})
	if _, err := m.CreateSnapshot(1, &raftpb.ConfState{Voters: []uint64{1}}, []byte("s")); err != nil {
		t.Fatal(err)
	}
	c := m.Clone()
	want := read(t, c)
	same(t, "clone", want, read(t, m))

	// Changes to the original, including through shared buffers, do not
	// reach the clone...
	es[1].Data[0] = 99
	orig, _ := m.Snapshot()
	orig.Data[0] = 'X'
	orig.Metadata.ConfState.Voters[0] = 7
	mustSave(t, m, raftpb.HardState{Term: 2, Commit: 2}, ents(3, 5, 2), raftpb.Snapshot{})
	if err := m.Compact(1); err != nil {
		t.Fatal(err)
	}
	_ = m.Close()
	got := read(t, c)
	if got.Ents[1].Data[0] != 2 || string(got.Snap.Data) != "s" || got.CS.Voters[0] != 1 {
		t.Fatalf("clone changed through shared memory: %+v", got)
	}
	same(t, "clone after original changed", got, want)

	// ...and the clone is open and writable on its own.
	mustSave(t, c, raftpb.HardState{Term: 3}, ents(2, 2, 3), raftpb.Snapshot{})
	if last, _ := c.LastIndex(); last != 2 {
		t.Fatalf("clone LastIndex = %d", last)
	}
	if last, _ := m.LastIndex(); last != 5 {
		t.Fatalf("original LastIndex = %d", last)
	}
}

// TestRaftNode drives a real single-voter raft.RawNode on Bolt, restarts it,
// and checks that the term, vote and log survived.
func TestRaftNode(t *testing.T) {
	dir := t.TempDir()
	start := func(bootstrap bool) (*Bolt, *raft.RawNode) {
		b, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: b,
			MaxSizePerMsg: math.MaxUint64, MaxInflightMsgs: 16, Logger: discardRaftLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		if bootstrap {
			if err := rn.Bootstrap([]raft.Peer{{ID: 1}}); err != nil {
				t.Fatal(err)
			}
		}
		return b, rn
	}
	drain := func(b *Bolt, rn *raft.RawNode) {
		for rn.HasReady() {
			rd := rn.Ready()
			mustSave(t, b, rd.HardState, rd.Entries, rd.Snapshot)
			for _, e := range rd.CommittedEntries {
				if e.Type == raftpb.EntryConfChange {
					var cc raftpb.ConfChange
					if err := cc.Unmarshal(e.Data); err != nil {
						t.Fatal(err)
					}
					rn.ApplyConfChange(cc)
				}
			}
			rn.Advance(rd)
		}
	}

	b, rn := start(true)
	drain(b, rn)
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	drain(b, rn)
	if err := rn.Propose([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	drain(b, rn)
	st := rn.Status()
	if st.RaftState != raft.StateLeader {
		t.Fatalf("not leader: %v", st.RaftState)
	}
	_ = b.Close()

	b, rn = start(false)
	defer b.Close()
	if got := rn.Status(); got.Term != st.Term || got.Vote != 1 || got.Commit != st.Commit {
		t.Fatalf("after restart: term %d vote %d commit %d, want term %d vote 1 commit %d",
			got.Term, got.Vote, got.Commit, st.Term, st.Commit)
	}
	last, _ := b.LastIndex()
	if es, err := b.Entries(last, last+1, math.MaxUint64); err != nil || string(es[0].Data) != "hello" {
		t.Fatalf("last entry %v, %v", es, err)
	}
}

type discardRaftLogger struct{}

func (discardRaftLogger) Debug(...any)              {}
func (discardRaftLogger) Debugf(string, ...any)     {}
func (discardRaftLogger) Error(...any)              {}
func (discardRaftLogger) Errorf(string, ...any)     {}
func (discardRaftLogger) Info(...any)               {}
func (discardRaftLogger) Infof(string, ...any)      {}
func (discardRaftLogger) Warning(...any)            {}
func (discardRaftLogger) Warningf(string, ...any)   {}
func (discardRaftLogger) Fatal(v ...any)            { panic(v) }
func (discardRaftLogger) Fatalf(f string, v ...any) { panic(f) }
func (discardRaftLogger) Panic(v ...any)            { panic(v) }
func (discardRaftLogger) Panicf(f string, v ...any) { panic(f) }
