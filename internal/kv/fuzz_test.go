package kv

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzDecodeOp feeds hostile bytes to DecodeOp and Restore: nothing
// panics, and what decodes encodes back to the same meaning.
func FuzzDecodeOp(f *testing.F) {
	f.Add(mustEncode(f, Op{Type: OpPut, Key: "a", Value: []byte("v"), Compare: true, ModRevision: 3, Owner: 2, ReqID: 9}))
	f.Add(mustEncode(f, Op{Type: OpDelete, Key: "\x00lock/a"}))
	f.Add(seedStore(f).Snapshot())
	f.Add(mustEncode(f, Op{Type: OpGrant, Owner: 2, TTL: 1500 * time.Millisecond, ReqID: 4, Term: 1}))
	f.Add(mustEncode(f, Op{Type: OpRevoke, Session: 5, IfRenewed: 6}))
	f.Add(mustEncode(f, Op{Type: OpPut, Key: "s", Session: 5}))
	f.Add([]byte{Kind, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if op, err := DecodeOp(data); err == nil {
			again, err := EncodeOp(op)
			if err != nil {
				t.Fatalf("decoded op %+v does not encode: %v", op, err)
			}
			if op2, err := DecodeOp(again); err != nil || !reflect.DeepEqual(op, op2) {
				t.Fatalf("op round trip: %+v, %+v, %v", op, op2, err)
			}
		}
		s := New(Options{})
		if err := s.Restore(data); err == nil {
			snap := s.Snapshot()
			s2 := New(Options{})
			if err := s2.Restore(snap); err != nil || !bytes.Equal(s2.Snapshot(), snap) {
				t.Fatalf("snapshot round trip: %v", err)
			}
		}
	})
}

// seedStore is a store with a little of everything.
func seedStore(t testing.TB) *Store {
	f := newFeeder(t, Options{Quota: 1 << 10})
	f.put("a", "1")
	f.op(Op{Type: OpPut, Key: "b", Value: []byte("2"), Owner: 3})
	f.op(Op{Type: OpPut, Key: "\x00lock/l", Owner: 4})
	f.removeV1(7)
	id := f.op(Op{Type: OpGrant, Owner: 3, TTL: time.Second}).Index
	f.op(Op{Type: OpPut, Key: "s", Value: []byte("x"), Session: id})
	f.op(Op{Type: OpGrant, Owner: 5, TTL: time.Minute})
	f.op(Op{Type: OpSetQuota, Quota: 1 << 11, ReqID: 5}) // the snapshot's tail: a quota, request outcomes
	f.op(Op{Type: OpDelete, Key: "zz", ReqID: 6})
	return f.s
}

// FuzzApply applies hostile entries of every type: nothing panics; bytes
// that do not decode change nothing but the applied index; what does
// apply keeps the state consistent (a snapshot restores to the same
// bytes, Stats agrees with the keys).
func FuzzApply(f *testing.F) {
	f.Add(uint8(0), mustEncode(f, Op{Type: OpPut, Key: "c", Value: []byte("v")}))
	f.Add(uint8(0), mustEncode(f, Op{Type: OpPut, Key: "a", Compare: true, ModRevision: 1, Owner: 9}))
	f.Add(uint8(0), []byte{Kind, 2, 1, 0, 0, 0, 0, 1, 'a', 0})
	f.Add(uint8(1), mustMarshal(f, &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: 3}))
	f.Add(uint8(2), mustMarshal(f, &raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode, NodeID: 4}}}))
	f.Add(uint8(0), []byte("R{}"))
	f.Add(uint8(0), mustEncode(f, Op{Type: OpRevoke, Session: 5}))
	f.Add(uint8(0), mustEncode(f, Op{Type: OpKeepAlive, Session: 7}))
	f.Add(uint8(0), mustEncode(f, Op{Type: OpGrant, Owner: 1, TTL: time.Second}))
	f.Add(uint8(0), mustEncode(f, Op{Type: OpPut, Key: "t", Session: 6}))
	f.Add(uint8(0), mustEncode(f, Op{Type: OpSetQuota, Quota: 3, ReqID: 5}))
	f.Add(uint8(0), mustEncode(f, Op{Type: OpPut, Key: "d", Value: []byte("v"), ReqID: 5}))
	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		s := seedStore(t)
		before := s.Snapshot()
		rev, applied := s.Revision(), s.AppliedIndex()
		e := raftpb.Entry{Index: applied + 1, Term: 2, Type: raftpb.EntryType(typ % 3), Data: data}
		rs := s.Apply(e)
		if s.AppliedIndex() != applied+1 {
			t.Fatalf("applied index %d, want %d", s.AppliedIndex(), applied+1)
		}
		_, opErr := DecodeOp(data)
		garbage := e.Type == raftpb.EntryNormal && opErr != nil
		if e.Type == raftpb.EntryConfChange {
			var cc raftpb.ConfChange
			garbage = cc.Unmarshal(data) != nil
		}
		if e.Type == raftpb.EntryConfChangeV2 {
			var cc raftpb.ConfChangeV2
			garbage = cc.Unmarshal(data) != nil
		}
		if garbage {
			if len(rs) != 0 || s.Revision() != rev {
				t.Fatalf("garbage applied: %+v", rs)
			}
			// Only the applied index moved.
			want := New(Options{})
			if err := want.Restore(before); err != nil {
				t.Fatal(err)
			}
			want.Apply(raftpb.Entry{Index: applied + 1, Type: raftpb.EntryNormal})
			if !bytes.Equal(s.Snapshot(), want.Snapshot()) {
				t.Fatalf("garbage changed the state")
			}
		}
		for _, r := range rs {
			if !r.Succeeded && s.Revision() != rev {
				t.Fatalf("a failed op moved the revision: %+v", r)
			}
		}
		if s.Revision() != rev && s.Revision() != rev+1 {
			t.Fatalf("one entry moved the revision from %d to %d", rev, s.Revision())
		}
		snap := s.Snapshot()
		s2 := New(Options{})
		if err := s2.Restore(snap); err != nil || !bytes.Equal(s2.Snapshot(), snap) {
			t.Fatalf("state does not round trip: %v", err)
		}
		keys, n := s.Stats()
		kvs, _ := s.List("", 0)
		internal, _ := s.List(InternalPrefix, 0)
		var sum int64
		for _, kv := range append(kvs, internal...) {
			sum += int64(len(kv.Key) + len(kv.Value))
		}
		if keys != len(kvs)+len(internal) || n != sum {
			t.Fatalf("Stats %d/%d, keys say %d/%d", keys, n, len(kvs)+len(internal), sum)
		}
	})
}
