package qcluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qcluster/qcluster/client"
)

// TestAPIKVEndToEnd: the KV store and locks over HTTP on real peers,
// through the Go client: a put on a follower is read on another peer
// (linearizable and stale), a compare-and-swap fails with the key as it
// is, a watch sees the changes in order from a revision, a lock taken
// over the API is exclusive and released when its holder lets go, and an
// ephemeral key goes with its member.
func TestAPIKVEndToEnd(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	li := tc.index(leader)
	f, g := tc.peers[(li+1)%3], tc.peers[(li+2)%3]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cf, err := client.New(f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cg, err := client.New(g.Addr())
	if err != nil {
		t.Fatal(err)
	}

	r1, err := cf.KV().Put(ctx, "config/db", []byte("one"))
	if err != nil {
		t.Fatalf("put on a follower: %v", err)
	}
	got, err := cg.KV().Get(ctx, "config/db")
	if err != nil || string(got.Value) != "one" || got.ModRevision != r1.Revision {
		t.Fatalf("linearizable get on another peer = %+v, %v; want one at %d", got, err, r1.Revision)
	}
	if _, err := cg.KV().Get(ctx, "missing"); !errors.Is(err, client.ErrKeyNotFound) {
		t.Errorf("get of a missing key: %v", err)
	}
	watch, err := cg.KV().Watch(ctx, "config/", r1.Revision)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := cf.KV().Put(ctx, "config/db", []byte("two"), client.IfModRevision(r1.Revision))
	if err != nil || r2.Prev == nil || string(r2.Prev.Value) != "one" {
		t.Fatalf("CAS on the right revision = %+v, %v", r2, err)
	}
	if _, err := cf.KV().Put(ctx, "config/db", []byte("three"), client.IfModRevision(r1.Revision)); !errors.Is(err, client.ErrCompareFailed) {
		t.Fatalf("CAS on a stale revision: %v, want ErrCompareFailed", err)
	}
	if _, err := cg.KV().Delete(ctx, "config/db"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		typ string
		rev uint64
	}{{"put", r1.Revision}, {"put", r2.Revision}, {"delete", 0}} {
		select {
		case ev := <-watch:
			if ev.Err != nil || ev.Type != want.typ || (want.rev != 0 && ev.Revision != want.rev) {
				t.Fatalf("watch event %d = %+v, want %s at %d", i, ev, want.typ, want.rev)
			}
		case <-ctx.Done():
			t.Fatalf("watch event %d: %v", i, ctx.Err())
		}
	}

	// A lock over the API: exclusive, fenced, released by its holder.
	l1, err := cf.Lock(ctx, "backup")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if l, err := cg.Lock(wctx, "backup"); err == nil {
		t.Fatalf("a second holder got the lock, token %d (first %d)", l.Token(), l1.Token())
	}
	wcancel()
	if err := l1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := cg.Lock(ctx, "backup")
	if err != nil {
		t.Fatalf("the lock after its release: %v", err)
	}
	if l2.Token() <= l1.Token() {
		t.Errorf("fencing tokens %d then %d: not increasing", l1.Token(), l2.Token())
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// An ephemeral key of g's member goes when g is removed.
	if _, err := cg.KV().Put(ctx, "svc/g", []byte("up"), client.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	if err := leader.RemovePeer(ctx, g.cfg.Identifier); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the ephemeral key to go with its member", func() bool {
		_, err := cf.KV().Get(ctx, "svc/g")
		return errors.Is(err, client.ErrKeyNotFound)
	})
}
