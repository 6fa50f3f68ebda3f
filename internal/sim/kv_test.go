package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kv"
)

// KV scenarios: each protection of a linearizable read or a compare has a
// story that the KV checks (porcupine's above all) fail without it. The
// random schedules find the same breakages (see .ci/mutants/sim-kv-*), but
// only once in a hundred or so schedules.

func kvWait(t *testing.T, c *Cluster, rec *kvRec, what string) {
	t.Helper()
	runUntil(t, c, 4*c.ElectionTimeout(), what, func() bool { return rec.done })
}

// kvPutWait puts key=value on peer id and waits for its acknowledgement.
func kvPutWait(t *testing.T, c *Cluster, id uint64, key, value string) *kvRec {
	t.Helper()
	rec := c.kvWrite(id, 0, kvInput{kind: kvPut, key: key, value: value}, nil)
	kvWait(t, c, rec, "put "+key+"="+value)
	if rec.ret == 0 || !rec.out.ok {
		t.Fatalf("put %s=%s on p%d: no acknowledgement (%+v)", key, value, id, rec)
	}
	return rec
}

// kvCheckHistory runs the linearizability check on what the clients saw
// so far.
func kvCheckHistory(t *testing.T, c *Cluster) {
	t.Helper()
	c.kvLinearizable()
	check(t, c)
}

// A leader cut off from the others and stopped (SIGSTOP) while they elect
// a new leader and acknowledge a write. When it continues it still thinks
// it leads, but its lease ran out on its clock: a linearizable read on it
// is refused (Core.LeaseRead). Without the lease check it would answer
// from its stale store, before the write the client saw acknowledged.
func TestScenarioKVDeposedLeaderRead(t *testing.T) {
	c := newScenario(t, 3)
	old := agreedLeader(t, c)
	kvPutWait(t, c, old, "k", "a")
	c.Isolate(old)
	c.Pause(old)
	var nl uint64
	runUntil(t, c, 10*c.ElectionTimeout(), "a new leader on the majority side", func() bool {
		l, ok := c.Leader()
		nl = l
		return ok && l != old
	})
	kvPutWait(t, c, nl, "k", "b")
	read := c.kvGet(old, 1, "k", nil)
	c.Resume(old)
	kvWait(t, c, read, "the read on the deposed leader")
	kvCheckHistory(t, c)
	if read.role != consensus.Leader {
		t.Fatalf("p%d was %v when the read ran: the scenario no longer reaches a deposed leader that thinks it leads", old, read.role)
	}
	if !read.refused {
		t.Fatalf("the deposed leader p%d served a linearizable read: %+v", old, read.out)
	}
}

// The leader's store applies committed entries 50 ms after its loop does
// (an application applying on a goroutine of its own); a follower's
// applies at once. A write proposed on the follower is acknowledged there
// before the leader's store has it; a linearizable read on the leader then
// must wait until its store has applied the index LeaseRead gave it.
func TestScenarioKVReadWaitsForApply(t *testing.T) {
	var slow uint64
	c := newScenario(t, 3, func(o *Options) {
		o.kvLag = func(id uint64) time.Duration {
			if id == slow {
				return 50 * time.Millisecond
			}
			return 0
		}
	})
	l := agreedLeader(t, c)
	slow = l
	f := others(c, l)[0]
	put := kvPutWait(t, c, f, "k", "a")
	if got := c.peer(l).kv.applied; got >= put.index {
		t.Fatalf("the leader's store applied %d, the put's index %d, before the follower acknowledged it: the scenario lost its lag", got, put.index)
	}
	read := c.kvGet(l, 1, "k", nil)
	kvWait(t, c, read, "the read on the leader")
	kvCheckHistory(t, c)
	if read.ret == 0 || !read.out.exists || read.out.value != "a" {
		t.Fatalf("read on the leader: %+v, want a", read.out)
	}
}

// A compare-and-swap on a mod revision that a later put superseded fails,
// and answers the key as it is.
func TestScenarioKVCompareFails(t *testing.T) {
	c := newScenario(t, 3)
	l := agreedLeader(t, c)
	a := kvPutWait(t, c, l, "k", "a")
	kvPutWait(t, c, l, "k", "b")
	cas := c.kvWrite(others(c, l)[0], 1, kvInput{kind: kvCAS, key: "k", value: "c", expect: true, expectValue: "a", modRev: a.rev}, nil)
	kvWait(t, c, cas, "the compare-and-swap")
	kvCheckHistory(t, c)
	if cas.ret == 0 || cas.out.ok || cas.out.value != "b" {
		t.Fatalf("compare-and-swap on a superseded revision: %+v, want failed with b", cas.out)
	}
}

