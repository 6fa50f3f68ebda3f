package kv

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// grant grants a session owned by owner and returns its ID.
func (f *feeder) grant(owner uint64, ttl time.Duration) uint64 {
	f.t.Helper()
	r := f.op(Op{Type: OpGrant, Owner: owner, TTL: ttl})
	if !r.Succeeded || r.Err != nil {
		f.t.Fatalf("grant: %+v", r)
	}
	return r.Index
}

func TestSessionGrantKeepAliveRevoke(t *testing.T) {
	f := newFeeder(t, Options{})
	f.put("persistent", "p")
	id := f.grant(3, 5*time.Second)
	if id != f.index {
		t.Fatalf("session ID %d, want the grant's index %d", id, f.index)
	}
	se, ok := f.s.Session(id)
	if !ok || se.TTL != 5*time.Second || se.Owner != 3 || se.Renewed != id {
		t.Fatalf("session %+v %v", se, ok)
	}
	rev := f.s.Revision()
	if rev != 1 {
		t.Fatalf("a grant moved the revision to %d", rev)
	}
	// Keys bound to it take the session's owner.
	r := f.op(Op{Type: OpPut, Key: "a", Value: []byte("1"), Session: id})
	if !r.Succeeded || r.KV.Owner != 3 || r.KV.Session != id {
		t.Fatalf("put in session: %+v", r)
	}
	f.op(Op{Type: OpPut, Key: "\x00lock/l", Session: id})
	f.op(Op{Type: OpPut, Key: "b", Value: []byte("2"), Session: id})
	// A later put without the session makes a key persistent.
	f.op(Op{Type: OpPut, Key: "b", Value: []byte("3")})

	ch := f.s.SessionsChanged()
	r = f.op(Op{Type: OpKeepAlive, Session: id})
	if !r.Succeeded || r.Err != nil {
		t.Fatalf("keep-alive: %+v", r)
	}
	if se, _ := f.s.Session(id); se.Renewed != f.index {
		t.Fatalf("keep-alive did not record its index: %+v", se)
	}
	select {
	case <-ch:
		t.Fatalf("a keep-alive closed SessionsChanged")
	default:
	}
	renewed := f.index

	// The leader's expiry, conditioned on an older renewal, changes nothing.
	rev = f.s.Revision()
	r = f.op(Op{Type: OpRevoke, Session: id, IfRenewed: id})
	if r.Succeeded || r.Err != nil || f.s.Revision() != rev {
		t.Fatalf("revoke of a renewed session: %+v", r)
	}
	if _, ok := f.s.Session(id); !ok {
		t.Fatalf("session gone")
	}
	r = f.op(Op{Type: OpRevoke, Session: id, IfRenewed: renewed})
	if !r.Succeeded || r.Revision != rev+1 {
		t.Fatalf("revoke: %+v (rev %d)", r, rev)
	}
	select {
	case <-ch:
	default:
		t.Fatalf("revoke did not close SessionsChanged")
	}
	if _, ok := f.s.Session(id); ok {
		t.Fatalf("session still there")
	}
	for _, k := range []string{"a", "\x00lock/l"} {
		if _, ok, _ := f.s.Get(k); ok {
			t.Fatalf("key %q bound to the revoked session survived", k)
		}
	}
	if kv, ok, _ := f.s.Get("b"); !ok || string(kv.Value) != "3" {
		t.Fatalf("persistent key b: %+v %v", kv, ok)
	}
	if _, ok, _ := f.s.Get("persistent"); !ok {
		t.Fatalf("an unbound key went with the session")
	}
	// Watches see the deletes, at one revision, in key order.
	evs, err := f.s.Since(rev+1, InternalPrefix)
	if err != nil || len(evs) != 1 || evs[0].Type != EventDelete || evs[0].KV.Key != "\x00lock/l" {
		t.Fatalf("internal events: %+v %v", evs, err)
	}
	evs, _ = f.s.Since(rev+1, "")
	if len(evs) != 1 || evs[0].KV.Key != "a" || evs[0].Revision != rev+1 || evs[0].Prev.Session != id {
		t.Fatalf("events: %+v", evs)
	}
	// A gone session refuses everything.
	for _, op := range []Op{{Type: OpKeepAlive, Session: id}, {Type: OpRevoke, Session: id}, {Type: OpPut, Key: "c", Session: id}} {
		if r := f.op(op); r.Succeeded || !errors.Is(r.Err, ErrSessionNotFound) {
			t.Fatalf("%v on a revoked session: %+v", op.Type, r)
		}
	}
}

