package sim

import (
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/kv"
)

// kvViolation fails the test unless c stopped with a violation of inv.
func kvViolation(t *testing.T, c *Cluster, inv, what string) {
	t.Helper()
	err := c.Err()
	if v, ok := err.(*Violation); !ok || v.Invariant != inv {
		t.Fatalf("%s: got %v, want a %q violation", what, err, inv)
	}
	t.Logf("%s: %s", what, err.(*Violation).Detail)
}

// watchScenario: a cluster with a watcher of every key on a follower
// that crashes and restarts (the watcher resumes on another peer), while
// puts go on; every peer caught up at the end.
func watchScenario(t *testing.T) (*Cluster, *kvWatcher) {
	t.Helper()
	c := newScenario(t, 3, func(o *Options) { o.CompactEvery, o.CompactKeep = 4, 1 })
	l := agreedLeader(t, c)
	c.kvStartWatchers(rand.New(rand.NewPCG(1, 2)), 1)
	w := c.kv.watchers[0]
	w.prefix, w.from, w.next = "", 1, 1
	for i := range 6 {
		kvPutWait(t, c, l, "k", string(rune('a'+i)))
	}
	runUntil(t, c, 10*c.ElectionTimeout(), "the watcher to start", func() bool { return len(w.got) > 0 })
	c.Crash(w.peer)
	for i := range 10 {
		kvPutWait(t, c, l, "k2", string(rune('a'+i)))
	}
	for _, p := range c.peers {
		if p.crashed {
			if err := c.Restart(p.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	agreedLeader(t, c)
	runUntil(t, c, 10*c.ElectionTimeout(), "every peer to catch up", c.kvCaughtUp)
	l2, _ := c.Agreed()
	rev := c.peer(l2).kv.store.Revision()
	runUntil(t, c, 10*c.ElectionTimeout(), "the watcher to catch up", func() bool { return w.next > rev })
	if w.moves == 0 {
		t.Fatalf("the watcher did not resume after its peer crashed")
	}
	return c, w
}

// TestScenarioKVWatchResumes: a watcher whose peer crashes resumes on
// another from the revision after its last event, and gets every event
// once, in order (or a declared compaction).
func TestScenarioKVWatchResumes(t *testing.T) {
	c, w := watchScenario(t)
	c.kvCheckWatchers()
	check(t, c)
	if len(w.got) == 0 {
		t.Fatalf("the watcher got nothing")
	}
	t.Logf("%d events, %d moves, gaps %v", len(w.got), w.moves, w.gaps)
}

// The checker is checked: a watch stream with an event missing (not
// declared compacted), one delivered twice, or two swapped, is
// InvKVWatch.
func TestKVWatchCheckerCatchesGaps(t *testing.T) {
	for _, bad := range []struct {
		name string
		edit func([]kv.Event) []kv.Event
	}{
		{"gap", func(evs []kv.Event) []kv.Event { return append(evs[:2:2], evs[3:]...) }},
		{"duplicate", func(evs []kv.Event) []kv.Event { return append(evs[:3:3], evs[2:]...) }},
		{"swap", func(evs []kv.Event) []kv.Event { evs[1], evs[2] = evs[2], evs[1]; return evs }},
		{"the last one missing", func(evs []kv.Event) []kv.Event { return evs[:len(evs)-1] }},
	} {
		c, w := watchScenario(t)
		if len(w.got) < 4 {
			t.Fatalf("the watcher got %d events", len(w.got))
		}
		w.got = bad.edit(w.got)
		c.kvCheckWatchers()
		kvViolation(t, c, InvKVWatch, bad.name)
	}
}

// lockScenario: client 1 takes the lock on follower f (bound to it), f is
// removed from the cluster (its key goes), client 2 takes the lock while
// client 1 still thinks it holds it.
func lockScenario(t *testing.T) (*Cluster, *kvHolder, *kvHolder) {
	t.Helper()
	c := newScenario(t, 3)
	l := agreedLeader(t, c)
	f := others(c, l)[0]
	const key = kvLockPrefix + "L"
	acq := func(on uint64, client int, value string) *kvRec {
		rec := c.kvWrite(on, client, kvInput{kind: kvCAS, key: key, value: value, owner: on}, nil)
		kvWait(t, c, rec, "acquire on p"+string(rune('0'+on)))
		if rec.ret == 0 || !rec.out.ok {
			t.Fatalf("acquire %s on p%d: %+v", value, on, rec.out)
		}
		return rec
	}
	a := acq(f, 1, "a")
	ha := &kvHolder{client: 1, key: key, value: "a", token: a.rev, start: c.now}
	c.ProposeConfChange(l, raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: f})
	runUntil(t, c, 10*c.ElectionTimeout(), "the removal to drop the lock", func() bool {
		_, ok, _ := c.peer(l).kv.store.Get(key)
		return !ok
	})
	b := acq(l, 2, "b")
	hb := &kvHolder{client: 2, key: key, value: "b", token: b.rev, start: c.now}
	c.kv.holders = append(c.kv.holders, ha, hb)
	ha.end = c.now + 1 // client 1 ends after client 2 began
	return c, ha, hb
}

// TestScenarioKVLockLostToRemoval: a lock bound to a member goes with its
// removal (InvKVEphemeral on every peer), and a holder whose lock went is
// no longer valid: another holder may begin before it ends, with a
// higher token and the deletion between them (InvKVLock holds).
func TestScenarioKVLockLostToRemoval(t *testing.T) {
	c, ha, hb := lockScenario(t)
	c.kvCheckLocks()
	check(t, c)
	if hb.token <= ha.token || c.stats.KVLockOverlapsFenced != 1 || c.stats.KVEphemeralDropped == 0 {
		t.Fatalf("tokens %d, %d; %d overlaps; %d ephemeral keys dropped", ha.token, hb.token, c.stats.KVLockOverlapsFenced, c.stats.KVEphemeralDropped)
	}
}

// The checker is checked: two holders whose critical sections overlap
// while the older lock was not ended in between (its release is the only
// deletion), a token that is not the creation of the key, and two holders
// with the same token, are InvKVLock.
func TestKVLockCheckerCatchesOverlap(t *testing.T) {
	c, ha, hb := lockScenario(t)
	// The deletion between the tokens was client 1's release: its lock
	// was valid until then, and client 2 began before it.
	del, ok := c.kv.ref.deletedIn(ha.key, ha.token, hb.token)
	if !ok {
		t.Fatalf("no deletion between the tokens")
	}
	ha.released = del
	c.kvCheckLocks()
	kvViolation(t, c, InvKVLock, "overlap with a valid older lock")

	c, ha, _ = lockScenario(t)
	ha.token++ // not a creation of the key
	c.kvCheckLocks()
	kvViolation(t, c, InvKVLock, "a token that created nothing")

	c, ha, hb = lockScenario(t)
	hb.token, hb.value = ha.token, ha.value
	c.kvCheckLocks()
	kvViolation(t, c, InvKVLock, "the same token twice")
}

// The checker is checked: a store that still holds a key bound to a
// member after applying its removal is InvKVEphemeral.
func TestKVEphemeralCheckerCatchesLeftover(t *testing.T) {
	c := newScenario(t, 3)
	l := agreedLeader(t, c)
	f := others(c, l)[0]
	rec := c.kvWrite(f, 1, kvInput{kind: kvPut, key: "e", value: "x", owner: f}, nil)
	kvWait(t, c, rec, "the ephemeral put")
	data, err := (&raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: f}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The check of an entry the store did not apply (as a store that
	// ignores removals would leave it).
	c.kvCheckEphemeral(c.peer(l), raftpb.Entry{Type: raftpb.EntryConfChange, Index: 999, Data: data})
	kvViolation(t, c, InvKVEphemeral, "a key left bound to a removed member")
}

// TestScenarioKVWatchAfterSnapshot: a watcher on a follower that fell
// behind and restarted, and received a snapshot: the follower's store
// keeps no events before the snapshot's revision, and says so
// (ErrCompacted, oldest: the revision after it); the watcher then gets
// every later event.
func TestScenarioKVWatchAfterSnapshot(t *testing.T) {
	c := newScenario(t, 3, func(o *Options) { o.CompactEvery, o.CompactKeep = 4, 1 })
	l := agreedLeader(t, c)
	f := others(c, l)[0]
	kvPutWait(t, c, l, "k", "a")
	runUntil(t, c, 10*c.ElectionTimeout(), "the follower to apply the first put", func() bool {
		return c.peer(f).kv.store.Revision() >= 1
	})
	w := &kvWatcher{from: 1, next: 1}
	c.kv.watchers = append(c.kv.watchers, w)
	c.kv.watchDone = true // no polls but this test's
	c.kvWatchPoll(w, c.peer(f))
	c.Crash(f)
	for i := range 12 {
		kvPutWait(t, c, l, "k", string(rune('b'+i)))
	}
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	runUntil(t, c, 10*c.ElectionTimeout(), "the restarted follower to catch up", func() bool {
		return c.peer(f).kv.applied >= c.peer(l).kv.applied
	})
	c.kvWatchPoll(w, c.peer(f))
	kvPutWait(t, c, l, "k", "z")
	runUntil(t, c, 10*c.ElectionTimeout(), "the follower to apply the last put", func() bool {
		return c.peer(f).kv.store.Revision() == c.peer(l).kv.store.Revision()
	})
	c.kvWatchPoll(w, c.peer(f))
	c.kvCheckWatchers()
	check(t, c)
	if len(w.gaps) == 0 || c.Stats().SnapshotsApplied == 0 {
		t.Fatalf("gaps %v, %d snapshots applied: the scenario no longer restores a snapshot behind the watcher", w.gaps, c.Stats().SnapshotsApplied)
	}
	if last := w.got[len(w.got)-1]; string(last.KV.Value) != "z" {
		t.Fatalf("the watcher's last event is %s", fmtEvents([]kv.Event{last}))
	}
	t.Logf("%d events, gaps %v", len(w.got), w.gaps)
}
