package consensus

import (
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/storage"
)

// TestHooks drives a one-voter core by hand: it elects itself, commits the
// entry that opens its term and earns its lease, and the hooks see each
// step.
func TestHooks(t *testing.T) {
	var (
		now       = time.Second
		roles     [][2]Role
		rounds    []time.Duration
		committed []time.Duration
	)
	c, err := New(Config{
		ID:                1,
		Voters:            []uint64{1},
		Storage:           storage.NewMemory(),
		Now:               func() time.Duration { return now },
		HeartbeatInterval: 50 * time.Millisecond,
		ElectionTimeout:   150 * time.Millisecond,
		Hooks: Hooks{
			RoleChanged: func(from, to Role) { roles = append(roles, [2]Role{from, to}) },
			LeaseRound:  func(rtt time.Duration) { rounds = append(rounds, rtt) },
			Committed:   func(d time.Duration) { committed = append(committed, d) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	process := func() {
		t.Helper()
		for c.HasReady() {
			if _, err := c.Process(func([]raftpb.Message) {}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.Campaign(); err != nil {
		t.Fatal(err)
	}
	process()
	if c.View().Role != Leader {
		t.Fatalf("role %v, want leader", c.View().Role)
	}
	// Even alone it passes through pre-candidate and candidate: its own
	// votes count once persisted, in a later Ready.
	want := [][2]Role{{Follower, PreCandidate}, {PreCandidate, Candidate}, {Candidate, Leader}}
	if !slices.Equal(roles, want) {
		t.Errorf("role changes %v, want %v", roles, want)
	}
	if len(committed) != 1 {
		t.Errorf("%d commits reported, want 1 (the entry that opens the term)", len(committed))
	}
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	now += 5 * time.Millisecond
	process()
	if len(committed) != 2 {
		t.Errorf("%d commits reported after a proposal, want 2", len(committed))
	}
	for range 20 {
		now += 10 * time.Millisecond
		c.Tick()
		process()
	}
	if len(rounds) == 0 {
		t.Error("no lease round reported")
	}
	for _, d := range append(rounds, committed...) {
		if d < 0 {
			t.Errorf("negative duration %v", d)
		}
	}
	if n := c.Replicating(); n != 1 {
		t.Errorf("Replicating() = %d, want 1 (the leader itself)", n)
	}
	if len(c.appended) != 0 {
		t.Errorf("%d appended entries still tracked", len(c.appended))
	}
}
