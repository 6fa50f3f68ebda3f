package consensus

import (
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

func discard([]raftpb.Message) {}

// TestLoopAdvanceNeverEarly: Advance applies one tick per TickInterval of
// the clock since Start, each once it is due and never before (the lease
// counts on followers not counting ticks faster than time passes), and
// after a long stall at most two election timeouts' worth.
func TestLoopAdvanceNeverEarly(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	c := n.cores[2]
	tick, et := c.cfg.TickInterval, c.cfg.ElectionTimeout
	l := NewLoop(c, LoopConfig{Send: discard})
	l.Start()
	start := n.now
	for _, x := range []struct {
		at   time.Duration
		want int
	}{
		{start + tick - 1, 0},
		{start + tick, 1},
		{start + tick, 0},
		{start + 3*tick + tick/2, 2},
		{start + 4*tick - 1, 0},
		{start + 4*tick, 1},
	} {
		if got := l.Advance(x.at); got != x.want {
			t.Fatalf("Advance(start+%v) = %d ticks, want %d", x.at-start, got, x.want)
		}
	}
	if got, max := l.Advance(start+time.Hour), int(2*et/tick)+2; got != max {
		t.Errorf("Advance after an hour's stall = %d ticks, want the cap %d", got, max)
	}
	if got := l.Advance(start + time.Hour); got != 0 {
		t.Errorf("Advance again at the same time = %d ticks", got)
	}
}

// TestLoopWakesOnlyWhenATickMayAct: a follower that hears its leader need
// not wake until its earliest election (and does campaign once it is
// past), a leader until its next lease round, anyone else at every tick.
func TestLoopWakesOnlyWhenATickMayAct(t *testing.T) {
	n := electedNet(t, nil)
	tick, et, hb := n.cores[1].cfg.TickInterval, n.cores[1].cfg.ElectionTimeout, n.cores[1].cfg.HeartbeatInterval

	f := startLoop(n, 2)
	fc := f.c
	seen := fc.leaderSeen
	if seen == 0 {
		t.Fatal("the follower never heard its leader")
	}
	w := f.NextWake()
	if w < seen+et-2*tick || w > seen+et-tick {
		t.Errorf("follower's NextWake = leaderSeen%+v, want within [ET-2 ticks, ET-1 tick] = [%v, %v]", w-seen, et-2*tick, et-tick)
	}
	f.Advance(w)
	if s := fc.rn.BasicStatus().RaftState; s != raft.StateFollower {
		t.Fatalf("the follower left its leader at its first wake: %v", s)
	}
	// The owner wakes when told (a wake much later than promised is a
	// stall: TestLoopStallGrace), up to past raft's randomized timeout.
	for now := f.NextWake(); now <= seen+2*et+tick; now = f.NextWake() {
		f.Advance(now)
	}
	if s := fc.rn.BasicStatus().RaftState; s != raft.StatePreCandidate {
		t.Fatalf("the follower did not campaign after two election timeouts of silence: %v", s)
	}
	if got := f.NextWake(); got != f.nextTick {
		t.Errorf("a pre-candidate's NextWake is %v after its next tick", got-f.nextTick)
	}

	l := startLoop(n, 1)
	lc := l.c
	n.now = max(n.now, lc.lastLeaseReq) + hb
	if l.Advance(n.now) == 0 || lc.lastLeaseReq != n.now {
		t.Fatalf("the leader's tick started no lease round (last at %v, now %v)", lc.lastLeaseReq, n.now)
	}
	if w := l.NextWake(); w < n.now+hb || w >= n.now+hb+tick {
		t.Errorf("leader's NextWake = now%+v, want the first tick at or after the next round, now+%v", w-n.now, hb)
	}
}

// TestLoopTicksBeforeMessage: the ticks that fell due before a message are
// counted before it. Otherwise a follower's leader heartbeat would reset
// raft's election count and the ticks of the silence before it would then
// count after it: the follower would grant a (pre-)vote earlier than the
// leader's lease allows.
func TestLoopTicksBeforeMessage(t *testing.T) {
	n := electedNet(t, nil)
	f := startLoop(n, 2)
	fc, et := f.c, f.c.cfg.ElectionTimeout
	st := fc.rn.BasicStatus()
	term, last := st.Term, lastIndex(t, fc)

	n.now += et * 2 / 3 // a silence shorter than the election timeout: no Advance
	f.Receive(raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: term, Commit: st.Commit})
	n.now += et / 2 // in all, more than an election timeout, but only half since the heartbeat
	f.Advance(n.now)
	f.Receive(raftpb.Message{Type: raftpb.MsgPreVote, From: 3, To: 2, Term: term + 1, Index: last + 10, LogTerm: term})
	mustFlush(t, f.Loop)
	noPreVoteGranted(t, f.sent, "half an election timeout after its leader's heartbeat")
	followsLeader(t, fc, 1)
}

