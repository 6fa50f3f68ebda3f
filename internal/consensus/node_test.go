package consensus

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/storage"
)

// memNet runs Nodes over an in-memory network on one clock.
type memNet struct {
	t     *testing.T
	base  time.Time
	nodes map[uint64]*Node
	views map[uint64]*atomic.Pointer[View]
	// intercept, when set, runs on the sending Node's goroutine before
	// delivery and returns the messages to deliver; after runs after
	// delivery. Set them before the Nodes run.
	intercept func(from uint64, msgs []raftpb.Message) []raftpb.Message
	after     func(from uint64, msgs []raftpb.Message)
}

func (n *memNet) now() time.Duration { return time.Since(n.base) + time.Second }

type memSender struct {
	n    *memNet
	from uint64
}

func (s memSender) Send(msgs []raftpb.Message) {
	out := msgs
	if s.n.intercept != nil {
		out = s.n.intercept(s.from, msgs)
	}
	for _, m := range out {
		if to := s.n.nodes[m.To]; to != nil {
			to.Deliver(m)
		}
		if m.Type == raftpb.MsgSnap {
			s.n.nodes[s.from].ReportSnapshot(m.To, true)
		}
	}
	if s.n.after != nil {
		s.n.after(s.from, msgs)
	}
}

// add creates node id (voters: a founder; none: a joiner) without running
// it.
func (n *memNet) add(id uint64, voters []uint64, hb, et time.Duration) {
	n.t.Helper()
	v := new(atomic.Pointer[View])
	node, err := NewNode(NodeConfig{
		Core: Config{ID: id, Voters: voters, Storage: storage.NewMemory(), Now: n.now,
			HeartbeatInterval: hb, ElectionTimeout: et},
		Transport: memSender{n, id},
		OnView:    func(view View, _ time.Duration) { v.Store(&view) },
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.nodes[id], n.views[id] = node, v
}

// run starts every Node; they stop when the test ends.
func (n *memNet) run() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, node := range n.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := node.Run(ctx); err != nil {
				n.t.Errorf("Run: %v", err)
			}
		}()
	}
	n.t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func newMemNet(t *testing.T) *memNet {
	return &memNet{t: t, base: time.Now(), nodes: map[uint64]*Node{}, views: map[uint64]*atomic.Pointer[View]{}}
}

// isLeader is IsLeader on node id's published view, at the shared clock.
func (n *memNet) isLeader(id uint64) bool {
	v := n.views[id].Load()
	return v != nil && v.IsLeaderAt(n.now())
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestLeaseDropPublishedBeforeTimeoutNow: a leader that hands leadership
// over publishes the end of its lease before its MsgTimeoutNow leaves, so
// even if its goroutine stalls right after sending (here: the sender
// blocks until the transferee leads, or at most a second), IsLeader is
// never true on both peers.
func TestLeaseDropPublishedBeforeTimeoutNow(t *testing.T) {
	n := newMemNet(t)
	voters := []uint64{1, 2, 3}
	for _, id := range voters {
		// Long timings: the old leader's lease (about 0.44 s) outlasts the
		// hand-over by far, even on a loaded machine.
		n.add(id, voters, 50*time.Millisecond, 500*time.Millisecond)
	}
	var (
		leader, to atomic.Uint64 // set before the transfer starts
		mu         sync.Mutex
		violations []string
	)
	// both checks the transferee first, then the old leader: the old
	// leader saying IsLeader after the new one did is an overlap (its
	// published lease only shrinks once the transfer begins).
	both := func(where string) {
		if n.isLeader(to.Load()) && n.isLeader(leader.Load()) {
			mu.Lock()
			violations = append(violations, where)
			mu.Unlock()
		}
	}
	n.after = func(from uint64, msgs []raftpb.Message) {
		for _, m := range msgs {
			if m.Type != raftpb.MsgTimeoutNow {
				continue
			}
			// The old leader stalls right after handing its MsgTimeoutNow
			// over, until the transferee leads.
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) && !n.isLeader(m.To) {
				time.Sleep(time.Millisecond)
			}
			both("while the old leader stalls after sending MsgTimeoutNow")
		}
	}
	n.run()

	waitUntil(t, "a leader", func() bool {
		for _, id := range voters {
			if n.isLeader(id) {
				leader.Store(id)
				return true
			}
		}
		return false
	})
	l := leader.Load()
	target := voters[0]
	if target == l {
		target = voters[1]
	}
	to.Store(target)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The transferee must be up to date, so that the MsgTimeoutNow leaves
	// in the same Ready as the lease drop.
	waitUntil(t, "the transferee to be up to date", func() bool {
		upToDate := false
		err := n.nodes[l].Do(ctx, func(c *Core) error {
			last, err := c.store.LastIndex()
			pr, ok := c.rn.Status().Progress[target]
			upToDate = ok && pr.Match == last
			return err
		})
		return err == nil && upToDate
	})
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			both("sampled")
			time.Sleep(100 * time.Microsecond)
		}
	}()
	if err := n.nodes[l].Do(ctx, func(c *Core) error { c.TransferLeadership(target); return nil }); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the transferee to lead", func() bool { return n.isLeader(target) })
	close(stop)
	<-sampled
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("two peers said IsLeader at once (%d times; first: %s)", len(violations), violations[0])
	}
}

