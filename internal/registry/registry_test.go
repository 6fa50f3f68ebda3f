package registry

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func member(ident string, port int, md map[string]any) Member {
	return Member{Identifier: ident, Host: "127.0.0.1", Port: port, Metadata: md}
}

// addEntry is the committed configuration change that adds m (as node id).
func addEntry(t testing.TB, id uint64, m Member, learner bool) raftpb.Entry {
	t.Helper()
	ctx, err := EncodeMember(m)
	if err != nil {
		t.Fatal(err)
	}
	typ := raftpb.ConfChangeAddNode
	if learner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	return confEntry(t, raftpb.ConfChange{Type: typ, NodeID: id, Context: ctx})
}

func confEntry(t testing.TB, cc raftpb.ConfChange) raftpb.Entry {
	t.Helper()
	data, err := cc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raftpb.Entry{Type: raftpb.EntryConfChange, Data: data}
}

func removeEntry(t testing.TB, id uint64) raftpb.Entry {
	return confEntry(t, raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: id})
}

func opEntry(t testing.TB, op Op) raftpb.Entry {
	t.Helper()
	data, err := EncodeOp(op)
	if err != nil {
		t.Fatal(err)
	}
	return raftpb.Entry{Type: raftpb.EntryNormal, Data: data}
}

// view is a State as comparable values, sorted by identifier.
func view(s *State) []Member {
	var out []Member
	for _, m := range s.Sorted() {
		out = append(out, *m)
	}
	return out
}

func TestApply(t *testing.T) {
	a, b, c := member("a", 7001, nil), member("b", 7002, map[string]any{"x": 1.0}), member("c", 7003, nil)
	bMoved := b
	bMoved.Port = 7012
	bMeta := b
	bMeta.Metadata = map[string]any{"x": 2.0}
	founders := func() *State { return New([]Member{a, b}) }
	cases := []struct {
		name  string
		entry func(t *testing.T) raftpb.Entry
		want  []Member
		types []ChangeType // nil: no change at all, same state
	}{
		{"add a voter", func(t *testing.T) raftpb.Entry { return addEntry(t, NodeID("c"), c, false) },
			[]Member{a, b, c}, []ChangeType{Joined}},
		{"add a learner", func(t *testing.T) raftpb.Entry { return addEntry(t, NodeID("c"), c, true) },
			[]Member{a, b, c}, []ChangeType{Joined}},
		{"add a member again", func(t *testing.T) raftpb.Entry { return addEntry(t, NodeID("b"), b, false) },
			[]Member{a, b}, []ChangeType{Restated}},
		{"add a member at a new address", func(t *testing.T) raftpb.Entry { return addEntry(t, NodeID("b"), bMoved, false) },
			[]Member{a, bMoved}, []ChangeType{Joined}},
		{"add with a record of another node", func(t *testing.T) raftpb.Entry { return addEntry(t, NodeID("b"), c, false) },
			[]Member{a, b}, nil},
		{"add without a record", func(t *testing.T) raftpb.Entry {
			return confEntry(t, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: NodeID("c")})
		}, []Member{a, b}, nil},
		{"add with a record that is not JSON", func(t *testing.T) raftpb.Entry {
			return confEntry(t, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: NodeID("c"), Context: []byte("{c")})
		}, []Member{a, b}, nil},
		{"remove a member", func(t *testing.T) raftpb.Entry { return removeEntry(t, NodeID("b")) },
			[]Member{a}, []ChangeType{Removed}},
		{"remove a stranger", func(t *testing.T) raftpb.Entry { return removeEntry(t, NodeID("z")) },
			[]Member{a, b}, nil},
		{"a conf change that does not decode", func(t *testing.T) raftpb.Entry {
			return raftpb.Entry{Type: raftpb.EntryConfChange, Data: []byte{0xff, 0xff, 0xff}}
		}, []Member{a, b}, nil},
		{"set metadata", func(t *testing.T) raftpb.Entry {
			return opEntry(t, Op{Op: OpMetadata, Identifier: "b", Metadata: bMeta.Metadata})
		}, []Member{a, bMeta}, []ChangeType{Updated}},
		{"set metadata to what it is", func(t *testing.T) raftpb.Entry {
			return opEntry(t, Op{Op: OpMetadata, Identifier: "b", Metadata: b.Metadata})
		}, []Member{a, b}, []ChangeType{Restated}},
		{"set metadata of a stranger", func(t *testing.T) raftpb.Entry {
			return opEntry(t, Op{Op: OpMetadata, Identifier: "z", Metadata: map[string]any{"y": true}})
		}, []Member{a, b}, nil},
		{"an unknown operation", func(t *testing.T) raftpb.Entry {
			return opEntry(t, Op{Op: "delete", Identifier: "b"})
		}, []Member{a, b}, nil},
		{"an entry of another kind", func(t *testing.T) raftpb.Entry {
			return raftpb.Entry{Type: raftpb.EntryNormal, Data: []byte(`K{"op":"metadata","identifier":"b","metadata":{}}`)}
		}, []Member{a, b}, nil},
		{"an empty entry (a new leader's)", func(t *testing.T) raftpb.Entry {
			return raftpb.Entry{Type: raftpb.EntryNormal}
		}, []Member{a, b}, nil},
		{"a registry entry that is not JSON", func(t *testing.T) raftpb.Entry {
			return raftpb.Entry{Type: raftpb.EntryNormal, Data: []byte("R{")}
		}, []Member{a, b}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := founders()
			before := view(s)
			next, changes := Apply(s, tc.entry(t))
			if got := view(s); !reflect.DeepEqual(got, before) {
				t.Fatalf("Apply modified its input: %+v, was %+v", got, before)
			}
			if got := view(next); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("state %+v, want %+v", got, tc.want)
			}
			var types []ChangeType
			for _, ch := range changes {
				types = append(types, ch.Type)
				if ch.ID != NodeID(ch.Member.Identifier) {
					t.Errorf("change %v names node %x for %q", ch.Type, ch.ID, ch.Member.Identifier)
				}
			}
			if !slices.Equal(types, tc.types) {
				t.Errorf("changes %v, want %v", types, tc.types)
			}
			changed := slices.ContainsFunc(changes, func(ch Change) bool { return ch.Type != Restated })
			if changed != (next != s) {
				t.Errorf("state replaced: %v, changes %v", next != s, types)
			}
			for _, m := range tc.want {
				if id, ok := next.ID(m.Identifier); !ok || id != NodeID(m.Identifier) {
					t.Errorf("ID(%q) = %x, %v", m.Identifier, id, ok)
				}
			}
		})
	}
}

