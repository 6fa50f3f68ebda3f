package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// feeder gives entries consecutive indices.
type feeder struct {
	t     testing.TB
	s     *Store
	index uint64
}

func newFeeder(t testing.TB, opts Options) *feeder { return &feeder{t: t, s: New(opts)} }

func (f *feeder) entry(e raftpb.Entry) []Result {
	f.index++
	e.Index, e.Term = f.index, 1
	return f.s.Apply(e)
}

func (f *feeder) op(op Op) Result {
	f.t.Helper()
	data, err := EncodeOp(op)
	if err != nil {
		f.t.Fatalf("EncodeOp(%+v): %v", op, err)
	}
	rs := f.entry(raftpb.Entry{Type: raftpb.EntryNormal, Data: data})
	if len(rs) != 1 {
		f.t.Fatalf("Apply(%+v) gave %d results", op, len(rs))
	}
	return rs[0]
}

func (f *feeder) put(key, value string) Result {
	return f.op(Op{Type: OpPut, Key: key, Value: []byte(value)})
}

func (f *feeder) removeV1(id uint64) {
	f.t.Helper()
	data, err := (&raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: id}).Marshal()
	if err != nil {
		f.t.Fatal(err)
	}
	f.entry(raftpb.Entry{Type: raftpb.EntryConfChange, Data: data})
}

func (f *feeder) confV2(changes ...raftpb.ConfChangeSingle) {
	f.t.Helper()
	data, err := (&raftpb.ConfChangeV2{Changes: changes}).Marshal()
	if err != nil {
		f.t.Fatal(err)
	}
	f.entry(raftpb.Entry{Type: raftpb.EntryConfChangeV2, Data: data})
}

func TestApplyOps(t *testing.T) {
	type step struct {
		op        Op
		succeeded bool
		err       error
		rev       uint64 // store revision after
		kvMod     uint64 // Result.KV.ModRevision (0: KV nil)
		prevMod   uint64 // Result.Prev.ModRevision (0: Prev nil)
	}
	put := func(k, v string) Op { return Op{Type: OpPut, Key: k, Value: []byte(v)} }
	cas := func(op Op, rev uint64) Op { op.Compare, op.ModRevision = true, rev; return op }
	del := func(k string) Op { return Op{Type: OpDelete, Key: k} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"put then overwrite", []step{
			{put("a", "1"), true, nil, 1, 1, 0},
			{put("a", "2"), true, nil, 2, 2, 1},
		}},
		{"create if absent", []step{
			{cas(put("a", "1"), 0), true, nil, 1, 1, 0},
			{cas(put("a", "2"), 0), false, nil, 1, 1, 0}, // KV: the current key
		}},
		{"compare on mod revision", []step{
			{put("a", "1"), true, nil, 1, 1, 0},
			{put("b", "1"), true, nil, 2, 2, 0},
			{cas(put("a", "2"), 2), false, nil, 2, 1, 0},
			{cas(put("a", "2"), 1), true, nil, 3, 3, 1},
			{cas(del("a"), 1), false, nil, 3, 3, 0},
			{cas(del("a"), 3), true, nil, 4, 0, 3},
		}},
		{"compare on an absent key", []step{
			{cas(put("a", "1"), 5), false, nil, 0, 0, 0},
			{cas(del("a"), 0), false, ErrNotFound, 0, 0, 0},
		}},
		{"delete", []step{
			{del("a"), false, ErrNotFound, 0, 0, 0},
			{put("a", "1"), true, nil, 1, 1, 0},
			{del("a"), true, nil, 2, 0, 1},
			{del("a"), false, ErrNotFound, 2, 0, 0},
			{put("a", "1"), true, nil, 3, 3, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFeeder(t, Options{})
			for i, st := range tt.steps {
				st.op.ReqID = uint64(i + 100)
				r := f.op(st.op)
				if r.Succeeded != st.succeeded || !errors.Is(r.Err, st.err) || (st.err == nil && r.Err != nil) {
					t.Fatalf("step %d %+v: succeeded=%v err=%v, want %v %v", i, st.op, r.Succeeded, r.Err, st.succeeded, st.err)
				}
				if r.Revision != st.rev || f.s.Revision() != st.rev {
					t.Fatalf("step %d: revision %d (store %d), want %d", i, r.Revision, f.s.Revision(), st.rev)
				}
				if r.ReqID != st.op.ReqID || r.Index != f.index {
					t.Fatalf("step %d: ReqID %d index %d, want %d %d", i, r.ReqID, r.Index, st.op.ReqID, f.index)
				}
				if got := modOf(r.KV); got != st.kvMod {
					t.Fatalf("step %d: KV mod revision %d, want %d", i, got, st.kvMod)
				}
				if got := modOf(r.Prev); got != st.prevMod {
					t.Fatalf("step %d: Prev mod revision %d, want %d", i, got, st.prevMod)
				}
			}
		})
	}
}

