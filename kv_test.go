package qcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	kvstore "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/kv"
)

// followers returns the running peers other than leader.
func (tc *testCluster) followers(leader *Cluster) []*Cluster {
	var out []*Cluster
	for _, p := range tc.peers {
		if p != nil && p != leader {
			out = append(out, p)
		}
	}
	return out
}

// mustPut puts key=value on c and returns the result.
func mustPut(t testing.TB, c *Cluster, key, value string, opts ...kv.WriteOption) kv.Result {
	t.Helper()
	res, err := c.KV().Put(ctxTimeout(t, 30*time.Second), key, []byte(value), opts...)
	if err != nil {
		t.Fatalf("%s: Put(%q): %v", c.cfg.Identifier, key, err)
	}
	return res
}

// mustGet reads key on c (linearizable).
func mustGet(t testing.TB, c *Cluster, key string) kv.KeyValue {
	t.Helper()
	v, err := c.KV().Get(ctxTimeout(t, 30*time.Second), key)
	if err != nil {
		t.Fatalf("%s: Get(%q): %v", c.cfg.Identifier, key, err)
	}
	return v
}

// TestKVPutOnFollowerReadOnAnother: a write made on one follower is seen
// by a linearizable read on the other follower and on the leader as soon
// as the write returns, and by stale reads once they catch up.
func TestKVPutOnFollowerReadOnAnother(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	fs := tc.followers(leader)
	for i := range 5 {
		key := fmt.Sprintf("svc/%d", i)
		res := mustPut(t, fs[0], key, fmt.Sprint("v", i))
		if res.KV == nil || res.KV.Key != key || res.KV.ModRevision != res.Revision || res.KV.Version != 1 || res.Prev != nil {
			t.Fatalf("put result %+v", res)
		}
		for _, c := range []*Cluster{fs[1], leader} {
			if v := mustGet(t, c, key); string(v.Value) != fmt.Sprint("v", i) || v.ModRevision != res.Revision || v.Owner != "" {
				t.Fatalf("%s read %+v after the put at %d", c.cfg.Identifier, v, res.Revision)
			}
		}
	}
	kvs, rev, err := fs[1].KV().List(ctxTimeout(t, 30*time.Second), "svc/")
	if err != nil || len(kvs) != 5 || kvs[0].Key != "svc/0" || kvs[4].Key != "svc/4" || rev < kvs[4].ModRevision {
		t.Fatalf("List = %+v @%d, %v", kvs, rev, err)
	}
	waitFor(t, 20*time.Second, "stale reads to catch up", func() bool {
		v, err := fs[1].KV().Get(context.Background(), "svc/4", kv.Stale())
		return err == nil && string(v.Value) == "v4"
	})
	if _, err := leader.KV().Get(ctxTimeout(t, 30*time.Second), "nope"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Get(absent) = %v", err)
	}
}

// TestKVLinearizableReadOnLaggingFollower: a follower that receives
// nothing from the leader does not answer a linearizable read with what it
// has (a stale Get does); once it hears again, the read sees the write.
func TestKVLinearizableReadOnLaggingFollower(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	fi := tc.index(f)
	mustPut(t, leader, "k", "old")
	waitFor(t, 20*time.Second, "the follower to apply the first write", func() bool {
		v, err := f.KV().Get(context.Background(), "k", kv.Stale())
		return err == nil && string(v.Value) == "old"
	})
	tc.isolate(fi, true)
	mustPut(t, leader, "k", "new")
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if v, err := f.KV().Get(short, "k"); err == nil {
		t.Fatalf("a cut-off follower answered a linearizable read: %q", v.Value)
	}
	if v, err := f.KV().Get(context.Background(), "k", kv.Stale()); err != nil || string(v.Value) != "old" {
		t.Fatalf("stale read on the cut-off follower: %q, %v", v.Value, err)
	}
	tc.isolate(fi, false)
	if v := mustGet(t, f, "k"); string(v.Value) != "new" {
		t.Fatalf("after healing: %q", v.Value)
	}
}