// TestNodeWaitsForSnapshotOutcome: the Node reports a snapshot's outcome
// to raft only when the Sender reports it: while the first snapshot to a
// new member is held, raft sends no other; reported dropped, raft sends a
// new one, and the member catches up from it.
func TestNodeWaitsForSnapshotOutcome(t *testing.T) {
	n := newMemNet(t)
	n.add(1, []uint64{1}, 20*time.Millisecond, 100*time.Millisecond)
	n.add(2, nil, 20*time.Millisecond, 100*time.Millisecond)
	var (
		mu    sync.Mutex
		snaps int
		held  *raftpb.Message
	)
	n.intercept = func(from uint64, msgs []raftpb.Message) []raftpb.Message {
		out := msgs[:0:0]
		for _, m := range msgs {
			if m.Type == raftpb.MsgSnap {
				mu.Lock()
				snaps++
				first := snaps == 1
				if first {
					held = &m
				}
				mu.Unlock()
				if first {
					continue // held: neither delivered nor reported
				}
			}
			out = append(out, m)
		}
		return out
	}
	n.run()
	waitUntil(t, "node 1 to lead", func() bool { return n.isLeader(1) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.nodes[1].Do(ctx, func(c *Core) error {
		return c.ProposeConfChange(raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode, NodeID: 2})
	}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a snapshot for node 2", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return held != nil
	})
	// Raft waits for the outcome: many heartbeat intervals pass, and no
	// second snapshot is sent.
	window := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(window) {
		mu.Lock()
		k := snaps
		mu.Unlock()
		if k != 1 {
			t.Fatalf("%d snapshots sent before the first one's outcome was known", k)
		}
		time.Sleep(5 * time.Millisecond)
	}
	n.nodes[1].ReportSnapshot(2, false)
	waitUntil(t, "node 2 to catch up from a second snapshot", func() bool {
		v := n.views[2].Load()
		return v != nil && len(v.Learners) == 1 && v.Learners[0] == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if snaps < 2 {
		t.Errorf("%d snapshots sent, want a second one after the failure", snaps)
	}
}

// goneLeader runs three Nodes (heartbeat hb, election timeout et) until
// one leads, then cuts it off as if its process were gone (nothing from or
// to it): it returns the net, the gone leader, and the survivors by ID
// (rank 0 first).
func goneLeader(t *testing.T, hb, et time.Duration) (n *memNet, l uint64, survivors []uint64) {
	t.Helper()
	n = newMemNet(t)
	voters := []uint64{1, 2, 3}
	for _, id := range voters {
		n.add(id, voters, hb, et)
	}
	var gone atomic.Uint64 // the peer whose process is gone: nothing from or to it
	n.intercept = func(from uint64, msgs []raftpb.Message) []raftpb.Message {
		g := gone.Load()
		if from == g {
			return nil
		}
		var out []raftpb.Message
		for _, m := range msgs {
			if m.To != g {
				out = append(out, m)
			}
		}
		return out
	}
	n.run()
	start := n.now()
	campaigned := false
	waitUntil(t, "a first leader", func() bool {
		for _, id := range voters {
			if n.isLeader(id) {
				l = id
				return true
			}
		}
		if !campaigned && n.now() > start+et+100*time.Millisecond { // past the start-up vote guard
			campaigned = true
			_ = n.nodes[1].Do(context.Background(), func(c *Core) error { return c.Campaign() })
		}
		return false
	})
	gone.Store(l)
	for _, id := range voters {
		if id != l {
			survivors = append(survivors, id)
		}
	}
	return n, l, survivors
}

// TestNodePeerGoneSpacedByRoundTrip: the round trip a PeerGone report
// carries reaches the core, which spaces the survivors' turns by it: the
// rank-1 survivor, told alone (rank 0 has no proof, so it does not
// campaign), with a round trip of 2s does not campaign two ticks (240ms)
// later but waits its turn (4s, past its own election timeout).
func TestNodePeerGoneSpacedByRoundTrip(t *testing.T) {
	hb, et := 600*time.Millisecond, 3*time.Second
	n, l, survivors := goneLeader(t, hb, et)
	rank1 := survivors[1]
	waitUntil(t, "rank 1 to take the proof", func() bool {
		if taken, _ := n.nodes[rank1].GoneReports(); taken > 0 {
			return true
		}
		n.nodes[rank1].PeerGone(l, 2*time.Second)
		return false
	})
	// Four times the two ticks, well before any election timer (3s).
	for end := time.Now().Add(4 * 2 * hb / 5); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if v := n.views[rank1].Load(); v.Role != Follower {
			t.Fatalf("p%d (rank 1) is a %v: it campaigned two ticks after its proof, not at its turn", rank1, v.Role)
		}
	}
}

// TestNodePeerGone: when the leader's process is gone and the survivors'
// Nodes are told so (PeerGone), they elect a new leader without waiting
// for an election timeout. The timings are long (a 3 s election timeout),
// so the fail-over is told apart from the ordinary election by far, even
// on a loaded machine.
func TestNodePeerGone(t *testing.T) {
	hb, et := 600*time.Millisecond, 3*time.Second
	n, l, survivors := goneLeader(t, hb, et)
	term := n.views[l].Load().Term
	// A message of the leader's still queued may be stepped after a
	// report and void it: report until each survivor took it.
	reported := time.Now()
	waitUntil(t, "the survivors to take the proof", func() bool {
		all := true
		for _, id := range survivors {
			if taken, _ := n.nodes[id].GoneReports(); taken == 0 {
				n.nodes[id].PeerGone(l, 0)
				all = false
			}
		}
		return all
	})
	var nl uint64
	waitUntil(t, "a new leader named by both survivors", func() bool {
		for _, id := range survivors {
			if n.isLeader(id) {
				nl = id
			}
		}
		if nl == 0 {
			return false
		}
		for _, id := range survivors {
			if v := n.views[id].Load(); v.Lead != nl || v.Term <= term {
				return false
			}
		}
		return true
	})
	took := time.Since(reported)
	t.Logf("p%d gone; p%d leads, named by both survivors, %v after the first report", l, nl, took)
	if took >= et-hb {
		t.Fatalf("the fail-over took %v: no faster than an election timeout (%v) after the last heartbeat", took, et)
	}
	// A report about a follower is ignored.
	other := survivors[0]
	if other == nl {
		other = survivors[1]
	}
	_, before := n.nodes[nl].GoneReports()
	n.nodes[nl].PeerGone(other, 0)
	waitUntil(t, "the report about a follower to be ignored", func() bool {
		_, ignored := n.nodes[nl].GoneReports()
		return ignored > before
	})
}

// TestNodeTakesWholeInbox: messages beyond one batch (ReceiveBatch) are
// stepped at once, in later turns of the loop, without waiting for another
// message or a timer (the timings here put the first tick minutes away).
func TestNodeTakesWholeInbox(t *testing.T) {
	n := newMemNet(t)
	n.add(1, []uint64{1, 2}, time.Minute, 3*time.Minute)
	node := n.nodes[1]
	const total = 3*ReceiveBatch + 1
	for i := range total {
		node.Deliver(raftpb.Message{Type: raftpb.MsgApp, From: 99, To: 1, Term: 1, Index: uint64(i)})
	}
	n.run()
	deadline := time.Now().Add(5 * time.Second)
	for node.Refused(RefusedNonMember) < total {
		if time.Now().After(deadline) {
			t.Fatalf("stepped %d of %d queued messages (%d still queued)", node.Refused(RefusedNonMember), total, node.Queued())
		}
		time.Sleep(2 * time.Millisecond)
	}
}
