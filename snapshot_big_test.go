package qcluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestJoinerCatchesUpWithLargeRegistry: a registry of 200 members, each
// with metadata near the 64 KiB limit, is a snapshot of about 13 MB, more
// than a raft frame may carry (8 MiB); a new peer still joins and, from
// that snapshot, sees every member.
func TestJoinerCatchesUpWithLargeRegistry(t *testing.T) {
	t.Parallel() // seconds of waiting on timers, little CPU: beside another such test
	tc := newTestCluster(t, 1)
	leader := tc.waitLeader(20 * time.Second)
	blob := strings.Repeat("x", MaxMetadataSize-100)
	const n = 200
	start := time.Now()
	for i := range n {
		p := Peer{Host: "127.0.0.1", Port: 1 + i, Identifier: fmt.Sprintf("learner-%03d", i),
			Metadata: map[string]any{"blob": blob, "i": float64(i)}}
		// ErrNoLeader is a documented answer: under -race on a loaded
		// machine the one voter's node loop can be held (applying and
		// snapshotting a registry of megabytes) longer than its lease, and
		// it leads again at its next round. The test is about the joiner's
		// catch-up, so it waits for the leader and asks again, as a caller
		// would.
		for {
			err := leader.AddPeer(ctxTimeout(t, 60*time.Second), p, false)
			if errors.Is(err, ErrNoLeader) {
				leader = tc.waitLeader(20 * time.Second)
				continue
			}
			if err != nil {
				t.Fatalf("AddPeer %d: %v", i, err)
			}
			break
		}
	}
	t.Logf("added %d members in %v; registry snapshot %d bytes", n, time.Since(start), len(leader.reg.Load().Snapshot()))
	start = time.Now()
	j := tc.addJoiner("joiner", 0, true)
	joiner := tc.peers[j]
	waitFor(t, 90*time.Second, "the joiner to see every member", func() bool {
		return joiner.reg.Load().Len() == n+2 && joiner.inConf(joiner.selfID)
	})
	t.Logf("joiner caught up in %v", time.Since(start))
	for id, p := range leader.reg.Load().All() {
		q, ok := joiner.reg.Load().Get(id)
		if !ok || !p.Same(*q) {
			t.Fatalf("the joiner's record of %s differs", p.Identifier)
		}
	}
}