// TestKVPutSurvivesLeaderLoss: a follower's write sent to a leader that
// is cut off right then is not left hanging: once a new leader's term is
// under way the follower knows the write never applied (it is fenced to
// its term) and proposes it again; it applies once.
func TestKVPutSurvivesLeaderLoss(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	li := tc.index(leader)
	term := leader.Term()
	tc.isolate(li, true)
	ctx := ctxTimeout(t, 20*time.Second)
	res, err := f.KV().Put(ctx, "once", []byte("x"), kv.IfAbsent())
	if err != nil {
		t.Fatalf("Put across the leader's loss: %v", err)
	}
	if res.KV.Version != 1 || f.Term() <= term {
		t.Fatalf("result %+v in term %d (was %d)", res, f.Term(), term)
	}
	tc.isolate(li, false)
	if v := mustGet(t, leader, "once"); v.Version != 1 || v.ModRevision != res.Revision {
		t.Fatalf("after healing: %+v", v)
	}
}

// TestKVFollowerReadsShareBarriers: concurrent linearizable reads on a
// follower share barriers instead of committing one each.
func TestKVFollowerReadsShareBarriers(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	mustPut(t, leader, "k", "v")
	mustGet(t, f, "k")
	before := f.kv.Store().AppliedIndex()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := f.KV().Get(ctxTimeout(t, 30*time.Second), "k"); err != nil || string(v.Value) != "v" {
				errs <- fmt.Errorf("%q, %v", v.Value, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Each barrier is one applied entry (nothing else is written).
	if barriers := f.kv.Store().AppliedIndex() - before; barriers >= n/2 {
		t.Fatalf("%d barriers for %d concurrent reads", barriers, n)
	} else {
		t.Logf("%d barriers for %d concurrent reads", barriers, n)
	}
}

// TestKVCompareAndSwap: create-if-absent and compare on the mod revision,
// from a follower and from the leader; a failed compare changes nothing and
// returns the key as it is.
func TestKVCompareAndSwap(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	ctx := ctxTimeout(t, 60*time.Second)
	s := f.KV()

	first, err := s.Put(ctx, "cfg", []byte("1"), kv.IfAbsent())
	if err != nil {
		t.Fatal(err)
	}
	res, err := leader.KV().Put(ctx, "cfg", []byte("2"), kv.IfAbsent())
	if !errors.Is(err, ErrCompareFailed) || res.KV == nil || string(res.KV.Value) != "1" || res.KV.ModRevision != first.Revision {
		t.Fatalf("second create: %+v, %v", res, err)
	}
	second, err := leader.KV().Put(ctx, "cfg", []byte("2"), kv.IfModRevision(first.Revision))
	if err != nil || second.Prev == nil || string(second.Prev.Value) != "1" || second.KV.Version != 2 || second.KV.CreateRevision != first.Revision {
		t.Fatalf("CAS: %+v, %v", second, err)
	}
	if res, err := s.Put(ctx, "cfg", []byte("3"), kv.IfModRevision(first.Revision)); !errors.Is(err, ErrCompareFailed) || res.KV.ModRevision != second.Revision {
		t.Fatalf("stale CAS: %+v, %v", res, err)
	}
	if _, err := s.Delete(ctx, "cfg", kv.IfModRevision(first.Revision)); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("stale compare-and-delete: %v", err)
	}
	if res, err := s.Delete(ctx, "cfg", kv.IfModRevision(second.Revision)); err != nil || res.Prev == nil || string(res.Prev.Value) != "2" {
		t.Fatalf("compare-and-delete: %+v, %v", res, err)
	}
	if _, err := s.Delete(ctx, "cfg"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("delete of an absent key: %v", err)
	}
	if v, err := leader.KV().Get(ctx, "cfg"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("after delete: %+v, %v", v, err)
	}

	// Refused before anything is proposed.
	for _, tt := range []struct {
		key   string
		value []byte
		want  error
	}{
		{"", nil, ErrInvalidKey},
		{"\x00lock/x", nil, ErrInvalidKey},
		{"a\x00b", nil, ErrInvalidKey},
		{strings.Repeat("k", kvstore.MaxKeySize+1), nil, ErrTooLarge},
		{"big", make([]byte, kvstore.MaxValueSize+1), ErrTooLarge},
	} {
		if _, err := s.Put(ctx, tt.key, tt.value); !errors.Is(err, tt.want) {
			t.Errorf("Put(%.10q, %d bytes) = %v, want %v", tt.key, len(tt.value), err, tt.want)
		}
	}
	if _, err := s.Put(ctx, "max", make([]byte, kvstore.MaxValueSize)); err != nil {
		t.Fatalf("a value of the largest size: %v", err)
	}
}

// TestKVEphemeralDroppedWithMember: a key bound to a member disappears,
// with a delete event naming that member as the owner, when the member is
// removed; persistent keys it wrote stay.
func TestKVEphemeralDroppedWithMember(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	fi := tc.index(f)
	ctx := ctxTimeout(t, 60*time.Second)

	res := mustPut(t, f, "svc/"+f.cfg.Identifier, "addr", kv.Ephemeral())
	mustPut(t, f, "persistent", "x")
	if v := mustGet(t, leader, "svc/"+f.cfg.Identifier); v.Owner != f.cfg.Identifier {
		t.Fatalf("ephemeral key: %+v", v)
	}
	events, err := leader.KV().Watch(ctx, "svc/", res.Revision+1)
	if err != nil {
		t.Fatal(err)
	}
	tc.stop(fi)
	if err := leader.RemovePeer(ctx, tc.cfgs[fi].Identifier); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.Type != kv.EventDelete || ev.KV.Key != "svc/"+tc.cfgs[fi].Identifier || ev.Prev == nil || ev.Prev.Owner != tc.cfgs[fi].Identifier {
			t.Fatalf("event %+v (prev %+v)", ev, ev.Prev)
		}
	case <-ctx.Done():
		t.Fatal("no delete event for the removed member's key")
	}
	for _, c := range tc.followers(nil) {
		if _, err := c.KV().Get(ctx, "svc/"+tc.cfgs[fi].Identifier); !errors.Is(err, ErrKeyNotFound) {
			t.Fatalf("%s still has the removed member's key: %v", c.cfg.Identifier, err)
		}
		if v := mustGet(t, c, "persistent"); string(v.Value) != "x" {
			t.Fatalf("persistent key: %+v", v)
		}
	}
}