// TestLoopReceiveBatch: a batch of received messages is stepped with one
// reading of the clock, after the ticks that fell due before it (as
// TestLoopTicksBeforeMessage for Receive): a follower does not grant a
// pre-vote half an election timeout after its leader's heartbeat.
func TestLoopReceiveBatch(t *testing.T) {
	reads := 0
	n := electedNet(t, func(_ uint64, c *Config) {
		now := c.Now
		c.Now = func() time.Duration { reads++; return now() }
	})
	f := startLoop(n, 2)
	fc, et := f.c, f.c.cfg.ElectionTimeout
	st := fc.rn.BasicStatus()
	term, last := st.Term, lastIndex(t, fc)

	n.now += et * 2 / 3 // a silence shorter than the election timeout: no Advance
	hb := raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: term, Commit: st.Commit}
	before := reads
	f.ReceiveBatch([]raftpb.Message{hb, hb, hb})
	if got := reads - before; got != 1 {
		t.Errorf("ReceiveBatch of 3 messages read the clock %d times, want 1", got)
	}
	if v := fc.View(); v.LeaderSeen != n.now {
		t.Errorf("LeaderSeen %v after the batch, want the batch's reading %v", v.LeaderSeen, n.now)
	}
	n.now += et / 2 // in all, more than an election timeout, but only half since the heartbeat
	f.Advance(n.now)
	f.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgPreVote, From: 3, To: 2, Term: term + 1, Index: last + 10, LogTerm: term}})
	mustFlush(t, f.Loop)
	noPreVoteGranted(t, f.sent, "half an election timeout after its leader's heartbeat")
	followsLeader(t, fc, 1)
}

// TestLoopDropsTicksWhileHeard: a follower that could not run for a while
// (a machine starved of CPU) and finds its leader's heartbeat waiting does
// not count the time it waited as silence: the ticks due are dropped, it
// does not campaign, and it counts again from there. A batch without such
// a message counts the ticks as before, and so does a leader (its ticks
// pace its lease rounds).
func TestLoopDropsTicksWhileHeard(t *testing.T) {
	n := electedNet(t, nil)
	f, l := startLoop(n, 2), startLoop(n, 1)
	fc, et := f.c, f.c.cfg.ElectionTimeout
	st := fc.rn.BasicStatus()
	term, last := st.Term, lastIndex(t, fc)

	n.now += 3 * et // neither could run
	if got := f.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: term, Commit: st.Commit}}); got != 0 {
		t.Errorf("the follower applied %d ticks with its leader's heartbeat waiting, want them dropped", got)
	}
	if got := l.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: term}}); got == 0 {
		t.Error("the leader dropped its ticks with a follower's answer waiting, want them counted")
	}
	mustFlush(t, f.Loop)
	mustFlush(t, l.Loop)
	if campaigned(f.sent) {
		t.Fatal("the follower campaigned after it waited")
	}
	followsLeader(t, fc, 1)

	// The ticks count again from the drop: half an election timeout later
	// the follower still refuses a pre-vote.
	n.now += et / 2
	f.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgPreVote, From: 3, To: 2, Term: term + 1, Index: last + 10, LogTerm: term}})
	mustFlush(t, f.Loop)
	noPreVoteGranted(t, f.sent, "half an election timeout after its leader's heartbeat")

	// Without a message from the leader the ticks count: after two more
	// election timeouts a pre-vote is granted.
	n.now += 2 * et
	if got := f.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgPreVote, From: 3, To: 2, Term: term + 1, Index: last + 10, LogTerm: term}}); got == 0 {
		t.Error("the follower dropped its ticks for a batch without its leader's message")
	}
	f.sent = nil
	mustFlush(t, f.Loop)
	if !slices.ContainsFunc(f.sent, func(m raftpb.Message) bool { return m.Type == raftpb.MsgPreVoteResp && !m.Reject }) {
		t.Errorf("the follower did not grant the pre-vote two election timeouts after its leader's last heartbeat: %+v", f.sent)
	}
}

