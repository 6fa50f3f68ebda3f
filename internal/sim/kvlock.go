package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/kv"
)

// Locks under the simulator's faults, as the root package's Lock takes
// them: a lock is the key kvLockPrefix+name, created only if absent
// (compare on mod revision 0) and bound to the member it is proposed on
// (ephemeral: a configuration change that removes the member deletes it);
// the holder's fencing token is the key's mod revision, the revision of
// the put that created it; it is released by a delete compared with that
// revision. A lock client acquires (trying again while it is held), holds
// it for a while (its critical section: from the acknowledgement of the
// acquire, or from a read that showed it its own value after an acquire
// of unknown outcome, to the call of its release), releases it, and again.
//
// InvKVLock, checked at the end of a run against the reference history,
// for every lock and every holder B with token T_B:
//
//   - the reference put at revision T_B created the lock key (version 1)
//     with B's value: T_B is a token no other holder has;
//   - for every holder A with T_A < T_B whose critical section overlaps
//     B's in (virtual) time, the reference history deletes A's key at a
//     revision E with T_A < E <= T_B that is not A's release: A's lock
//     was no longer valid (its member was removed) when B's began. Two
//     holders whose tokens are both valid never overlap.
//
// InvKVEphemeral, checked on every peer as it applies each entry: once a
// configuration change that removes a member is applied, the store holds
// no key bound to that member.

// Lock and ephemeral invariants.
const (
	InvKVLock      = "lock holders never overlap by fencing token"
	InvKVEphemeral = "ephemeral keys go with their member"
)

// kvLockPrefix starts the simulated lock keys.
const kvLockPrefix = "lock/"

// kvHolder is one critical section of a lock client.
type kvHolder struct {
	client   int
	key      string
	value    string
	token    uint64
	start    time.Duration // acquire acknowledged (or learned by a read)
	end      time.Duration // release called; 0: still held at the end
	released uint64        // the release's revision, if acknowledged
	viaRead  bool
}

// kvLocker is one simulated lock client.
type kvLocker struct {
	id  int
	n   int
	key string
}

// kvStartLockers starts n lock clients on nlocks locks.
func (c *Cluster) kvStartLockers(r *rand.Rand, n, nlocks int) {
	for i := range n {
		l := &kvLocker{id: 1000 + i, key: fmt.Sprintf("%sL%d", kvLockPrefix, r.IntN(nlocks))}
		c.after(time.Duration(r.Int64N(int64(50*time.Millisecond))), func() { c.kvLockRound(l, r) })
	}
}

// kvLockRound acquires l's lock once (or learns it is held) and goes on.
func (c *Cluster) kvLockRound(l *kvLocker, r *rand.Rand) {
	if c.healed || c.err != nil {
		return
	}
	again := func(d time.Duration) {
		c.after(d/2+time.Duration(r.Int64N(int64(d)+1)), func() { c.kvLockRound(l, r) })
	}
	target := c.kvTarget(r)
	if target == nil {
		again(20 * time.Millisecond)
		return
	}
	l.n++
	value := fmt.Sprintf("c%d.%d", l.id, l.n)
	in := kvInput{kind: kvCAS, key: l.key, value: value, owner: target.id}
	c.stats.KVLockAttempts++
	c.kvWrite(target.id, l.id, in, func(rec *kvRec) {
		switch {
		case rec.ret != 0 && rec.out.ok:
			c.kvHold(l, r, &kvHolder{client: l.id, key: l.key, value: value, token: rec.rev, start: c.now})
		case rec.ret == 0 && rec.proposed && !rec.dropped:
			// Unknown: a read says whether it holds the lock.
			c.kvLockLearn(l, r, value, 3)
		default: // held by another (or refused): later
			again(80 * time.Millisecond)
		}
	})
}

// kvLockLearn reads l's lock after an acquire of unknown outcome: if it
// shows value, l holds it (token: the key's mod revision).
func (c *Cluster) kvLockLearn(l *kvLocker, r *rand.Rand, value string, tries int) {
	if c.healed || c.err != nil {
		return
	}
	target := c.kvTarget(r)
	if target == nil || tries == 0 {
		c.after(30*time.Millisecond, func() { c.kvLockRound(l, r) })
		return
	}
	c.kvGet(target.id, l.id, l.key, func(rec *kvRec) {
		switch {
		case rec.ret != 0 && rec.seen.exists && rec.seen.value == value:
			c.kvHold(l, r, &kvHolder{client: l.id, key: l.key, value: value, token: rec.seen.modRev, start: c.now, viaRead: true})
		case rec.ret != 0:
			c.after(10*time.Millisecond, func() { c.kvLockRound(l, r) })
		default:
			c.after(10*time.Millisecond, func() { c.kvLockLearn(l, r, value, tries-1) })
		}
	})
}

// kvHold records h, holds the lock a while, then releases it (a delete
// compared with the token) and goes on.
func (c *Cluster) kvHold(l *kvLocker, r *rand.Rand, h *kvHolder) {
	c.kv.holders = append(c.kv.holders, h)
	c.stats.KVLocksHeld++
	c.after(time.Duration(r.Int64N(int64(300*time.Millisecond))), func() {
		if c.err != nil {
			return
		}
		h.end = c.now
		target := c.kvTarget(r)
		if target == nil {
			c.after(20*time.Millisecond, func() { c.kvLockRound(l, r) })
			return
		}
		c.kvWrite(target.id, l.id, kvInput{kind: kvCASDelete, key: h.key, expect: true, expectValue: h.value, modRev: h.token}, func(rec *kvRec) {
			if rec.ret != 0 && rec.out.ok {
				h.released = rec.rev
			}
			c.after(time.Duration(r.Int64N(int64(20*time.Millisecond))), func() { c.kvLockRound(l, r) })
		})
	})
}