func TestSessionOwnerRemoved(t *testing.T) {
	f := newFeeder(t, Options{})
	id := f.grant(4, time.Second)
	other := f.grant(5, time.Second)
	f.op(Op{Type: OpPut, Key: "a", Session: id})
	f.op(Op{Type: OpPut, Key: "b", Session: other})
	f.removeV1(4)
	if _, ok := f.s.Session(id); ok {
		t.Fatalf("session of a removed owner kept")
	}
	if _, ok, _ := f.s.Get("a"); ok {
		t.Fatalf("key of a removed owner's session kept")
	}
	if _, ok := f.s.Session(other); !ok {
		t.Fatalf("another owner's session dropped")
	}
	if r := f.op(Op{Type: OpGrant, Owner: 4, TTL: time.Second}); !errors.Is(r.Err, ErrOwnerRemoved) {
		t.Fatalf("grant to a removed owner: %+v", r)
	}
}

func TestSessionOpChecks(t *testing.T) {
	bad := []Op{
		{Type: OpGrant, TTL: time.Second},                                // no owner
		{Type: OpGrant, Owner: 1},                                        // no TTL
		{Type: OpGrant, Owner: 1, TTL: MaxSessionTTL + time.Millisecond}, // too long
		{Type: OpGrant, Owner: 1, TTL: time.Second + 1},                  // not whole ms
		{Type: OpGrant, Owner: 1, TTL: time.Second, Key: "a"},            // a key
		{Type: OpKeepAlive},                                              // no session
		{Type: OpKeepAlive, Session: 1, IfRenewed: 2},                    // conditional
		{Type: OpRevoke, Session: 1, Owner: 2},                           // an owner
		{Type: OpPut, Key: "a", Session: 1, Owner: 2},                    // both
		{Type: OpDelete, Key: "a", Session: 1},                           // delete in session
		{Type: OpPut, Key: "a", TTL: time.Second},                        // TTL on a put
	}
	for _, op := range bad {
		if _, err := EncodeOp(op); !errors.Is(err, ErrMalformed) {
			t.Errorf("EncodeOp(%+v) = %v", op, err)
		}
	}
	good := []Op{
		{Type: OpGrant, Owner: 1, TTL: 1500 * time.Millisecond, ReqID: 7, Term: 3},
		{Type: OpKeepAlive, Session: 9},
		{Type: OpRevoke, Session: 9, IfRenewed: 12, Term: 2},
		{Type: OpPut, Key: "k", Value: []byte("v"), Session: 9, Compare: true, ModRevision: 4},
	}
	for _, op := range good {
		data := mustEncode(t, op)
		back, err := DecodeOp(data)
		if err != nil || back.Type != op.Type || back.Session != op.Session || back.TTL != op.TTL || back.IfRenewed != op.IfRenewed || back.Owner != op.Owner || back.Term != op.Term || back.ReqID != op.ReqID {
			t.Errorf("round trip %+v: %+v %v", op, back, err)
		}
	}
	// Hostile bytes: flags, trailing bytes, a TTL past the maximum, a
	// session 0 on a put.
	for _, data := range [][]byte{
		{Kind, byte(OpGrant), 1, 0, 0, 0, 10, 1, 0},
		{Kind, byte(OpGrant), 0, 0, 0, 0, 10, 1, 0, 0},
		{Kind, byte(OpGrant), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0},
		{Kind, byte(OpKeepAlive), 0, 0, 0},
		{Kind, byte(OpPut), flagSession, 0, 0, 0, 0, 1, 'a', 0, 0},
		{Kind, byte(OpRevoke) + 1, 0, 0, 0, 1, 0, 0, 0},
	} {
		if _, err := DecodeOp(data); err == nil {
			t.Errorf("DecodeOp(%v) accepted", data)
		}
	}
}