// TestTermFence: an op fenced to a term applies only from an entry of that
// term.
func TestTermFence(t *testing.T) {
	s := New(Options{})
	put := func(index, entryTerm, opTerm uint64) Result {
		data := mustEncode(t, Op{Type: OpPut, Key: "a", Value: []byte("v"), Term: opTerm, ReqID: index})
		return s.Apply(raftpb.Entry{Index: index, Term: entryTerm, Type: raftpb.EntryNormal, Data: data})[0]
	}
	if r := put(1, 3, 2); !errors.Is(r.Err, ErrStaleTerm) || r.Succeeded || s.Revision() != 0 {
		t.Fatalf("op of term 2 in an entry of term 3: %+v", r)
	}
	if r := put(2, 3, 3); !r.Succeeded || s.Revision() != 1 {
		t.Fatalf("op of term 3 in an entry of term 3: %+v", r)
	}
	if r := put(3, 4, 0); !r.Succeeded || s.Revision() != 2 {
		t.Fatalf("unfenced op: %+v", r)
	}
}

func modOf(kv *KeyValue) uint64 {
	if kv == nil {
		return 0
	}
	return kv.ModRevision
}

func TestRevisionsAndVersions(t *testing.T) {
	f := newFeeder(t, Options{})
	f.put("a", "1")
	f.put("b", "1")
	f.put("a", "2")
	kv, ok, rev := f.s.Get("a")
	if !ok || rev != 3 || kv.CreateRevision != 1 || kv.ModRevision != 3 || kv.Version != 2 || string(kv.Value) != "2" {
		t.Fatalf("Get(a) = %+v %v %d", kv, ok, rev)
	}
	kv.Value[0] = 'x' // a copy
	if kv, _, _ := f.s.Get("a"); string(kv.Value) != "2" {
		t.Fatalf("Get handed out the store's memory")
	}
	f.op(Op{Type: OpDelete, Key: "a"})
	f.put("a", "3")
	kv, _, _ = f.s.Get("a")
	if kv.CreateRevision != 5 || kv.Version != 1 {
		t.Fatalf("recreated key: %+v", kv)
	}
	if _, ok, _ := f.s.Get("zz"); ok {
		t.Fatalf("Get of an absent key")
	}
	// Entries that are not KV ops move only the applied index.
	reg := f.entry(raftpb.Entry{Type: raftpb.EntryNormal, Data: []byte(`R{"op":"metadata"}`)})
	empty := f.entry(raftpb.Entry{Type: raftpb.EntryNormal})
	if reg != nil || empty != nil || f.s.Revision() != 5 || f.s.AppliedIndex() != f.index {
		t.Fatalf("foreign entries: %v %v rev %d applied %d/%d", reg, empty, f.s.Revision(), f.s.AppliedIndex(), f.index)
	}
	// Entries at or below the applied index are skipped.
	data, _ := EncodeOp(Op{Type: OpPut, Key: "old", Value: []byte("x")})
	if rs := f.s.Apply(raftpb.Entry{Index: f.index, Type: raftpb.EntryNormal, Data: data}); rs != nil || f.s.Revision() != 5 {
		t.Fatalf("an entry applied twice: %v", rs)
	}
}