// TestLoopStall: a peer whose wake comes long after the one NextWake
// promised (its process, or its whole machine, could not run) counts the
// ticks up to the promised wake and not the time it could not run. A
// follower does not campaign at that wake (its leader's heartbeat may be
// waiting in the socket, unread) and stays with its leader when the
// heartbeat comes; with a silent leader it campaigns after further ticks
// it does run. A leader neither steps down nor skips its lease round.
func TestLoopStall(t *testing.T) {
	follower := func(t *testing.T) (*testNet, *Core, *loopOn, time.Duration) {
		n := electedNet(t, nil)
		f := startLoop(n, 2)
		fc := f.c
		w := f.NextWake()
		late := w + 2*fc.cfg.ElectionTimeout // past raft's randomized timeout
		n.now = late
		if got, want := f.Advance(late), int((w-fc.leaderSeen)/fc.cfg.TickInterval); got > want {
			t.Fatalf("Advance after a stall applied %d ticks, want at most the %d due by the promised wake", got, want)
		}
		if got := f.Stalls(); got != 1 {
			t.Errorf("Stalls() = %d, want 1", got)
		}
		mustFlush(t, f.Loop)
		if campaigned(f.sent) {
			t.Fatal("the follower campaigned at the wake that ended its stall")
		}
		if next := f.NextWake(); next <= late {
			t.Errorf("NextWake after the stall is %v before its end", late-next)
		}
		return n, fc, f, late
	}

	t.Run("heard after the stall", func(t *testing.T) {
		n, fc, f, late := follower(t)
		st := fc.rn.BasicStatus()
		n.now = late + fc.cfg.TickInterval
		f.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: st.Term, Commit: st.Commit}})
		mustFlush(t, f.Loop)
		if campaigned(f.sent) {
			t.Fatal("the follower campaigned although its leader's heartbeat came right after the stall")
		}
		followsLeader(t, fc, 1)
		// The heartbeat ended the run of late wakes: the next stall is
		// one again, and is not counted either.
		n.now = f.NextWake() + 2*fc.cfg.ElectionTimeout
		f.Advance(n.now)
		mustFlush(t, f.Loop)
		if campaigned(f.sent) || f.Stalls() != 2 {
			t.Fatalf("a second stall, after the leader was heard, was counted (stalls %d, %v)", f.Stalls(), fc.rn.BasicStatus().RaftState)
		}
	})

	t.Run("silent leader", func(t *testing.T) {
		n, fc, f, late := follower(t)
		for n.now = f.NextWake(); n.now <= late+2*fc.cfg.ElectionTimeout && !campaigned(f.sent); n.now = f.NextWake() {
			f.Advance(n.now)
			mustFlush(t, f.Loop)
		}
		if !campaigned(f.sent) {
			t.Fatalf("the follower did not campaign within two election timeouts after its stall: %v", fc.rn.BasicStatus().RaftState)
		}
	})

	t.Run("every wake late", func(t *testing.T) {
		// On a machine so loaded that every wake comes 200 ms late, only
		// the first late wake of an election timeout goes uncounted: the
		// follower of a silent leader campaigns at its second wake, not
		// after one tick per wake (which would take a dozen more wakes).
		n := electedNet(t, nil)
		f := startLoop(n, 2)
		fc := f.c
		for range 2 {
			n.now = f.NextWake() + 20*fc.cfg.TickInterval
			f.Advance(n.now)
			mustFlush(t, f.Loop)
		}
		if !campaigned(f.sent) {
			t.Fatalf("the follower of a silent leader did not campaign at its second wake, both 200 ms late: %v (stalls %d)",
				fc.rn.BasicStatus().RaftState, f.Stalls())
		}
		if got := f.Stalls(); got != 1 {
			t.Errorf("Stalls() = %d, want 1 (one per election timeout)", got)
		}
	})

	t.Run("leader", func(t *testing.T) {
		n := electedNet(t, nil)
		l := startLoop(n, 1)
		lc := l.c
		n.now = l.NextWake() + 2*lc.cfg.ElectionTimeout
		l.Advance(n.now)
		mustFlush(t, l.Loop)
		if s := lc.rn.BasicStatus().RaftState; s != raft.StateLeader {
			t.Fatalf("the leader counted its stall: %v", s)
		}
		if lc.lastLeaseReq != n.now {
			t.Errorf("the leader's lease round after its stall went out at %v, want at once", lc.lastLeaseReq)
		}
	})
}

