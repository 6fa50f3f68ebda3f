package apitest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// TestBackend: Set publishes to Watch with the next index, SetPeers wakes
// WaitPeers, the calls are recorded, and Stop ends the streams.
func TestBackend(t *testing.T) {
	b := New(api.Status{Identifier: "a", Index: 7}, []api.Member{{Peer: api.Peer{Identifier: "a"}, IsSelf: true}}, 70)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := b.Watch(ctx)
	if st := <-w; st.Index != 7 {
		t.Fatalf("first status %+v", st)
	}
	b.Set(func(s *api.Status) { s.Term = 2 })
	b.Set(func(s *api.Status) { s.Term = 3 })
	if st := <-w; st.Index != 9 || st.Term != 3 {
		t.Fatalf("after two changes: %+v, want the latest (index 9)", st)
	}
	done := make(chan api.PeerList, 1)
	go func() {
		pl, _ := b.WaitPeers(ctx, 70)
		done <- pl
	}()
	for b.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	b.SetPeers(func(ms []api.Member) []api.Member { return append(ms, api.Member{Peer: api.Peer{Identifier: "b"}}) })
	if pl := <-done; pl.Index != 71 || len(pl.Peers) != 2 {
		t.Fatalf("WaitPeers after a change: %+v", pl)
	}
	if err := b.RemovePeer(ctx, "c"); !errors.Is(err, api.ErrUnknownPeer) {
		t.Errorf("removing a stranger: %v", err)
	}
	b.SetErr(api.ErrNoLeader)
	if _, err := b.Join(ctx, api.JoinRequest{Identifier: "d"}); !errors.Is(err, api.ErrNoLeader) {
		t.Errorf("Join with SetErr: %v", err)
	}
	if c := b.Calls(); len(c.Removed) != 1 || len(c.Joins) != 1 {
		t.Errorf("calls %+v", c)
	}
	ev := b.Events(ctx)
	b.Stop()
	if _, ok := <-w; ok {
		t.Error("Watch open after Stop")
	}
	if _, ok := <-ev; ok {
		t.Error("Events open after Stop")
	}
	if _, err := b.WaitPeers(ctx, 71); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("WaitPeers after Stop: %v", err)
	}
	if b.Watches() != 0 || b.Subscribers() != 0 {
		t.Errorf("%d watches, %d subscribers after Stop", b.Watches(), b.Subscribers())
	}
}

// TestKVStore: revisions, compare-and-swap, the watch history, Compact,
// locks, and Stop ending the watches and locks.
func TestKVStore(t *testing.T) {
	b := New(api.Status{Identifier: "a", Index: 7}, nil, 70)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.KVPut(ctx, "k", []byte("1"), api.KVWriteOptions{Compare: true}); err != nil {
		t.Fatal(err)
	}
	res, err := b.KVPut(ctx, "k", []byte("2"), api.KVWriteOptions{Compare: true})
	if !errors.Is(err, api.ErrCompareFailed) || res.KV == nil || res.KV.ModRevision != 1 {
		t.Fatalf("a create of an existing key: %+v %v", res, err)
	}
	if res, err = b.KVPut(ctx, "k", []byte("2"), api.KVWriteOptions{Compare: true, ModRevision: 1, Ephemeral: true}); err != nil || res.KV.Version != 2 || res.KV.Owner != "a" {
		t.Fatalf("a swap: %+v %v", res, err)
	}
	events, start, err := b.KVWatch(ctx, "", 1)
	if err != nil || start != 1 {
		t.Fatal(start, err)
	}
	for _, want := range []uint64{1, 2} {
		if ev := <-events; ev.Revision != want {
			t.Fatalf("event %+v, want revision %d", ev, want)
		}
	}
	b.Compact(2)
	if _, _, err := b.KVWatch(ctx, "", 1); !errors.Is(err, api.ErrCompacted) {
		t.Fatalf("a watch from a compacted revision: %v", err)
	}
	token, lost, err := b.Lock(ctx, "l")
	if err != nil || token != 3 {
		t.Fatal(token, err)
	}
	if _, err := b.KVGet(ctx, "\x00lock/l", false); err != nil {
		t.Fatal(err)
	}
	if list, _ := b.KVList(ctx, "", false); len(list.KVs) != 1 {
		t.Fatalf("the list shows internal keys: %+v", list)
	}
	b.Stop()
	<-lost
	for range events {
	}
	if _, err := b.KVGet(ctx, "k", false); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("after Stop: %v", err)
	}
}