func TestList(t *testing.T) {
	f := newFeeder(t, Options{})
	for _, k := range []string{"b/2", "a", "b/1", "b", "c", "\x00lock/x", "b/3"} {
		f.put(k, k)
	}
	keys := func(kvs []KeyValue) string {
		var out []string
		for _, kv := range kvs {
			out = append(out, kv.Key)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		prefix string
		limit  int
		want   string
	}{
		{"", 0, "a,b,b/1,b/2,b/3,c"},
		{"b/", 0, "b/1,b/2,b/3"},
		{"b", 2, "b,b/1"},
		{"d", 0, ""},
		{"\x00", 0, "\x00lock/x"},
		{"\x00lock/", 0, "\x00lock/x"},
	}
	for _, tt := range tests {
		kvs, rev := f.s.List(tt.prefix, tt.limit)
		if got := keys(kvs); got != tt.want || rev != 7 {
			t.Errorf("List(%q, %d) = %q @%d, want %q @7", tt.prefix, tt.limit, got, rev, tt.want)
		}
	}
}

func TestEncodeOpChecks(t *testing.T) {
	big := strings.Repeat("k", MaxKeySize+1)
	tests := []struct {
		op   Op
		want error
	}{
		{Op{Type: OpPut, Key: ""}, ErrInvalidKey},
		{Op{Type: OpPut, Key: big}, ErrTooLarge},
		{Op{Type: OpPut, Key: strings.Repeat("k", MaxKeySize)}, nil},
		{Op{Type: OpPut, Key: "a\x00b"}, ErrInvalidKey},
		{Op{Type: OpPut, Key: "\x00"}, ErrInvalidKey},
		{Op{Type: OpPut, Key: "\x00\x00"}, ErrInvalidKey},
		{Op{Type: OpPut, Key: "\x00lock/a"}, nil},
		{Op{Type: OpPut, Key: "\xff"}, ErrInvalidKey},
		{Op{Type: OpPut, Key: "a", Value: make([]byte, MaxValueSize+1)}, ErrTooLarge},
		{Op{Type: OpPut, Key: "a", Value: make([]byte, MaxValueSize)}, nil},
		{Op{Type: OpDelete, Key: "a", Value: []byte("x")}, ErrMalformed},
		{Op{Type: OpDelete, Key: "a", Owner: 3}, ErrMalformed},
		{Op{Type: OpPut, Key: "a", ModRevision: 3}, ErrMalformed},
		{Op{Type: 9, Key: "a"}, ErrUnknownOp},
	}
	for _, tt := range tests {
		b, err := EncodeOp(tt.op)
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("EncodeOp(%q...): %v, want %v", trim(tt.op.Key), err, tt.want)
			continue
		}
		if err == nil {
			got, err := DecodeOp(b)
			if err != nil || got.Key != tt.op.Key || len(got.Value) != len(tt.op.Value) {
				t.Errorf("round trip of %q: %v", trim(tt.op.Key), err)
			}
		}
	}
}

func trim(s string) string {
	if len(s) > 10 {
		return s[:10] + "..."
	}
	return s
}

