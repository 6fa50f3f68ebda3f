package consensus

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
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

// TestSlowLeaseRoundsWarn: a leader whose lease rounds take a third of the
// election timeout or more, ten rounds in a row, logs one warning that
// names the round trip and the fix, and no more within a minute; fast
// rounds, or slow ones broken by a fast one, log nothing.
func TestSlowLeaseRoundsWarn(t *testing.T) {
	var logs bytes.Buffer
	var rtts []time.Duration
	n := newTestNet(t, []uint64{1, 2, 3}, func(id uint64, c *Config) {
		if id == 1 {
			c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			c.Hooks.LeaseRound = func(rtt time.Duration) { rtts = append(rtts, rtt) }
		}
	})
	n.elect(1)
	// The first answer to each of the leader's lease rounds (a heartbeat
	// whose context names the round) arrives delay late.
	var delay time.Duration
	answered := map[string]bool{}
	n.drop = func(m raftpb.Message) bool {
		if m.Type == raftpb.MsgHeartbeatResp && m.To == 1 && len(m.Context) > 0 && !answered[string(m.Context)] {
			answered[string(m.Context)] = true
			n.now += delay
		}
		return false
	}
	// rounds runs k lease rounds whose answers take d.
	rounds := func(k int, d time.Duration) {
		t.Helper()
		delay = d
		for want := len(rtts) + k; len(rtts) < want; {
			n.now += 10 * time.Millisecond
			for _, c := range n.cores {
				c.Tick()
			}
			n.pump()
		}
		if got := rtts[len(rtts)-1]; got < d || got > d+10*time.Millisecond {
			t.Fatalf("round trip %v, want %v (+ up to a tick)", got, d)
		}
	}
	warnings := func() int { return strings.Count(logs.String(), "lease rounds are slow") }
	slow, fast := 50*time.Millisecond, 40*time.Millisecond // election timeout 150ms

	rounds(30, fast)
	rounds(slowRoundsToWarn-1, slow)
	rounds(1, fast)
	rounds(slowRoundsToWarn-1, slow)
	if w := warnings(); w != 0 {
		t.Fatalf("%d warnings for fast rounds and runs of %d slow ones, want none:\n%s", w, slowRoundsToWarn-1, logs.String())
	}
	rounds(1, slow)
	if w := warnings(); w != 1 {
		t.Fatalf("%d warnings after %d slow rounds in a row, want 1:\n%s", w, slowRoundsToWarn, logs.String())
	}
	for _, want := range []string{"level=WARN", "round_trip=5", "election_timeout=150ms", "at least 3x the round trip"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the warning lacks %q:\n%s", want, logs.String())
		}
	}
	rounds(3*slowRoundsToWarn, slow)
	if w := warnings(); w != 1 {
		t.Fatalf("%d warnings within a minute, want 1:\n%s", w, logs.String())
	}
	n.now += slowWarnEvery
	rounds(1, slow)
	if w := warnings(); w != 2 {
		t.Fatalf("%d warnings a minute later, want 2:\n%s", w, logs.String())
	}
}