// kvCheckLocks checks InvKVLock.
func (c *Cluster) kvCheckLocks() {
	ref := &c.kv.ref
	byKey := map[string][]*kvHolder{}
	for _, h := range c.kv.holders {
		byKey[h.key] = append(byKey[h.key], h)
	}
	for _, key := range slices.Sorted(func(yield func(string) bool) {
		for k := range byKey {
			if !yield(k) {
				return
			}
		}
	}) {
		hs := byKey[key]
		slices.SortFunc(hs, func(a, b *kvHolder) int { return int(a.token) - int(b.token) })
		for i, b := range hs {
			if !ref.created(key, b.token, b.value) {
				c.fail(InvKVLock, "client %d holds %s with token %d, which is not the creation of the key with its value in the history", b.client, key, b.token)
				return
			}
			if i > 0 && hs[i-1].token == b.token {
				c.fail(InvKVLock, "clients %d and %d hold %s with the same token %d", hs[i-1].client, b.client, key, b.token)
				return
			}
			for _, a := range hs[:i] {
				if !overlaps(a, b) {
					continue
				}
				c.stats.KVLockOverlapsFenced++
				if e, ok := ref.deletedIn(key, a.token, b.token); !ok || (a.released != 0 && a.released == e) {
					c.fail(InvKVLock, "client %d's critical section [%v, %v] with token %d overlaps client %d's [%v, %v] with token %d, and the history does not end the older lock in between",
						a.client, a.start, a.end, a.token, b.client, b.start, b.end, b.token)
					return
				}
			}
		}
	}
}

// overlaps reports whether two critical sections overlap in time (one
// still held at the end lasts to the end).
func overlaps(a, b *kvHolder) bool {
	aEnd, bEnd := a.end, b.end
	if aEnd == 0 {
		aEnd = time.Duration(1<<63 - 1)
	}
	if bEnd == 0 {
		bEnd = time.Duration(1<<63 - 1)
	}
	return a.start < bEnd && b.start < aEnd
}

// created reports whether the reference put at rev created key (version
// 1) with value.
func (ref *kvRef) created(key string, rev uint64, value string) bool {
	if rev >= uint64(len(ref.evs)) {
		return false
	}
	for _, ev := range ref.evs[rev] {
		if ev.Type == kv.EventPut && ev.KV.Key == key {
			return ev.KV.Version == 1 && string(ev.KV.Value) == value
		}
	}
	return false
}

// deletedIn returns the first revision in (from, to] at which the
// reference history deletes key.
func (ref *kvRef) deletedIn(key string, from, to uint64) (uint64, bool) {
	for rev := from + 1; rev <= to && rev < uint64(len(ref.evs)); rev++ {
		if ref.hasDelete(key, rev) {
			return rev, true
		}
	}
	return 0, false
}

// kvCheckEphemeral checks InvKVEphemeral on p after it applied e.
func (c *Cluster) kvCheckEphemeral(p *peer, e raftpb.Entry) {
	var removed []uint64
	switch e.Type {
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if cc.Unmarshal(e.Data) == nil && cc.Type == raftpb.ConfChangeRemoveNode {
			removed = append(removed, cc.NodeID)
		}
	case raftpb.EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if cc.Unmarshal(e.Data) == nil {
			for _, ch := range cc.Changes {
				switch ch.Type {
				case raftpb.ConfChangeRemoveNode:
					removed = append(removed, ch.NodeID)
				case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
					removed = slices.DeleteFunc(removed, func(id uint64) bool { return id == ch.NodeID })
				}
			}
		}
	default:
		return
	}
	if len(removed) == 0 {
		return
	}
	kvs, _ := p.kv.store.List("", 0)
	for _, kvv := range kvs {
		if kvv.Owner != 0 && slices.Contains(removed, kvv.Owner) {
			c.fail(InvKVEphemeral, "p%d applied the removal of node %d at index %d and still holds %s bound to it", p.id, kvv.Owner, e.Index, kvv.Key)
			return
		}
	}
}

// kvCountEphemeral counts, for coverage, the keys a removal applied on
// p deleted (before: the store's keys bound to a member, by owner).
func (c *Cluster) kvCountEphemeral(p *peer, before map[uint64]int) {
	if len(before) == 0 {
		return
	}
	after := map[uint64]int{}
	kvs, _ := p.kv.store.List("", 0)
	for _, kvv := range kvs {
		if kvv.Owner != 0 {
			after[kvv.Owner]++
		}
	}
	for owner, n := range before {
		if after[owner] == 0 {
			c.stats.KVEphemeralDropped += n
		}
	}
}

// kvOwned returns the number of keys bound to each member in p's store.
func kvOwned(p *peer) map[uint64]int {
	out := map[uint64]int{}
	kvs, _ := p.kv.store.List("", 0)
	for _, kvv := range kvs {
		if kvv.Owner != 0 {
			out[kvv.Owner]++
		}
	}
	return out
}