func TestDecodeOpRefuses(t *testing.T) {
	good, _ := EncodeOp(Op{Type: OpPut, Key: "a", Value: []byte("v"), Compare: true, ModRevision: 7, Owner: 9, ReqID: 3})
	op, err := DecodeOp(good)
	if want := (Op{Type: OpPut, Key: "a", Value: []byte("v"), Compare: true, ModRevision: 7, Owner: 9, ReqID: 3}); err != nil || !reflect.DeepEqual(op, want) {
		t.Fatalf("DecodeOp(good) = %+v, %v", op, err)
	}
	// A value length over the limit is refused before anything is read.
	huge := []byte{Kind, byte(OpPut), 0, 0, 0, 0, 0, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0x0f}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotKV},
		{"registry", []byte("R{}"), ErrNotKV},
		{"short", []byte{Kind, 1}, ErrMalformed},
		{"unknown op", append([]byte{Kind, 7}, good[2:]...), ErrUnknownOp},
		{"unknown flag", append([]byte{Kind, 1, 0x80}, good[3:]...), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(good), 0), ErrMalformed},
		{"huge value", huge, ErrTooLarge},
	}
	for _, tt := range tests {
		if _, err := DecodeOp(tt.data); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestQuota(t *testing.T) {
	f := newFeeder(t, Options{Quota: 10})
	if r := f.put("abc", "1234567"); !r.Succeeded { // 10 bytes: at the quota
		t.Fatalf("put at the quota: %+v", r)
	}
	if r := f.put("d", ""); !errors.Is(r.Err, ErrQuota) || r.Succeeded || f.s.Revision() != 1 {
		t.Fatalf("put over the quota: %+v rev %d", r, f.s.Revision())
	}
	if r := f.put("abc", "123"); !r.Succeeded { // shrinking
		t.Fatalf("shrinking put: %+v", r)
	}
	if r := f.put("d", "12"); !r.Succeeded { // 6+3 = 9
		t.Fatalf("put under the quota: %+v", r)
	}
	if r := f.put("d", "123"); !r.Succeeded { // replacing counts the old value out: 10
		t.Fatalf("replacing put at the quota: %+v", r)
	}
	if r := f.put("d", "1234"); !errors.Is(r.Err, ErrQuota) {
		t.Fatalf("replacing put over the quota: %+v", r)
	}
	if keys, b := f.s.Stats(); keys != 2 || b != 10 {
		t.Fatalf("Stats = %d, %d", keys, b)
	}
	f.op(Op{Type: OpDelete, Key: "abc"})
	if keys, b := f.s.Stats(); keys != 1 || b != 4 {
		t.Fatalf("Stats after delete = %d, %d", keys, b)
	}
	// Unlimited.
	g := newFeeder(t, Options{Quota: -1})
	if r := g.put("a", strings.Repeat("x", 1000)); !r.Succeeded {
		t.Fatalf("no quota: %+v", r)
	}
}

func TestEphemeralRemovedWithOwner(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v2=%v", v2), func(t *testing.T) {
			f := newFeeder(t, Options{})
			f.op(Op{Type: OpPut, Key: "b", Value: []byte("1"), Owner: 7})
			f.op(Op{Type: OpPut, Key: "a", Value: []byte("1"), Owner: 7})
			f.op(Op{Type: OpPut, Key: "c", Value: []byte("1"), Owner: 8})
			f.put("d", "persistent")
			f.op(Op{Type: OpPut, Key: "e", Value: []byte("1"), Owner: 7})
			f.put("e", "no longer bound")
			ch := f.s.Changed()
			if v2 {
				f.confV2(raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemoveNode, NodeID: 7}, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemoveNode, NodeID: 8})
			} else {
				f.removeV1(7)
			}
			select {
			case <-ch:
			default:
				t.Fatalf("Changed not closed by the removal")
			}
			kvs, rev := f.s.List("", 0)
			want := "d,e"
			if !v2 {
				want = "c,d,e"
			}
			if got := keyList(kvs); got != want || rev != 7 {
				t.Fatalf("after removal: %s @%d, want %s @7", got, rev, want)
			}
			evs, err := f.s.Since(7, "")
			if err != nil {
				t.Fatal(err)
			}
			var dels []string
			for _, ev := range evs {
				if ev.Type != EventDelete || ev.Revision != 7 || ev.KV.ModRevision != 7 || ev.Prev == nil {
					t.Fatalf("removal event %+v", ev)
				}
				dels = append(dels, ev.KV.Key)
			}
			wantDel := "a,b"
			if v2 {
				wantDel = "a,b,c"
			}
			if strings.Join(dels, ",") != wantDel {
				t.Fatalf("removal events for %v, want %s", dels, wantDel)
			}
			// A put bound to a removed member is refused; after the member
			// is added again it is accepted.
			if r := f.op(Op{Type: OpPut, Key: "x", Owner: 7}); !errors.Is(r.Err, ErrOwnerRemoved) {
				t.Fatalf("put bound to a removed member: %+v", r)
			}
			// Removing a member that owns nothing changes no revision.
			f.removeV1(99)
			if f.s.Revision() != 7 {
				t.Fatalf("empty removal moved the revision to %d", f.s.Revision())
			}
			f.confV2(raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddNode, NodeID: 7})
			if r := f.op(Op{Type: OpPut, Key: "x", Owner: 7}); !r.Succeeded {
				t.Fatalf("put bound to a member added again: %+v", r)
			}
		})
	}
}

