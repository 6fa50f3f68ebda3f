package consensus

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/storage"
)

// orderStore is a storage.Memory that logs every Save that writes
// something, into the same log as the sends of orderNet.
type orderStore struct {
	*storage.Memory
	log *[]string
}

func (s orderStore) Save(hs raftpb.HardState, ents []raftpb.Entry, snap raftpb.Snapshot) error {
	if err := s.Memory.Save(hs, ents, snap); err != nil {
		return err
	}
	*s.log = append(*s.log, fmt.Sprintf("save term=%d vote=%d entries=%d", hs.Term, hs.Vote, len(ents)))
	return nil
}

// processLogged runs one Process of c and returns its saves and sends in
// the order they happened; sent collects the messages.
func processLogged(t *testing.T, c *Core, log *[]string, sent *[]raftpb.Message) []string {
	t.Helper()
	*log = (*log)[:0]
	if _, err := c.Process(func(ms []raftpb.Message) {
		for _, m := range ms {
			*log = append(*log, "send "+m.Type.String())
		}
		*sent = append(*sent, ms...)
	}); err != nil {
		t.Fatal(err)
	}
	return slices.Clone(*log)
}

// indexOf returns the position of the first event with the prefix.
func indexOf(events []string, prefix string) int {
	return slices.IndexFunc(events, func(e string) bool { return len(e) >= len(prefix) && e[:len(prefix)] == prefix })
}

// A leader sends its appends before it persists them; a follower persists
// the appends before it answers, and a voter its vote before it grants it.
func TestProcessLeaderSendsBeforeSaveFollowerAfter(t *testing.T) {
	logs := map[uint64]*[]string{}
	n := newTestNet(t, []uint64{1, 2, 3}, func(id uint64, c *Config) {
		logs[id] = new([]string)
		c.Storage = orderStore{Memory: storage.NewMemory(), log: logs[id]}
	})
	n.elect(1)
	leader, follower := n.cores[1], n.cores[2]

	if err := leader.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var sent []raftpb.Message
	ev := processLogged(t, leader, logs[1], &sent)
	s, a := indexOf(ev, "save"), indexOf(ev, "send MsgApp")
	if s < 0 || a < 0 || a > s {
		t.Fatalf("leader's Ready: %q: want its MsgApp sent before its Save", ev)
	}

	// The follower takes the append: its answer leaves after its Save.
	var apps []raftpb.Message
	for _, m := range sent {
		if m.Type == raftpb.MsgApp && m.To == 2 {
			apps = append(apps, m)
		}
	}
	if len(apps) == 0 {
		t.Fatalf("no MsgApp to p2 among %v", sent)
	}
	for _, m := range apps {
		if err := follower.Step(m); err != nil {
			t.Fatal(err)
		}
	}
	sent = nil
	ev = processLogged(t, follower, logs[2], &sent)
	s, r := indexOf(ev, "save"), indexOf(ev, "send MsgAppResp")
	if s < 0 || r < 0 || r < s {
		t.Fatalf("follower's Ready: %q: want its MsgAppResp sent after its Save", ev)
	}

	// A vote in a new term: p3 asks p2 once p2 has not heard from p1 for
	// an election timeout (its ticks; elect waited out the start-up vote
	// guard), and p2's grant leaves after its Save.
	n.pump()
	last := lastIndex(t, follower)
	st := follower.rn.BasicStatus()
	for range int(follower.cfg.ElectionTimeout / follower.cfg.TickInterval) {
		n.now += follower.cfg.TickInterval
		follower.Tick()
	}
	for follower.HasReady() { // a pre-vote of its own, perhaps: it goes nowhere
		processLogged(t, follower, logs[2], new([]raftpb.Message))
	}
	vote := raftpb.Message{Type: raftpb.MsgVote, From: 3, To: 2, Term: st.Term + 1, LogTerm: st.Term, Index: last}
	if err := follower.Step(vote); err != nil {
		t.Fatal(err)
	}
	sent = nil
	ev = processLogged(t, follower, logs[2], &sent)
	s, r = indexOf(ev, "save term="), indexOf(ev, "send MsgVoteResp")
	if s < 0 || r < 0 || r < s {
		t.Fatalf("voter's Ready: %q: want its MsgVoteResp sent after its Save", ev)
	}
	if i := slices.IndexFunc(sent, func(m raftpb.Message) bool { return m.Type == raftpb.MsgVoteResp }); sent[i].Reject {
		t.Fatalf("p2 refused the vote: %+v (the test wants a grant)", sent[i])
	}
}