// TestLockMutualExclusion: holders on every peer never overlap, and each
// holding gets a greater token than the one before.
func TestLockMutualExclusion(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader(20 * time.Second)
	ctx := ctxTimeout(t, 120*time.Second)
	var (
		holding atomic.Int32
		mu      sync.Mutex
		tokens  []uint64
		wg      sync.WaitGroup
		errs    = make(chan error, 100)
	)
	for _, p := range tc.peers {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					l, err := p.Lock(ctx, "job")
					if err != nil {
						errs <- fmt.Errorf("%s: Lock: %w", p.cfg.Identifier, err)
						return
					}
					if n := holding.Add(1); n != 1 {
						errs <- fmt.Errorf("%d holders at once", n)
					}
					mu.Lock()
					tokens = append(tokens, l.Token())
					mu.Unlock()
					select {
					case <-l.Lost():
						errs <- fmt.Errorf("%s: lock lost while held", p.cfg.Identifier)
					default:
					}
					holding.Add(-1)
					if err := l.Unlock(ctx); err != nil {
						errs <- fmt.Errorf("%s: Unlock: %w", p.cfg.Identifier, err)
						return
					}
					<-l.Lost() // closed by Unlock
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(tokens) != 18 {
		t.Fatalf("%d holdings, want 18", len(tokens))
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("tokens %v: not strictly increasing", tokens)
		}
	}
}

// TestLockReleasedWhenHolderRemoved: a lock held by a member that dies
// stays held (it is still a member) until the member is removed; then a
// waiter on another peer gets it, with a greater token.
func TestLockReleasedWhenHolderRemoved(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	other := tc.followers(leader)[1]
	ctx := ctxTimeout(t, 60*time.Second)
	l, err := f.Lock(ctx, "leader-job")
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		l   *kv.Lock
		err error
	}
	waiter := make(chan got, 1)
	go func() {
		l, err := other.Lock(ctx, "leader-job")
		waiter <- got{l, err}
	}()
	fi := tc.index(f)
	tc.stop(fi)
	select {
	case <-l.Lost():
	case <-ctx.Done():
		t.Fatal("Lost not closed when the holder's peer closed")
	}
	if v := mustGet(t, leader, kv.LockPrefix+"leader-job"); v.Owner != tc.cfgs[fi].Identifier {
		t.Fatalf("the lock of a closed member (still a member) is not held: %+v", v)
	}
	if err := leader.RemovePeer(ctx, tc.cfgs[fi].Identifier); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-waiter:
		if g.err != nil {
			t.Fatal(g.err)
		}
		if g.l.Token() <= l.Token() {
			t.Fatalf("token %d after %d", g.l.Token(), l.Token())
		}
		if err := g.l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the waiter did not get the lock of the removed member")
	}
}