func keyList(kvs []KeyValue) string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return strings.Join(out, ",")
}

func TestSinceAndCompaction(t *testing.T) {
	f := newFeeder(t, Options{History: 5})
	for i := range 4 {
		f.put(fmt.Sprintf("k%d", i), "v")
	}
	f.op(Op{Type: OpDelete, Key: "k0"})
	evs, err := f.s.Since(0, "")
	if err != nil || len(evs) != 5 {
		t.Fatalf("Since(0) = %d events, %v", len(evs), err)
	}
	for i, ev := range evs {
		if ev.Revision != uint64(i+1) {
			t.Fatalf("event %d at revision %d", i, ev.Revision)
		}
	}
	if evs[4].Type != EventDelete || evs[4].Prev == nil || evs[4].Prev.ModRevision != 1 {
		t.Fatalf("delete event %+v", evs[4])
	}
	if evs, _ := f.s.Since(4, "k3"); len(evs) != 1 || evs[0].KV.Key != "k3" || evs[0].Revision != 4 {
		t.Fatalf("Since(4, k3) = %+v", evs)
	}
	if evs, _ := f.s.Since(6, ""); len(evs) != 0 {
		t.Fatalf("Since(future) = %+v", evs)
	}
	f.put("k9", "v") // revision 6: revision 1 drops
	_, err = f.s.Since(1, "")
	var ce *CompactedError
	if !errors.Is(err, ErrCompacted) || !errors.As(err, &ce) || ce.Oldest != 2 {
		t.Fatalf("Since(1) after compaction: %v", err)
	}
	if evs, err := f.s.Since(2, ""); err != nil || len(evs) != 5 {
		t.Fatalf("Since(oldest) = %d, %v", len(evs), err)
	}
	// Internal keys only for an internal prefix.
	f.put("\x00lock/a", "")
	if evs, _ := f.s.Since(7, ""); len(evs) != 0 {
		t.Fatalf("internal event shown to an empty prefix: %+v", evs)
	}
	if evs, _ := f.s.Since(7, "\x00lock/"); len(evs) != 1 {
		t.Fatalf("internal event not shown to its prefix: %+v", evs)
	}
}

