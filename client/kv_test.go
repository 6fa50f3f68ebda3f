package client

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/api/apitest"
)

const kvTestToken = "s3cret"

// kvPeer serves an apitest.Backend's API (with its in-memory KV store) on
// a loopback port.
func kvPeer(t *testing.T) (*apitest.Backend, *httptest.Server) {
	t.Helper()
	self := &api.Peer{Identifier: "server_a", Host: "127.0.0.1", Port: 7001}
	b := apitest.New(api.Status{Identifier: "server_a", Role: "leader", IsLeader: true, Term: 2, Index: 10, Leader: self, Voters: []string{"server_a"}, Mode: api.ModeLeader, Joined: true},
		[]api.Member{{Peer: *self, Voter: true, IsLeader: true, IsSelf: true, Role: "leader", State: "alive"}}, 100)
	srv := httptest.NewServer(api.NewHandlerWithOptions(b, api.Options{Token: kvTestToken, KeepAlive: 50 * time.Millisecond}))
	t.Cleanup(func() {
		b.Stop()
		srv.Close()
	})
	return b, srv
}

func kvClient(t *testing.T, addrs ...string) *Client {
	t.Helper()
	c, err := NewWithOptions(Options{Token: kvTestToken, Timeout: 20 * time.Second}, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestKVClient(t *testing.T) {
	b, srv := kvPeer(t)
	kv := kvClient(t, srv.URL).KV()
	ctx := t.Context()

	res, err := kv.Put(ctx, "config/db", []byte("hello"), IfAbsent())
	if err != nil || res.Revision != 1 || res.KV == nil || res.KV.Version != 1 {
		t.Fatalf("Put: %+v %v", res, err)
	}
	// Keys with characters a path escapes, ones that look like a path, and
	// the dot segments a path would resolve.
	odd := []string{"a b/c?d#e%f", "x//y/../z", "/lead", ".", ".."}
	for _, key := range odd {
		if _, err := kv.Put(ctx, key, []byte(key)); err != nil {
			t.Fatalf("Put %q: %v", key, err)
		}
		if got, err := kv.Get(ctx, key); err != nil || got.Key != key || string(got.Value) != key {
			t.Fatalf("Get %q: %+v %v", key, got, err)
		}
	}
	got, err := kv.Get(ctx, "config/db", Stale())
	if err != nil || string(got.Value) != "hello" || got.ModRevision != 1 {
		t.Fatalf("Get: %+v %v", got, err)
	}
	if _, err := kv.Get(ctx, "nokey"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Get of an absent key: %v", err)
	}
	// Compare-and-swap.
	_, err = kv.Put(ctx, "config/db", []byte("x"), IfAbsent())
	var ae *APIError
	if !errors.Is(err, ErrCompareFailed) || !errors.As(err, &ae) || ae.KV == nil || string(ae.KV.Value) != "hello" {
		t.Fatalf("Put IfAbsent of an existing key: %v (%+v)", err, ae)
	}
	if _, err := kv.Put(ctx, "config/db", []byte("world"), IfModRevision(got.ModRevision)); err != nil {
		t.Fatalf("Put IfModRevision: %v", err)
	}
	if _, err := kv.Put(ctx, "config/db", []byte("again"), IfModRevision(got.ModRevision)); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("a second Put with the same revision: %v", err)
	}
	res, err = kv.Put(ctx, "svc/me", []byte("10.0.0.1"), Ephemeral())
	if err != nil || res.KV.Owner != "server_a" {
		t.Fatalf("Put Ephemeral: %+v %v", res, err)
	}
	list, err := kv.List(ctx, "config/")
	if err != nil || len(list.KVs) != 1 || string(list.KVs[0].Value) != "world" || list.Revision != b.KVRevision() {
		t.Fatalf("List: %+v %v", list, err)
	}
	if list, err = kv.List(ctx, ""); err != nil || len(list.KVs) != len(odd)+2 { // and config/db, svc/me
		t.Fatalf("List all: %+v %v", list, err)
	}
	// Delete.
	if _, err := kv.Delete(ctx, "config/db", IfModRevision(1)); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("Delete with a stale revision: %v", err)
	}
	if res, err := kv.Delete(ctx, "config/db"); err != nil || res.Prev == nil {
		t.Fatalf("Delete: %+v %v", res, err)
	}
	if _, err := kv.Delete(ctx, "config/db"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Delete again: %v", err)
	}
	// The store's errors map to the sentinels.
	if _, err := kv.Put(ctx, "big", make([]byte, api.MaxValueSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put of a value too large: %v", err)
	}
	b.SetKVQuota(4)
	if _, err := kv.Put(ctx, "q", []byte("12345")); !errors.Is(err, ErrQuota) {
		t.Fatalf("Put over the quota: %v", err)
	}
	if _, err := kv.Put(ctx, "", nil); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("Put of an empty key: %v", err)
	}
	noToken, _ := New(srv.URL)
	if _, err := noToken.KV().Put(ctx, "k", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Put without the token: %v", err)
	}
	noToken.CloseIdleConnections()
}