// A single voter elected at once, with a learner to send to: its new term
// is durable before its first append to the learner leaves (raft steps the
// self-votes at Advance, so the Ready that makes it leader is never the one
// that raises its term), and sendsBeforeSave refuses a leader's Ready that
// changes the durable term or vote anyway: a leader that sent at a term it
// had not saved could, after a crash, lead that term again with another
// log.
func TestProcessLeaderSavesNewTermBeforeSend(t *testing.T) {
	var log []string
	mem := storage.NewMemory()
	now := time.Second
	cfg := Config{
		ID:                1,
		Voters:            []uint64{1},
		Storage:           orderStore{Memory: mem, log: &log},
		Now:               func() time.Duration { return now },
		HeartbeatInterval: 50 * time.Millisecond,
		ElectionTimeout:   150 * time.Millisecond,
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sent []raftpb.Message
	var events []string
	drain := func(c *Core) {
		for c.HasReady() {
			events = append(events, processLogged(t, c, &log, &sent)...)
		}
	}
	if err := c.Campaign(); err != nil {
		t.Fatal(err)
	}
	drain(c)
	if err := c.ProposeConfChange(raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode, NodeID: 2}); err != nil {
		t.Fatal(err)
	}
	drain(c)
	if !slices.Contains(c.ConfState().Learners, 2) {
		t.Fatalf("learner 2 not added: %+v", c.ConfState())
	}
	// A snapshot that lists the learner, so that the restarted core knows
	// it before it re-applies the change.
	if err := c.Snapshot(nil); err != nil {
		t.Fatal(err)
	}
	term := c.View().Term

	// Restart on the same storage and campaign.
	if c, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := c.Campaign(); err != nil {
		t.Fatal(err)
	}
	sent, events = nil, nil
	drain(c)
	if v := c.View(); v.Role != Leader || v.Term != term+1 {
		t.Fatalf("after the campaign: %+v, want leader of term %d", v, term+1)
	}
	s := indexOf(events, fmt.Sprintf("save term=%d vote=1", term+1))
	first := indexOf(events, "send ")
	if first < 0 || !slices.ContainsFunc(sent, func(m raftpb.Message) bool { return m.To == 2 }) {
		t.Fatalf("the new leader sent nothing to the learner: %q", events)
	}
	if s < 0 || first < s {
		t.Fatalf("new leader: %q: want the term %d saved before any message leaves", events, term+1)
	}

	// The guard itself, on this leader (durable term term+1, vote 1).
	for _, tc := range []struct {
		name string
		rd   raft.Ready
		want bool
	}{
		{"nothing to save", raft.Ready{}, true},
		{"commit index only", raft.Ready{HardState: raftpb.HardState{Term: term + 1, Vote: 1, Commit: 9}}, true},
		{"new term", raft.Ready{HardState: raftpb.HardState{Term: term + 2, Vote: 1, Commit: 9}}, false},
		{"new vote", raft.Ready{HardState: raftpb.HardState{Term: term + 1, Vote: 2, Commit: 9}}, false},
		{"snapshot", raft.Ready{Snapshot: raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 99, Term: 1}}}, false},
	} {
		if got := c.sendsBeforeSave(tc.rd); got != tc.want {
			t.Errorf("leader, %s: sendsBeforeSave = %v, want %v", tc.name, got, tc.want)
		}
	}
	c.role = Follower
	if c.sendsBeforeSave(raft.Ready{}) {
		t.Error("follower: sendsBeforeSave = true, want false")
	}
}