func TestHistoryDropsWholeRevisions(t *testing.T) {
	f := newFeeder(t, Options{History: 3})
	for _, k := range []string{"a", "b", "c"} {
		f.op(Op{Type: OpPut, Key: k, Owner: 5})
	}
	f.removeV1(5) // revision 4: three events
	if _, err := f.s.Since(4, ""); err != nil {
		t.Fatalf("Since(4): %v", err)
	}
	var ce *CompactedError
	if _, err := f.s.Since(3, ""); !errors.As(err, &ce) || ce.Oldest != 4 {
		t.Fatalf("Since(3): %v", err)
	}
	f.put("d", "") // revision 5: revision 4 (three events) must go whole
	if _, err := f.s.Since(4, ""); !errors.As(err, &ce) || ce.Oldest != 5 {
		t.Fatalf("Since(4) after: %v", err)
	}
	// The byte bound.
	g := newFeeder(t, Options{HistoryBytes: 10})
	g.put("a", "12345")
	g.put("b", "12345")
	if _, err := g.s.Since(1, ""); !errors.As(err, &ce) || ce.Oldest != 2 {
		t.Fatalf("byte bound: %v", err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	f := newFeeder(t, Options{})
	f.put("a", "1")
	f.op(Op{Type: OpPut, Key: "b", Value: []byte("2"), Owner: 4})
	f.put("a", "3")
	f.removeV1(9)
	f.put("\x00lock/x", "")
	snap := f.s.Snapshot()

	g := New(Options{})
	ch := g.Changed()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatalf("Restore did not close Changed")
	}
	if !bytes.Equal(g.Snapshot(), snap) || g.Revision() != 4 || g.AppliedIndex() != f.index {
		t.Fatalf("restored: rev %d applied %d", g.Revision(), g.AppliedIndex())
	}
	if kv, ok, _ := g.Get("a"); !ok || kv.Version != 2 || kv.CreateRevision != 1 || string(kv.Value) != "3" {
		t.Fatalf("restored a: %+v", kv)
	}
	if k1, b1 := f.s.Stats(); true {
		if k2, b2 := g.Stats(); k1 != k2 || b1 != b2 {
			t.Fatalf("Stats %d/%d vs %d/%d", k1, b1, k2, b2)
		}
	}
	var ce *CompactedError
	if _, err := g.Since(1, ""); !errors.As(err, &ce) || ce.Oldest != 5 {
		t.Fatalf("history after restore: %v", err)
	}
	if r := g.Apply(raftpb.Entry{Index: f.index + 1, Type: raftpb.EntryNormal, Data: mustEncode(t, Op{Type: OpPut, Key: "z", Owner: 9})}); len(r) != 1 || !errors.Is(r[0].Err, ErrOwnerRemoved) {
		t.Fatalf("removed owners not restored: %+v", r)
	}

	// Bad snapshots change nothing.
	before := g.Snapshot()
	for _, bad := range [][]byte{nil, []byte("KVS\x02"), snap[:len(snap)-1], append(bytes.Clone(snap), 1)} {
		if err := g.Restore(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Restore(bad) = %v", err)
		}
	}
	if !bytes.Equal(g.Snapshot(), before) {
		t.Fatalf("a failed Restore changed the state")
	}
}

func mustEncode(t testing.TB, op Op) []byte {
	t.Helper()
	b, err := EncodeOp(op)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeterminism feeds two stores the same random entries (some of them
// across a snapshot) and expects byte-identical snapshots and equal
// results.
func TestDeterminism(t *testing.T) {
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var entries []raftpb.Entry
		for i := range 400 {
			e := raftpb.Entry{Index: uint64(i + 1), Term: 1, Type: raftpb.EntryNormal}
			key := fmt.Sprintf("k%d", rng.IntN(20))
			switch rng.IntN(10) {
			case 0:
				cc := raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: uint64(rng.IntN(4) + 1)}
				if rng.IntN(2) == 0 {
					cc.Type = raftpb.ConfChangeAddNode
				}
				e.Type, e.Data = raftpb.EntryConfChange, mustMarshal(t, &cc)
			case 1:
				op := Op{Type: OpDelete, Key: key}
				if rng.IntN(2) == 0 {
					op.Compare, op.ModRevision = true, uint64(rng.IntN(i+1))
				}
				e.Data = mustEncode(t, op)
			case 2:
				e.Data = []byte{Kind, byte(rng.IntN(3)), 0}
			default:
				op := Op{Type: OpPut, Key: key, Value: []byte(strings.Repeat("v", rng.IntN(40))), Owner: uint64(rng.IntN(5)), ReqID: uint64(i)}
				if rng.IntN(3) == 0 {
					op.Compare, op.ModRevision = true, uint64(rng.IntN(i+1))
				}
				e.Data = mustEncode(t, op)
			}
			entries = append(entries, e)
		}
		a, b := New(Options{Quota: 300}), New(Options{Quota: 300})
		var ra, rb []Result
		for i, e := range entries {
			ra = append(ra, a.Apply(e)...)
			if i == 200 {
				if err := b.Restore(a.Snapshot()); err != nil {
					t.Fatal(err)
				}
				continue
			}
			rb = append(rb, b.Apply(e)...)
		}
		if !bytes.Equal(a.Snapshot(), b.Snapshot()) {
			t.Fatalf("seed %d: snapshots differ", seed)
		}
		// Results after the restore point are equal.
		tail := func(rs []Result) []Result {
			var out []Result
			for _, r := range rs {
				if r.Index > 201 {
					out = append(out, r)
				}
			}
			return out
		}
		if !reflect.DeepEqual(tail(ra), tail(rb)) {
			t.Fatalf("seed %d: results differ", seed)
		}
		if a.Revision() == 0 {
			t.Fatalf("seed %d: nothing applied", seed)
		}
	}
}

func mustMarshal(t testing.TB, m interface{ Marshal() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSetQuota: the quota travels in the log (OpSetQuota): it changes
// which puts are refused, and a snapshot carries it.
func TestSetQuota(t *testing.T) {
	f := newFeeder(t, Options{})
	if q := f.s.Quota(); q != DefaultQuota {
		t.Fatalf("initial quota %d, want %d", q, DefaultQuota)
	}
	if r := f.op(Op{Type: OpSetQuota, Quota: 10, ReqID: 7}); !r.Succeeded || r.Err != nil || r.ReqID != 7 || f.s.Revision() != 0 {
		t.Fatalf("set quota: %+v, revision %d", r, f.s.Revision())
	}
	if q := f.s.Quota(); q != 10 {
		t.Fatalf("quota %d after OpSetQuota 10", q)
	}
	f.put("abc", "1234567") // 10 bytes: at the quota
	if r := f.put("d", ""); !errors.Is(r.Err, ErrQuota) {
		t.Fatalf("put over the quota set in the log: %+v", r)
	}
	snap := f.s.Snapshot()
	g := New(Options{})
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if q := g.Quota(); q != 10 {
		t.Fatalf("restored quota %d, want 10", q)
	}
	if r := g.Apply(raftpb.Entry{Index: f.index + 1, Type: raftpb.EntryNormal, Data: mustEncode(t, Op{Type: OpPut, Key: "e", Value: []byte("x")})}); len(r) != 1 || !errors.Is(r[0].Err, ErrQuota) {
		t.Fatalf("put over the restored quota: %+v", r)
	}
	f.op(Op{Type: OpSetQuota, Quota: 1 << 20})
	if r := f.put("d", "x"); !r.Succeeded {
		t.Fatalf("put under the raised quota: %+v", r)
	}

	// A quota change carries nothing else, and a positive quota.
	for _, bad := range []Op{
		{Type: OpSetQuota},
		{Type: OpSetQuota, Quota: -1},
		{Type: OpSetQuota, Quota: 5, Key: "k"},
		{Type: OpSetQuota, Quota: 5, Value: []byte("v")},
		{Type: OpSetQuota, Quota: 5, Owner: 1},
		{Type: OpSetQuota, Quota: 5, Compare: true},
		{Type: OpPut, Key: "k", Quota: 5},
	} {
		if _, err := EncodeOp(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("EncodeOp(%+v) = %v, want ErrMalformed", bad, err)
		}
	}
	op, err := DecodeOp(mustEncode(t, Op{Type: OpSetQuota, Quota: 1 << 40, ReqID: 3, Term: 2}))
	if err != nil || !reflect.DeepEqual(op, Op{Type: OpSetQuota, Quota: 1 << 40, ReqID: 3, Term: 2}) {
		t.Fatalf("round trip: %+v, %v", op, err)
	}
	for _, bad := range [][]byte{
		{Kind, byte(OpSetQuota), 0, 1, 0, 0}, // quota 0
		{Kind, byte(OpSetQuota), 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, // > MaxInt64
		{Kind, byte(OpSetQuota), flagCompare, 1, 5, 0},
		{Kind, byte(OpSetQuota), 0, 1, 5, 0, 0},
	} {
		if _, err := DecodeOp(bad); err == nil {
			t.Errorf("DecodeOp(%x) accepted", bad)
		}
	}
}

// TestDedupe: an op whose ReqID was applied already (a proposal delivered
// twice) does not apply again; its result is the first one's, marked
// Duplicate, and the set of ReqIDs travels in the snapshot.
func TestDedupe(t *testing.T) {
	f := newFeeder(t, Options{})
	first := f.op(Op{Type: OpPut, Key: "a", Value: []byte("1"), ReqID: 42})
	f.put("b", "x")
	second := f.op(Op{Type: OpPut, Key: "a", Value: []byte("1"), ReqID: 42})
	if !first.Succeeded || first.Duplicate || !second.Duplicate || !second.Succeeded ||
		second.Index != first.Index || second.Revision != first.Revision || second.ReqID != 42 {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	if kv, _, rev := f.s.Get("a"); kv.Version != 1 || rev != 2 {
		t.Fatalf("the duplicate applied: a v%d, revision %d", kv.Version, rev)
	}
	// A compare that failed fails the same way; a refusal is the same
	// refusal.
	cas := Op{Type: OpPut, Key: "a", Value: []byte("2"), Compare: true, ModRevision: 9, ReqID: 43}
	if r1, r2 := f.op(cas), f.op(cas); r1.Succeeded || r2.Succeeded || !r2.Duplicate || r2.Index != r1.Index {
		t.Fatalf("failed compare twice: %+v, %+v", r1, r2)
	}
	del := Op{Type: OpDelete, Key: "zz", ReqID: 44}
	if r1, r2 := f.op(del), f.op(del); !errors.Is(r1.Err, ErrNotFound) || !errors.Is(r2.Err, ErrNotFound) || !r2.Duplicate {
		t.Fatalf("refused delete twice: %+v, %+v", r1, r2)
	}
	// ReqID 0: nobody waits, nothing remembered.
	f.op(Op{Type: OpPut, Key: "c", Value: []byte("1")})
	if r := f.op(Op{Type: OpPut, Key: "c", Value: []byte("1")}); r.Duplicate {
		t.Fatalf("ReqID 0 deduplicated: %+v", r)
	}

	// The snapshot carries the set: a restored store refuses the duplicate.
	g := New(Options{})
	if err := g.Restore(f.s.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Snapshot(), f.s.Snapshot()) {
		t.Fatalf("snapshot round trip differs")
	}
	rs := g.Apply(raftpb.Entry{Index: f.index + 1, Type: raftpb.EntryNormal, Data: mustEncode(t, Op{Type: OpPut, Key: "a", Value: []byte("1"), ReqID: 42})})
	if len(rs) != 1 || !rs[0].Duplicate || rs[0].Index != first.Index {
		t.Fatalf("restored store applied a duplicate: %+v", rs)
	}
	if kv, _, _ := g.Get("a"); kv.Version != 1 {
		t.Fatalf("restored store applied a duplicate: a v%d", kv.Version)
	}

	// The window is bounded: the oldest ReqIDs are forgotten.
	h := newFeeder(t, Options{})
	for i := range DedupeWindow + 1 {
		h.op(Op{Type: OpPut, Key: "k", Value: []byte("v"), ReqID: uint64(i + 1)})
	}
	if n := len(h.s.dedupe); n != DedupeWindow {
		t.Fatalf("%d outcomes remembered, want %d", n, DedupeWindow)
	}
	if r := h.op(Op{Type: OpPut, Key: "k", Value: []byte("v"), ReqID: 1}); r.Duplicate {
		t.Fatalf("ReqID 1 still remembered beyond the window")
	}
	if r := h.op(Op{Type: OpPut, Key: "k", Value: []byte("v"), ReqID: 3}); !r.Duplicate {
		t.Fatalf("ReqID 3 forgotten within the window")
	}
}

// TestSnapshotTail: a snapshot written before the quota and the request
// outcomes existed (it ends after its keys) restores with the initial
// quota and nothing remembered; a bad tail is refused.
func TestSnapshotTail(t *testing.T) {
	f := newFeeder(t, Options{})
	f.put("a", "1")
	full := f.s.Snapshot()
	// The old format: the snapshot without its tail (an empty store's:
	// the default quota, no outcomes).
	oldFmt := full[:len(full)-len(New(Options{}).appendTail(nil))]
	h := New(Options{Quota: 77})
	if err := h.Restore(oldFmt); err != nil {
		t.Fatalf("old format: %v", err)
	}
	if h.Quota() != 77 {
		t.Fatalf("old format: quota %d, want the initial 77", h.Quota())
	}
	for _, bad := range [][]byte{
		append(bytes.Clone(oldFmt), 0),                                  // quota 0
		append(bytes.Clone(oldFmt), 2, 1, 0, 1, 1, 0, 0),                // ReqID 0
		append(bytes.Clone(oldFmt), 2, 1, 5, 99, 1, 0, 0),               // index beyond applied
		append(bytes.Clone(oldFmt), 2, 1, 5, 1, 1, 2, 0),                // flags
		append(bytes.Clone(oldFmt), 2, 1, 5, 1, 1, 0, 9),                // error code
		append(bytes.Clone(oldFmt), 2, 2, 5, 1, 1, 0, 0, 5, 1, 1, 0, 0), // twice
	} {
		if err := h.Restore(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Restore(tail %x) = %v", bad[len(oldFmt):], err)
		}
	}
}