// The checker is checked: a history that is not linearizable (a read that
// misses an acknowledged write) is a violation naming the key.
func TestKVCheckerCatchesStaleRead(t *testing.T) {
	c := newScenario(t, 3)
	l := agreedLeader(t, c)
	kvPutWait(t, c, l, "k", "a")
	c.kv.clock++
	c.kv.recs = append(c.kv.recs, &kvRec{client: 1, in: kvInput{kind: kvGet, key: "k"}, call: c.kv.clock, ret: c.kv.clock + 1, out: kvOutput{ok: true}})
	c.kv.clock++
	c.kvLinearizable()
	err := c.Err()
	if err == nil || !strings.Contains(err.Error(), InvLinearizable) || !strings.Contains(err.Error(), "key k ") {
		t.Fatalf("a read missing an acknowledged write: got %v, want a %q violation", err, InvLinearizable)
	}
}

// Every peer's KV state survives crashes and restarts (the stored
// snapshot, then the log), and snapshots sent to a peer that fell behind.
func TestScenarioKVRestartAndSnapshot(t *testing.T) {
	c := newScenario(t, 3, func(o *Options) { o.CompactEvery, o.CompactKeep = 4, 1 })
	l := agreedLeader(t, c)
	f := others(c, l)[0]
	c.Crash(f)
	for i := range 12 {
		kvPutWait(t, c, l, "k", string(rune('a'+i)))
	}
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	runUntil(t, c, 10*c.ElectionTimeout(), "the restarted follower to catch up", func() bool {
		return c.peer(f).kv.applied >= c.peer(l).kv.applied
	})
	c.Crash(l)
	if err := c.Restart(l); err != nil {
		t.Fatal(err)
	}
	agreedLeader(t, c)
	runUntil(t, c, 10*c.ElectionTimeout(), "every peer to catch up", c.kvCaughtUp)
	c.kvFinal()
	check(t, c)
	if st := c.Stats(); st.SnapshotsApplied == 0 {
		t.Fatalf("no snapshot was sent: the scenario does not restore one")
	}
}

// The checker is checked: a request applied at a second index (a store
// that applies a proposal delivered twice), or answered as a duplicate of
// an index it was not applied at, is InvKVOnce.
func TestKVCheckerCatchesDoubleApply(t *testing.T) {
	for _, dup := range []bool{false, true} {
		c := newScenario(t, 3)
		l := agreedLeader(t, c)
		put := kvPutWait(t, c, l, "k", "a")
		c.kvResult(c.peer(l), kv.Result{ReqID: put.reqID, Index: put.index + 1, Revision: put.rev + 1, Succeeded: true, Duplicate: dup})
		err := c.Err()
		if v, ok := err.(*Violation); !ok || v.Invariant != InvKVOnce {
			t.Fatalf("request %d applied again at index %d (duplicate %v): got %v, want a %q violation", put.reqID, put.index+1, dup, err, InvKVOnce)
		}
	}
}

// Every message is duplicated, forwarded proposals too: a write proposed
// on a follower reaches the leader twice, is appended twice, and applies
// once; the second copy is a duplicate naming the first one's index, on
// every peer.
func TestScenarioKVDuplicateProposal(t *testing.T) {
	c := newScenario(t, 3)
	l := agreedLeader(t, c)
	c.net.Dup = 1
	f := others(c, l)[0]
	cas := c.kvWrite(f, 0, kvInput{kind: kvCAS, key: "k", value: "a"}, nil) // create if absent
	kvWait(t, c, cas, "the create")
	runUntil(t, c, 10*c.ElectionTimeout(), "every peer to apply the duplicate", func() bool {
		return c.stats.KVDuplicates >= 3
	})
	c.net.Dup = 0
	runUntil(t, c, 10*c.ElectionTimeout(), "every peer to catch up", c.kvCaughtUp)
	c.kvFinal()
	check(t, c)
	if cas.ret == 0 || !cas.out.ok {
		t.Fatalf("the create: %+v", cas.out)
	}
	for _, p := range c.peers {
		if kvv, ok, _ := p.kv.store.Get("k"); !ok || kvv.Version != 1 {
			t.Fatalf("p%d: k %+v (present %v), want version 1", p.id, kvv, ok)
		}
	}
}