func TestSessionSnapshot(t *testing.T) {
	f := newFeeder(t, Options{})
	plain := New(Options{})
	plain.Restore(f.s.Snapshot())
	id := f.grant(3, 2*time.Second)
	id2 := f.grant(4, time.Minute)
	f.op(Op{Type: OpPut, Key: "a", Session: id})
	f.op(Op{Type: OpPut, Key: "z", Session: id})
	f.op(Op{Type: OpPut, Key: "m", Session: id2})
	f.op(Op{Type: OpPut, Key: "e", Owner: 3})
	f.op(Op{Type: OpKeepAlive, Session: id2})
	snap := f.s.Snapshot()

	g := New(Options{})
	ch := g.SessionsChanged()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatalf("Restore did not close SessionsChanged")
	}
	if !bytes.Equal(g.Snapshot(), snap) {
		t.Fatalf("snapshot does not round trip")
	}
	want := f.s.Sessions()
	got := g.Sessions()
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] || got[1].Renewed != f.index {
		t.Fatalf("sessions %+v, want %+v", got, want)
	}
	if kv, _, _ := g.Get("z"); kv.Session != id {
		t.Fatalf("binding lost: %+v", kv)
	}
	// The restored session still deletes its keys.
	g.Apply(raftpb.Entry{Index: f.index + 1, Type: raftpb.EntryNormal, Data: mustEncode(t, Op{Type: OpRevoke, Session: id})})
	if _, ok, _ := g.Get("a"); ok {
		t.Fatalf("restored binding not honoured")
	}
	if _, ok, _ := g.Get("e"); !ok {
		t.Fatalf("an ephemeral key of the same owner went with the session")
	}
	// A store without sessions writes the bytes it wrote before sessions.
	if s := New(Options{}); !bytes.Equal(s.Snapshot(), plain.Snapshot()) {
		t.Fatalf("empty snapshots differ")
	}

	// Hostile sections are refused whole.
	for name, bad := range map[string][]byte{
		"truncated":      snap[:len(snap)-1],
		"trailing":       append(bytes.Clone(snap), 0),
		"zero sessions":  append(cut(t, snap), sessionSection, 0),
		"future session": append(cut(t, snap), sessionSection, 1, 0xff, 0x7f, 1, 3, 0xff, 0x7f, 0),
		"unknown key":    append(cut(t, snap), sessionSection, 1, 1, 1, 3, 1, 1, 1, 'q'),
		"wrong owner":    append(cut(t, snap), sessionSection, 1, 1, 1, 9, 1, 1, 1, 'e'),
		"bad TTL":        append(cut(t, snap), sessionSection, 1, 1, 0, 3, 1, 0),
	} {
		h := New(Options{})
		if err := h.Restore(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Restore = %v", name, err)
		}
		if len(h.Sessions()) != 0 {
			t.Errorf("%s: a failed Restore changed the state", name)
		}
	}
}

// cut returns snap without its sessions section (snap has one).
func cut(t *testing.T, snap []byte) []byte {
	t.Helper()
	g := New(Options{})
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// Drop the sessions (revoking would move the revision): rebuild from a
	// store with the same keys but no sessions.
	g.mu.Lock()
	g.sess.byID = map[uint64]*Session{}
	g.keys.Ascend(func(kv *KeyValue) bool { kv.Session = 0; return true })
	g.mu.Unlock()
	return bytes.Clone(g.Snapshot())
}