// TestLoopReceiveBatchTicksFirst: a batch that proves nobody alive in this
// term (here a new leader's first append, in a higher term) is stepped
// after the ticks due, as Receive does: the silence before it is not
// counted after it, and the follower refuses a pre-vote half an election
// timeout later.
func TestLoopReceiveBatchTicksFirst(t *testing.T) {
	n := electedNet(t, nil)
	f := startLoop(n, 2)
	fc, et := f.c, f.c.cfg.ElectionTimeout
	st := fc.rn.BasicStatus()
	term, last := st.Term, lastIndex(t, fc)

	n.now += et * 2 / 3
	f.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgApp, From: 3, To: 2, Term: term + 1, Index: last, LogTerm: term, Commit: st.Commit}})
	if s := fc.rn.BasicStatus(); s.Lead != 3 || s.Term != term+1 {
		t.Fatalf("the follower does not follow p3 in term %d: %+v", term+1, s)
	}
	n.now += et / 2
	f.Advance(n.now)
	f.ReceiveBatch([]raftpb.Message{{Type: raftpb.MsgPreVote, From: 1, To: 2, Term: term + 2, Index: last + 10, LogTerm: term + 1}})
	mustFlush(t, f.Loop)
	noPreVoteGranted(t, f.sent, "half an election timeout after its new leader's append")
}

// campaigned reports whether sent holds a pre-vote or vote request.
func campaigned(sent []raftpb.Message) bool {
	for _, m := range sent {
		if m.Type == raftpb.MsgPreVote || m.Type == raftpb.MsgVote {
			return true
		}
	}
	return false
}

// mustFlush flushes l, failing the test on a storage error.
func mustFlush(t *testing.T, l *Loop) {
	t.Helper()
	if _, err := l.Flush(); err != nil {
		t.Fatal(err)
	}
}

// loopOn is a started Loop on one core of a testNet, with what it sent.
type loopOn struct {
	*Loop
	c    *Core
	sent []raftpb.Message
}

// startLoop starts a Loop on core id of n that records what it sends.
func startLoop(n *testNet, id uint64) *loopOn {
	lo := &loopOn{c: n.cores[id]}
	lo.Loop = NewLoop(lo.c, LoopConfig{Send: func(ms []raftpb.Message) { lo.sent = append(lo.sent, ms...) }})
	lo.Start()
	return lo
}

// electedNet returns a testNet of cores 1, 2 and 3 in which 1 leads (opt
// as for newTestNet).
func electedNet(t *testing.T, opt func(id uint64, c *Config)) *testNet {
	n := newTestNet(t, []uint64{1, 2, 3}, opt)
	n.elect(1)
	return n
}

// noPreVoteGranted fails the test if sent grants a pre-vote; when says
// when that would have been too early.
func noPreVoteGranted(t *testing.T, sent []raftpb.Message, when string) {
	t.Helper()
	for _, m := range sent {
		if m.Type == raftpb.MsgPreVoteResp && !m.Reject {
			t.Fatalf("the follower granted a pre-vote %s: %+v", when, m)
		}
	}
}

// followsLeader fails the test unless c is a follower of lead.
func followsLeader(t *testing.T, c *Core, lead uint64) {
	t.Helper()
	if s := c.rn.BasicStatus(); s.RaftState != raft.StateFollower || s.Lead != lead {
		t.Fatalf("the follower left its leader: %+v", s)
	}
}