// TestLockLostAndUnlock: a lock whose key is deleted behind its back (here
// by a forged internal write) reports Lost, and Unlock says ErrLockLost.
func TestLockLostAndUnlock(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	ctx := ctxTimeout(t, 60*time.Second)
	l, err := leader.Lock(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.kv.Propose(ctx, kvstore.Op{Type: kvstore.OpDelete, Key: kv.LockPrefix + "x"}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-ctx.Done():
		t.Fatal("Lost not closed when the key was deleted")
	}
	// Another holder takes it; the first one's Unlock must not release it.
	l2, err := tc.followers(leader)[0].Lock(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Unlock of a lost lock: %v", err)
	}
	if v := mustGet(t, leader, kv.LockPrefix+"x"); v.ModRevision != l2.Token() {
		t.Fatalf("the lost holder's Unlock released the new holding: %+v", v)
	}
	select {
	case <-l2.Lost():
		t.Fatal("the new holding is lost")
	default:
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Lock(ctx, ""); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Lock(\"\") = %v", err)
	}
}

// TestKVSurvivesLeaderClose: every acknowledged write is readable on the
// survivors after the leader stops.
func TestKVSurvivesLeaderClose(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	for i := range 30 {
		mustPut(t, tc.peers[i%3], fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	li := tc.index(leader)
	tc.stop(li)
	tc.waitLeader(30*time.Second, li)
	for _, c := range tc.followers(nil) {
		kvs, _, err := c.KV().List(ctxTimeout(t, 30*time.Second), "k")
		if err != nil || len(kvs) != 30 {
			t.Fatalf("%s: %d keys, %v", c.cfg.Identifier, len(kvs), err)
		}
		for i, v := range kvs {
			if string(v.Value) != fmt.Sprint(i) {
				t.Fatalf("%s: %s = %q", c.cfg.Identifier, v.Key, v.Value)
			}
		}
	}
}

// TestKVRestartKeepsData: after a compaction (the store goes into the raft
// snapshot) and more writes (replayed from the log), all peers restart
// with the same keys; a watch from before the snapshot is ErrCompacted
// with the oldest revision kept.
func TestKVRestartKeepsData(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	ctx := ctxTimeout(t, 90*time.Second)
	for i := range 10 {
		mustPut(t, leader, fmt.Sprintf("a%d", i), "before")
	}
	mustPut(t, leader, "eph", "x", kv.Ephemeral())
	var snapRev uint64
	for _, p := range tc.peers {
		// Every peer is at the leader's revision once a linearizable read
		// there returned: wait for its stale read to get there.
		waitFor(t, 20*time.Second, "the peers to apply the writes", func() bool {
			_, err := p.KV().Get(ctx, "eph", kv.Stale())
			return err == nil
		})
		err := p.node().Do(ctx, func(core *consensus.Core) error {
			snapRev = p.kv.Store().Revision()
			return core.Compact(p.snapshotData(), 0)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		mustPut(t, tc.peers[i%3], fmt.Sprintf("b%d", i), "after")
	}
	want, rev, err := leader.KV().List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range tc.peers {
		tc.stop(i)
	}
	for i := range tc.peers {
		tc.start(i, nil)
	}
	tc.waitLeader(30 * time.Second)
	for _, p := range tc.peers {
		got, gotRev, err := p.KV().List(ctx, "")
		if err != nil || gotRev != rev || len(got) != len(want) {
			t.Fatalf("%s after restart: %d keys @%d, %v; want %d @%d", p.cfg.Identifier, len(got), gotRev, err, len(want), rev)
		}
		for i := range got {
			if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) || got[i].ModRevision != want[i].ModRevision || got[i].Owner != want[i].Owner {
				t.Fatalf("%s: %+v, want %+v", p.cfg.Identifier, got[i], want[i])
			}
		}
		_, err = p.KV().Watch(ctx, "", 1)
		var ce *kv.CompactedError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) || ce.Oldest != snapRev+1 {
			t.Fatalf("%s: Watch(1) after restart = %v, want oldest %d", p.cfg.Identifier, err, snapRev+1)
		}
		// From the oldest kept on, the writes after the snapshot.
		evs, err := p.KV().Watch(ctx, "b", ce.Oldest)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if ev := <-evs; ev.KV.Key != fmt.Sprintf("b%d", i) {
				t.Fatalf("%s: event %+v", p.cfg.Identifier, ev)
			}
		}
	}
	if v := mustGet(t, tc.peers[1], "eph"); v.Owner != leader.cfg.Identifier {
		t.Fatalf("the ephemeral key's owner after restart: %+v", v)
	}
}

// TestKVJoinerCatchesUpBySnapshot: a member added after the log was
// compacted gets the store in the snapshot it is sent, then the writes
// after it from the log.
func TestKVJoinerCatchesUpBySnapshot(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	ctx := ctxTimeout(t, 90*time.Second)
	for i := range 20 {
		mustPut(t, leader, fmt.Sprintf("s%02d", i), fmt.Sprint(i))
	}
	err := leader.node().Do(ctx, func(core *consensus.Core) error {
		return core.Compact(leader.snapshotData(), 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	j := tc.addJoiner("joiner", tc.index(leader), false)
	joiner := tc.peers[j]
	waitFor(t, 60*time.Second, "the joiner to get the store", func() bool {
		_, err := joiner.KV().Get(ctx, "s19", kv.Stale())
		return err == nil
	})
	mustPut(t, leader, "after", "join")
	kvs, _, err := joiner.KV().List(ctx, "")
	if err != nil || len(kvs) != 21 || kvs[0].Key != "after" || string(kvs[20].Value) != "19" {
		t.Fatalf("joiner: %d keys, %v", len(kvs), err)
	}
}

// TestKVWatchInOrder: a watch from a past revision on another peer gets
// every change from there, in order and without gaps, then the new ones;
// a watch from 0 gets only new ones.
func TestKVWatchInOrder(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	fs := tc.followers(leader)
	ctx := ctxTimeout(t, 60*time.Second)
	first := mustPut(t, fs[0], "w/0", "0").Revision
	for i := 1; i < 10; i++ {
		mustPut(t, tc.peers[i%3], fmt.Sprintf("w/%d", i), fmt.Sprint(i))
	}
	mustPut(t, leader, "other", "not watched")
	if _, err := fs[1].KV().Delete(ctx, "w/3"); err != nil {
		t.Fatal(err)
	}
	events, err := fs[1].KV().Watch(ctx, "w/", first)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := fs[1].KV().Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatal(err)
	}
	writer := make(chan error, 1)
	go func() {
		for i := 10; i < 20; i++ {
			if _, err := tc.peers[i%3].KV().Put(ctx, fmt.Sprintf("w/%d", i), []byte(fmt.Sprint(i))); err != nil {
				writer <- err
				return
			}
		}
		writer <- nil
	}()
	defer func() {
		if err := <-writer; err != nil {
			t.Error(err)
		}
	}()
	var keys []string
	last := first - 1
	for len(keys) < 21 {
		select {
		case ev := <-events:
			if ev.Revision <= last {
				t.Fatalf("event at %d after %d", ev.Revision, last)
			}
			last = ev.Revision
			keys = append(keys, ev.Type.String()+" "+ev.KV.Key)
		case <-ctx.Done():
			t.Fatalf("only %d events: %v", len(keys), keys)
		}
	}
	want := []string{}
	for i := range 10 {
		want = append(want, fmt.Sprintf("put w/%d", i))
	}
	want = append(want, "delete w/3")
	for i := 10; i < 20; i++ {
		want = append(want, fmt.Sprintf("put w/%d", i))
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("events %v\nwant %v", keys, want)
	}
	ev := <-fresh
	if ev.KV.Key != "w/10" {
		t.Fatalf("a watch from 0 began with %+v", ev)
	}
}

// TestKVMasterless: the store needs leader mode.
func TestKVMasterless(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Identifier = "m"
	cfg.Mode = ModeMasterless
	cfg.ListenPort = 7001 // never started
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.KV().Get(ctx, "k"); !errors.Is(err, ErrMasterless) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := c.KV().Put(ctx, "k", nil); !errors.Is(err, ErrMasterless) {
		t.Fatalf("Put: %v", err)
	}
	if _, err := c.KV().Watch(ctx, "", 0); !errors.Is(err, ErrMasterless) {
		t.Fatalf("Watch: %v", err)
	}
	if _, err := c.Lock(ctx, "l"); !errors.Is(err, ErrMasterless) {
		t.Fatalf("Lock: %v", err)
	}
}