func TestKVClientBlockingGet(t *testing.T) {
	_, srv := kvPeer(t)
	kv := kvClient(t, srv.URL).KV()
	ctx := t.Context()
	if _, err := kv.Put(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	list, err := kv.List(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan api.KeyValue, 1)
	go func() {
		got, _ := kv.Get(ctx, "k", WaitIndex(list.Revision, time.Minute))
		done <- got
	}()
	if _, err := kv.Put(ctx, "k", []byte("2")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if string(got.Value) != "2" {
			t.Fatalf("blocking Get: %+v", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking Get did not answer")
	}
}

// TestKVClientWatch: every change in order, across a broken connection
// (resumed after the last event, without a gap), and the end with
// ErrCompacted.
func TestKVClientWatch(t *testing.T) {
	b, srv := kvPeer(t)
	kv := kvClient(t, srv.URL).KV()
	// The changes go through a client of their own, which is told when
	// the test breaks the connections.
	pc := kvClient(t, srv.URL)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	put := func(key string, opts ...WriteOption) {
		t.Helper()
		if _, err := pc.KV().Put(ctx, key, []byte(key), opts...); err != nil {
			t.Fatal(err)
		}
	}
	breakConnections := func() {
		srv.CloseClientConnections()
		pc.CloseIdleConnections()
	}
	put("svc/a") // 1
	put("other") // 2
	put("svc/b") // 3
	events, err := kv.Watch(ctx, "svc/", 1)
	if err != nil {
		t.Fatal(err)
	}
	next := func() KVWatchEvent {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the watch ended")
			}
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no event")
		}
		panic("unreachable")
	}
	want := func(rev uint64, typ, key string) {
		t.Helper()
		ev := next()
		if ev.Err != nil || ev.Revision != rev || ev.Type != typ || ev.KV.Key != key {
			t.Fatalf("event %+v, want %d %s %s", ev, rev, typ, key)
		}
	}
	want(1, "put", "svc/a")
	want(3, "put", "svc/b")
	put("svc/c", Ephemeral()) // 4
	put("svc/d", Ephemeral()) // 5
	want(4, "put", "svc/c")
	want(5, "put", "svc/d")
	// The connection breaks in the middle of a revision of two events.
	b.DropOwner("server_a") // 6: svc/c and svc/d
	want(6, "delete", "svc/c")
	breakConnections()
	put("svc/e") // 7
	want(6, "delete", "svc/d")
	want(7, "put", "svc/e")
	// The history it would go on from is gone: the watch ends.
	b.Compact(8)
	b.EndWatches()
	ev := next()
	var ce *CompactedError
	if !errors.Is(ev.Err, ErrCompacted) || !errors.As(ev.Err, &ce) || ce.Oldest != 8 {
		t.Fatalf("after the history went: %+v", ev)
	}
	if _, ok := <-events; ok {
		t.Fatal("the watch goes on after its end")
	}
	// A watch from a compacted revision fails at once.
	if _, err := kv.Watch(ctx, "svc/", 2); !errors.As(err, &ce) || ce.Oldest != 8 {
		t.Fatalf("Watch from a compacted revision: %v", err)
	}
	// From now: what comes next, also when it comes while the watch is
	// broken, before any event.
	events, err = kv.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	b.SetKVWatchErr(api.ErrUnavailable) // no new watch for now
	breakConnections()
	put("late") // 8
	b.SetKVWatchErr(nil)
	want(8, "put", "late")
	cancel()
	for range events {
	}
}

// TestLockClient: Lock holds the lock until Unlock, a second one waits for
// it, and Lost is closed when the lock is lost or the connection breaks.
func TestLockClient(t *testing.T) {
	b, srv := kvPeer(t)
	c := kvClient(t, srv.URL)
	ctx := t.Context()
	l, err := c.Lock(ctx, "backup")
	if err != nil || l.Token() == 0 || l.Name() != "backup" {
		t.Fatalf("Lock: %+v %v", l, err)
	}
	if got := b.Locks(); len(got) != 1 {
		t.Fatalf("locks held: %v", got)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = c.Lock(short, "backup")
	cancel()
	if err == nil {
		t.Fatal("a second Lock got a held lock")
	}
	second := make(chan *Lock, 1)
	go func() {
		l2, err := c.Lock(ctx, "backup")
		if err != nil {
			t.Error(err)
		}
		second <- l2
	}()
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	var l2 *Lock
	select {
	case l2 = <-second:
	case <-time.After(30 * time.Second):
		t.Fatal("the second Lock did not get the lock after Unlock")
	}
	if l2 == nil || l2.Token() <= l.Token() {
		t.Fatalf("second lock %+v", l2)
	}
	select {
	case <-l.Lost():
		t.Fatal("an unlocked lock says lost")
	default:
	}
	b.LoseLock("backup")
	select {
	case <-l2.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("Lost not closed after the lock was lost")
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// A broken connection: lost, and the peer releases the lock.
	l3, err := c.Lock(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	select {
	case <-l3.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("Lost not closed after the connection broke")
	}
	waitFor(t, 30*time.Second, "the peer to release the lock", func() bool { return len(b.Locks()) == 0 })
	if err := l3.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockMovesOnOnlyWhenNoConnection: a lock request goes to the next
// address only when the connection could not be made.
func TestLockMovesOnOnlyWhenNoConnection(t *testing.T) {
	b, srv := kvPeer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	c := kvClient(t, dead, srv.URL)
	l, err := c.Lock(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srv.URL, l.Addr()) {
		t.Errorf("held through %s", l.Addr())
	}
	l.Unlock(t.Context())
	b.SetKVErr(api.ErrNoLeader)
	if _, err := c.Lock(t.Context(), "x"); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Lock without a leader: %v", err)
	}
}
