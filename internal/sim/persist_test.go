package sim

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// A leader sends its appends before it persists them, a follower answers
// only once they are durable. The story: the leader L and follower A are
// cut off from B; A's disk stalls on the record's append; A crashes during
// the stall and the write is lost (half of the crashes lose it: seeds are
// tried until one does); L crashes too. A and B elect a leader without the
// record. That is correct only because the record never committed: A's
// answer could not leave before its Save, and L alone is no quorum. A
// follower that answered before its Save would have let L commit (and
// apply) a record that no quorum holds, and the checker would find it
// missing from the new leader's log (leader completeness).
func TestScenarioFollowerAcksOnlyDurableAppends(t *testing.T) {
	lost := 0
	for seed := uint64(1); seed <= 24 && lost < 2; seed++ {
		c := newScenario(t, 3, func(o *Options) { o.Seed = seed })
		old := agreedLeader(t, c)
		fs := others(c, old)
		a, b := fs[0], fs[1]
		c.Partition([]uint64{old, a}, []uint64{b})
		// Quiet first: the commit index of the leader's first entry has
		// reached A, so A's next Save is the record's append.
		runFor(t, c, c.ElectionTimeout())
		c.StallFsync(a, 2*c.ElectionTimeout())
		rec := fmt.Sprintf("committed-only-when-durable-%d", seed)
		c.Propose(old, []byte(rec))
		check(t, c)
		runUntil(t, c, c.ElectionTimeout(), fmt.Sprintf("p%d to block in the Save of the append", a), func() bool {
			return c.peer(a).busyUntil > c.Now()
		})
		// An answer sent before the Save would be back at L by now, and
		// L would have committed and applied the record.
		runFor(t, c, 10*time.Millisecond)
		c.Crash(a)
		c.Crash(old)
		check(t, c)
		if durableHas(t, c, a, rec) {
			t.Logf("seed %d: p%d's stalled write survived the crash; next seed", seed, a)
			continue
		}
		lost++
		c.Heal()
		if err := c.Restart(a); err != nil {
			t.Fatal(err)
		}
		runUntil(t, c, 20*c.ElectionTimeout(), fmt.Sprintf("p%d or p%d to lead without the record", a, b), func() bool {
			l, ok := c.Leader()
			return ok && l != old
		})
		if err := c.Restart(old); err != nil {
			t.Fatal(err)
		}
		agreedLeader(t, c)
		t.Logf("seed %d: p%d lost the stalled append in its crash; p%d and p%d went on without the record, never committed", seed, a, a, b)
	}
	if lost == 0 {
		t.Fatal("no seed lost the stalled write in the crash: the story never ran")
	}
}

// durableHas reports whether peer id's durable log holds a record with data.
func durableHas(t *testing.T, c *Cluster, id uint64, data string) bool {
	t.Helper()
	mem := c.peer(id).mem
	first, _ := mem.FirstIndex()
	last, _ := mem.LastIndex()
	if last < first {
		return false
	}
	ents, err := mem.Entries(first, last+1, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if string(e.Data) == data {
			return true
		}
	}
	return false
}