// TestApplyAllIsRepeatedApply: a batch gives the state and changes that
// one entry at a time gives, and the removed member's identifier is free.
func TestApplyAllIsRepeatedApply(t *testing.T) {
	a, b, c := member("a", 7001, nil), member("b", 7002, nil), member("c", 7003, nil)
	es := []raftpb.Entry{
		addEntry(t, NodeID("c"), c, false),
		opEntry(t, Op{Op: OpMetadata, Identifier: "c", Metadata: map[string]any{"v": 1.0}}),
		removeEntry(t, NodeID("b")),
		opEntry(t, Op{Op: OpMetadata, Identifier: "b", Metadata: map[string]any{"v": 1.0}}),
		addEntry(t, NodeID("b"), b, true),
	}
	s0 := New([]Member{a, b})
	batch, batchChanges := ApplyAll(s0, es)
	one, oneChanges := s0, []Change(nil)
	for _, e := range es {
		var chs []Change
		one, chs = Apply(one, e)
		oneChanges = append(oneChanges, chs...)
	}
	if !reflect.DeepEqual(view(batch), view(one)) || !reflect.DeepEqual(batchChanges, oneChanges) {
		t.Fatalf("batch %+v %+v, one by one %+v %+v", view(batch), batchChanges, view(one), oneChanges)
	}
	want := []ChangeType{Joined, Updated, Removed, Joined}
	var got []ChangeType
	for _, ch := range batchChanges {
		got = append(got, ch.Type)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	if len(view(s0)) != 2 {
		t.Fatalf("the input changed: %+v", view(s0))
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := New([]Member{
		member("b", 7002, map[string]any{"n": 1.0, "s": "x", "l": []any{true, nil}}),
		member("a", 7001, nil),
	})
	data := s.Snapshot()
	r, err := Restore(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(view(r), view(s)) {
		t.Fatalf("restored %+v, want %+v", view(r), view(s))
	}
	if again := r.Snapshot(); string(again) != string(data) {
		t.Fatalf("encodings differ:\n%s\n%s", data, again)
	}
	// Founders in another order encode to the same bytes.
	if other := New([]Member{member("a", 7001, nil), view(s)[1]}).Snapshot(); string(other) != string(data) {
		t.Fatalf("order changes the encoding:\n%s\n%s", data, other)
	}
	if _, err := Restore([]byte("{")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Restore of bad bytes: %v", err)
	}
}

func TestDiff(t *testing.T) {
	a, b, c := member("a", 7001, nil), member("b", 7002, nil), member("c", 7003, nil)
	bMeta := b
	bMeta.Metadata = map[string]any{"k": "v"}
	got := Diff(New([]Member{a, b, c}), New([]Member{a, bMeta}))
	if len(got) != 1 || got[0].Type != Joined || got[0].Member.Identifier != "b" || got[0].ID != NodeID("b") {
		t.Fatalf("Diff = %+v", got)
	}
}

func TestOpRoundTrip(t *testing.T) {
	op := Op{Op: OpMetadata, Identifier: "a", Metadata: map[string]any{"n": 2.0}}
	data, err := EncodeOp(op)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := KindOf(data); !ok || k != KindRegistry {
		t.Fatalf("kind %q %v", k, ok)
	}
	got, err := DecodeOp(data)
	if err != nil || !reflect.DeepEqual(got, op) {
		t.Fatalf("DecodeOp = %+v, %v", got, err)
	}
	for _, bad := range []struct {
		data []byte
		want error
	}{
		{nil, ErrNotRegistry},
		{[]byte("R"), ErrNotRegistry},
		{[]byte(`K{"op":"metadata"}`), ErrNotRegistry},
		{[]byte(`R{"op":`), ErrMalformed},
		{[]byte(`R{"op":"metadata"} x`), ErrMalformed},
		{[]byte(`R{"op":"remove","identifier":"a"}`), ErrUnknownOp},
	} {
		if _, err := DecodeOp(bad.data); !errors.Is(err, bad.want) {
			t.Errorf("DecodeOp(%q) = %v, want %v", bad.data, err, bad.want)
		}
	}
}

func TestMemberRoundTrip(t *testing.T) {
	m := member("a", 7001, map[string]any{"k": "v"})
	data, err := EncodeMember(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMember(data, NodeID("a"))
	if err != nil || !got.Same(m) {
		t.Fatalf("DecodeMember = %+v, %v", got, err)
	}
	if _, err := DecodeMember(data, NodeID("b")); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("record of another node: %v", err)
	}
	if _, err := DecodeMember(nil, NodeID("a")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no record: %v", err)
	}
	if _, err := DecodeMember([]byte("[]"), NodeID("a")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("not an object: %v", err)
	}
}

func TestNodeIDNeverZero(t *testing.T) {
	if NodeID("") == 0 || NodeID("a") == NodeID("b") {
		t.Fatal("NodeID")
	}
}
