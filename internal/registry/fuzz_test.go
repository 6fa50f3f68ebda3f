package registry

import (
	"reflect"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzDecode feeds hostile bytes to every decoder and to Apply, as an
// entry's data, a configuration change's member record and a snapshot.
// Nothing may panic; Apply never modifies its input state; what decodes
// encodes back to the same meaning.
func FuzzDecode(f *testing.F) {
	good, _ := EncodeOp(Op{Op: OpMetadata, Identifier: "b", Metadata: map[string]any{"k": "v"}})
	rec, _ := EncodeMember(member("c", 7003, nil))
	f.Add(good)
	f.Add(rec)
	f.Add(New([]Member{member("a", 1, nil)}).Snapshot())
	f.Add([]byte(`R{"op":"metadata","identifier":"a","metadata":null}`))
	f.Add([]byte(`{"members":[{"identifier":"a","host":"h","port":-1},{"identifier":"a"}]}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New([]Member{member("a", 7001, nil), member("b", 7002, map[string]any{"k": "v"})})
		before := view(s)

		if op, err := DecodeOp(data); err == nil {
			again, err := EncodeOp(op)
			if err != nil {
				t.Fatalf("decoded op %+v does not encode: %v", op, err)
			}
			if op2, err := DecodeOp(again); err != nil || !reflect.DeepEqual(op, op2) {
				t.Fatalf("op round trip: %+v, %+v, %v", op, op2, err)
			}
		}
		if r, err := Restore(data); err == nil {
			if r2, err := Restore(r.Snapshot()); err != nil || !reflect.DeepEqual(view(r), view(r2)) {
				t.Fatalf("snapshot round trip: %+v, %+v, %v", view(r), view(r2), err)
			}
			for id, m := range r.All() {
				if id != NodeID(m.Identifier) {
					t.Fatalf("restored member %q under node %x", m.Identifier, id)
				}
			}
		}
		for _, id := range []uint64{NodeID("c"), NodeID("a")} {
			if m, err := DecodeMember(data, id); err == nil && NodeID(m.Identifier) != id {
				t.Fatalf("record %+v accepted for node %x", m, id)
			}
		}

		entries := []raftpb.Entry{
			{Type: raftpb.EntryNormal, Data: data},
			{Type: raftpb.EntryConfChange, Data: data},
			confEntry(t, raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: NodeID("c"), Context: data}),
			confEntry(t, raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode, NodeID: NodeID("a"), Context: data}),
		}
		for _, e := range entries {
			next, changes := Apply(s, e)
			if !reflect.DeepEqual(view(s), before) {
				t.Fatalf("Apply modified its input")
			}
			for _, ch := range changes {
				if ch.ID != NodeID(ch.Member.Identifier) {
					t.Fatalf("change for %q under node %x", ch.Member.Identifier, ch.ID)
				}
				if got, ok := next.Get(ch.ID); ch.Type != Removed && (!ok || got != ch.Member) {
					t.Fatalf("change %v names a member the state does not hold", ch.Type)
				}
			}
		}
	})
}
