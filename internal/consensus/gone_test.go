package consensus

import (
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// crash takes core id out of the network: it steps nothing and every
// message to it is lost (the process is gone).
func (n *testNet) crash(id uint64) {
	n.t.Helper()
	delete(n.cores, id)
}

// transferVote is the vote request a transfer-style election of from sends
// to, at term, with a log as long as to's.
func (n *testNet) transferVote(from, to, term uint64) raftpb.Message {
	n.t.Helper()
	last := lastIndex(n.t, n.cores[to])
	lt, err := n.cores[to].store.Term(last)
	if err != nil {
		n.t.Fatal(err)
	}
	return raftpb.Message{Type: raftpb.MsgVote, From: from, To: to, Term: term, Index: last, LogTerm: lt,
		Context: []byte("CampaignTransfer")}
}

// wantFollows fails unless core id follows lead in term.
func (n *testNet) wantFollows(id, lead, term uint64) {
	n.t.Helper()
	if v := n.cores[id].View(); v.Lead != lead || v.Term != term {
		n.t.Fatalf("core %d: %v of term %d, lead %d; want lead %d in term %d", id, v.Role, v.Term, v.Lead, lead, term)
	}
}

// wantRole fails unless core id is role in term; when says at what point.
func (n *testNet) wantRole(id uint64, role Role, term uint64, when string) {
	n.t.Helper()
	if v := n.cores[id].View(); v.Role != role || v.Term != term {
		n.t.Fatalf("%s: core %d is %v of term %d; want %v of term %d", when, id, v.Role, v.Term, role, term)
	}
}

// TestGoneFailover: the leader's process is gone; once both survivors hold
// the proof, the lower ID (rank 0) is elected at once, with no tick and no
// election timeout, and the other survivor, whose turn (two ticks later)
// comes after it heard the new leader, does not campaign: one election.
func TestGoneFailover(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	n.crash(1)
	n.now += time.Millisecond
	for _, id := range []uint64{3, 2} {
		if !n.cores[id].ReportGone(1, 0) {
			t.Fatalf("core %d ignored the proof that its leader is gone", id)
		}
	}
	n.pump()
	n.wantRole(2, Leader, term+1, "at once (rank 0)")
	n.wantFollows(3, 2, term+1)
	for range 10 { // past core 3's turn
		n.tickAll(nil)
	}
	n.wantRole(2, Leader, term+1, "after core 3's turn (no second election)")
	n.wantFollows(3, 2, term+1)
}

// TestGoneNoCampaignAfterNewLeader: a survivor that did not vote in the
// fail-over election (the request did not reach it) but heard the new
// leader before its turn does not campaign at its turn: its evidence went
// when it heard another leader.
func TestGoneNoCampaignAfterNewLeader(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3, 4, 5}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	n.crash(1)
	n.drop = func(m raftpb.Message) bool { return m.Type == raftpb.MsgVote && m.To == 3 }
	n.now += time.Millisecond
	for _, id := range []uint64{3, 4, 5, 2} {
		if !n.cores[id].ReportGone(1, 0) {
			t.Fatalf("core %d ignored the report", id)
		}
	}
	n.pump()
	n.drop = nil
	for _, id := range []uint64{3, 4, 5} {
		n.wantFollows(id, 2, term+1)
	}
	for range 10 { // past everyone's turn
		n.tickAll(nil)
	}
	n.wantRole(2, Leader, term+1, "after the other survivors' turns")
	for _, id := range []uint64{3, 4, 5} {
		n.wantFollows(id, 2, term+1)
	}
}

// TestGoneDeferredVote: the rank-0 survivor asks before the other survivor
// has its proof; that one keeps the request and grants it when its proof
// comes, without waiting for anything else.
func TestGoneDeferredVote(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	n.crash(1)
	n.now += time.Millisecond
	n.cores[2].ReportGone(1, 0)
	n.pump()
	n.wantRole(2, Candidate, term+1, "on its own proof")
	n.wantFollows(3, 1, term) // no proof yet: refused (kept)
	n.now += 2 * time.Millisecond
	n.cores[3].ReportGone(1, 0)
	n.pump()
	n.wantRole(2, Leader, term+1, "after core 3's proof")
	n.wantFollows(3, 2, term+1)
}

// TestGoneNoEvidenceNoVote: a survivor that has no proof of its own (its
// leader is alive and talks to it) refuses the transfer-style vote of a
// peer that claims the leader is gone; the leader keeps its lease.
func TestGoneNoEvidenceNoVote(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	n.drop = func(m raftpb.Message) bool { return (m.From == 1 && m.To == 2) || (m.From == 2 && m.To == 1) }
	n.now += time.Millisecond
	n.cores[2].ReportGone(1, 0) // core 2 is wrong; core 3 hears the leader
	n.pump()
	n.wantFollows(3, 1, term)
	n.wantRole(1, Leader, term, "the live leader keeps its lease")
}

// TestGoneOnlyAboutLeader: a report about a follower, about this peer, or
// made while this peer follows no leader is not evidence: ignored, no
// campaign.
func TestGoneOnlyAboutLeader(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	// Nobody leads yet: a report about anyone starts nothing.
	n.now += time.Second
	for _, id := range []uint64{2, 3} {
		if n.cores[1].ReportGone(id, 0) {
			t.Errorf("core 1, following nobody, took a report about %d", id)
		}
	}
	if n.cores[1].HasReady() {
		n.pump()
	}
	if v := n.cores[1].View(); v.Role != Follower || v.Term != 1 {
		t.Fatalf("core 1 campaigned on a report while it followed nobody: %+v", v)
	}
	n.elect(1)
	term := n.cores[2].View().Term
	n.now += time.Millisecond
	for _, id := range []uint64{3, 2, 9} {
		if n.cores[2].ReportGone(id, 0) {
			t.Errorf("core 2 took a report about %d (its leader is 1)", id)
		}
		if lead, _ := n.cores[2].GoneEvidence(); lead != 0 {
			t.Fatalf("core 2 holds evidence about %d after a report about %d", lead, id)
		}
	}
	n.pump()
	n.wantFollows(2, 1, term)
	if err := n.step(2, n.transferVote(3, 2, term+1)); err != nil {
		t.Fatal(err)
	}
	n.wantFollows(2, 1, term)
}

// TestGoneClearedByLeaderMessage: evidence is dropped by any later message
// from the leader (it is alive): a transfer vote is then refused.
func TestGoneClearedByLeaderMessage(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[3].View().Term
	n.now += time.Millisecond
	if !n.cores[3].ReportGone(1, 0) {
		t.Fatal("core 3 ignored the report about its leader")
	}
	// The leader's next lease round reaches core 3.
	n.now += n.cores[1].cfg.HeartbeatInterval
	n.cores[1].Tick()
	n.pump()
	if lead, _ := n.cores[3].GoneEvidence(); lead != 0 {
		t.Fatalf("core 3 still holds evidence about %d after hearing it", lead)
	}
	if err := n.step(3, n.transferVote(2, 3, term+1)); err != nil {
		t.Fatal(err)
	}
	n.wantFollows(3, 1, term)
}

// TestGoneStaleReport: a proof taken before this peer began to follow its
// leader in its term (a report that waited in a queue while a new leader
// was elected) is not about that leader: ignored. One taken while it
// followed it is taken, even if the leader's last messages were stepped
// after it (they were in flight before its process died).
func TestGoneStaleReport(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	n.now += time.Millisecond
	proofAt := n.now
	n.cores[1].TransferLeadership(2) // core 2 leads a new term; core 3 follows it from now on
	n.pump()
	term := n.cores[3].View().Term
	n.wantFollows(3, 2, term)
	n.now += time.Millisecond
	if n.cores[3].reportGone(2, proofAt, 0) {
		t.Fatal("core 3 took a proof taken before it followed its leader")
	}
	if err := n.step(3, n.transferVote(1, 3, term+1)); err != nil {
		t.Fatal(err)
	}
	n.wantFollows(3, 2, term)

	proofAt = n.now
	n.now += n.cores[2].cfg.HeartbeatInterval
	n.cores[2].Tick() // a round steps at core 3 after the proof
	n.pump()
	n.now += time.Millisecond
	if !n.cores[3].reportGone(2, proofAt, 0) {
		t.Fatal("core 3 ignored a proof taken while it followed its leader")
	}
}

// TestGoneEvidenceScopedToLeaderAndTerm: evidence about the leader of term
// T says nothing about the leader of term T+1: a survivor that follows the
// new leader refuses a transfer vote against it, though it held evidence
// about the old one.
func TestGoneEvidenceScopedToLeaderAndTerm(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3, 4, 5}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	n.crash(1)
	n.now += time.Millisecond
	for _, id := range []uint64{5, 4, 3, 2} {
		if !n.cores[id].ReportGone(1, 0) {
			t.Fatalf("core %d ignored the report", id)
		}
	}
	n.pump()
	for _, id := range []uint64{3, 4, 5} {
		n.wantFollows(id, 2, term+1)
	}
	n.now += time.Millisecond
	if err := n.step(3, n.transferVote(4, 3, term+2)); err != nil {
		t.Fatal(err)
	}
	n.wantFollows(3, 2, term+1)
	n.wantRole(2, Leader, term+1, "after the fail-over")
}

// TestGoneWakesForItsTurn: a survivor whose turn is later than its next
// tick would come wakes for it (Loop.NextWake): the loop sleeps between
// events.
func TestGoneWakesForItsTurn(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	c := n.cores[3]
	l := NewLoop(c, LoopConfig{Send: discard})
	l.Start()
	before := l.NextWake()
	n.crash(1)
	n.now += time.Millisecond
	l.ReportGone(1, 0)
	turn := n.now + goneStagger*c.cfg.TickInterval // rank 1
	wake := l.NextWake()
	if wake < turn || wake >= turn+c.cfg.TickInterval || wake >= before {
		t.Fatalf("NextWake %v after the report (turn at %v, before %v)", wake, turn, before)
	}
	if taken, ignored := l.GoneReports(); taken != 1 || ignored != 0 {
		t.Errorf("GoneReports = %d, %d", taken, ignored)
	}
	// At its turn, without core 2's election, core 3 campaigns.
	n.now = wake
	l.Advance(wake)
	if _, err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if v := c.View(); v.Role != Candidate {
		t.Fatalf("core 3 at its turn: %+v", v)
	}
}

// TestGoneSpacingFollowsRoundTrip: on a slow link the survivors' turns are
// twice the refused connect's round trip apart, not two ticks: the rank-1
// survivor whose proof took 200ms does not campaign two ticks later over
// rank 0's vote request, which is still on its way (a round trip of
// jitter and half a round trip of delay behind).
func TestGoneSpacingFollowsRoundTrip(t *testing.T) {
	const rtt = 200 * time.Millisecond
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	c := n.cores[3]
	tick := c.cfg.TickInterval
	l := NewLoop(c, LoopConfig{Send: discard})
	l.Start()
	before := l.NextWake()
	n.crash(1)
	n.now += time.Millisecond
	l.ReportGone(1, rtt)
	// Its turn, 400ms on, is after its own election deadline: it does not
	// wake for it.
	if wake := l.NextWake(); wake != before {
		t.Fatalf("NextWake %v after the report, want %v as before it (its turn is %v on)", wake, before, 2*rtt)
	}
	// Ticks up to half an election timeout (well past two ticks; raft's
	// own timer cannot fire yet): no campaign.
	for end := n.now + c.cfg.ElectionTimeout/2; n.now+tick <= end; {
		n.now += tick
		l.Advance(n.now)
		if _, err := l.Flush(); err != nil {
			t.Fatal(err)
		}
		if v := c.View(); v.Role != Follower {
			t.Fatalf("core 3 campaigned at %v, before its turn (%v after its proof): %+v", n.now, 2*rtt, v)
		}
	}
	if 2*rtt <= goneStagger*tick || c.cfg.ElectionTimeout/2 <= goneStagger*tick {
		t.Fatalf("the test proves nothing: tick %v, election timeout %v", tick, c.cfg.ElectionTimeout)
	}
}

// TestGoneSplitVote: the survivors' fail-over campaigns cross: core 2
// (rank 0) ran late (a stall) and core 3's turn came first, so each voted
// for itself in the same term and neither can win it. On core 3's request
// core 2 campaigns again a spacing (two ticks) later and wins the next
// term, without waiting out raft's election timeout; core 3, the
// later-ranked, does not.
func TestGoneSplitVote(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	term := n.cores[2].View().Term
	tick := n.cores[2].cfg.TickInterval
	n.crash(1)
	n.now += time.Millisecond
	if !n.cores[3].ReportGone(1, 0) {
		t.Fatal("core 3 ignored the proof")
	}
	n.now += 3 * tick // core 3's turn; core 2 has not run
	n.cores[3].Tick()
	if !n.cores[2].ReportGone(1, 0) {
		t.Fatal("core 2 ignored the proof")
	}
	for _, id := range []uint64{2, 3} { // their requests go out, not yet delivered
		c := n.cores[id]
		for c.HasReady() {
			if _, err := c.Process(func(ms []raftpb.Message) { n.queue = append(n.queue, ms...) }); err != nil {
				t.Fatal(err)
			}
		}
		n.wantRole(id, Candidate, term+1, "crossed campaigns")
	}
	n.pump()
	crossed := n.now
	for n.cores[2].View().Role != Leader && n.now-crossed < 5*tick {
		n.tickAll(nil)
	}
	n.wantRole(2, Leader, term+2, fmt.Sprintf("%v after the crossed campaigns (a spacing: %v)", n.now-crossed, goneStagger*tick))
	n.wantFollows(3, 2, term+2)
}

// crossCampaigns has each of ids, holding the proof that leader 1 is gone,
// campaign before any request reaches another (their turns all came while
// none could run): each is a candidate of term+1 that voted for itself.
// Their requests wait in n.queue.
func (n *testNet) crossCampaigns(term uint64, ids ...uint64) {
	n.t.Helper()
	for _, id := range ids {
		if !n.cores[id].ReportGone(1, 0) {
			n.t.Fatalf("core %d ignored the proof", id)
		}
	}
	n.now += 10 * n.cores[ids[0]].cfg.TickInterval // past every turn
	for _, id := range ids {
		c := n.cores[id]
		c.Tick()
		for c.HasReady() {
			if _, err := c.Process(func(ms []raftpb.Message) { n.queue = append(n.queue, ms...) }); err != nil {
				n.t.Fatal(err)
			}
		}
		n.wantRole(id, Candidate, term+1, "crossed campaigns")
	}
}

// splitNet is a net of five voters whose leader, core 1, has crashed, for
// crossed fail-over campaigns: it records every vote request of a term
// after the fail-over's (a retry), and drops what drop says.
type splitNet struct {
	*testNet
	term    uint64 // the crashed leader's
	retries []raftpb.Message
	drop    func(m raftpb.Message) bool
}

func newSplitNet(t *testing.T) *splitNet {
	n := newTestNet(t, []uint64{1, 2, 3, 4, 5}, nil)
	n.elect(1)
	s := &splitNet{testNet: n, term: n.cores[2].View().Term}
	n.crash(1)
	n.now += time.Millisecond
	n.drop = func(m raftpb.Message) bool {
		if (m.Type == raftpb.MsgPreVote || m.Type == raftpb.MsgVote) && m.Term > s.term+1 {
			s.retries = append(s.retries, m)
		}
		return s.drop != nil && s.drop(m)
	}
	return s
}

// prove hands each of ids the proof that core 1 is gone.
func (s *splitNet) prove(ids ...uint64) {
	s.t.Helper()
	for _, id := range ids {
		if !s.cores[id].ReportGone(1, 0) {
			s.t.Fatalf("core %d ignored the proof", id)
		}
	}
}

// votesFrom records the answers to vote requests that core id sends (it
// sets s.drop, dropping nothing).
func (s *splitNet) votesFrom(id uint64) *[]raftpb.Message {
	var answers []raftpb.Message
	s.drop = func(m raftpb.Message) bool {
		if m.Type == raftpb.MsgVoteResp && m.From == id {
			answers = append(answers, m)
		}
		return false
	}
	return &answers
}

// wantOutcome ticks ten times (past every retry and turn), then fails
// unless lead leads the term terms after the crashed leader's, every
// other live core follows it there, and nobody but retrier (0: nobody)
// campaigned after the fail-over's term.
func (s *splitNet) wantOutcome(lead, terms, retrier uint64) {
	s.t.Helper()
	for range 10 {
		s.tickAll(nil)
	}
	s.wantRole(lead, Leader, s.term+terms, "after the crossing")
	for id := range s.cores {
		if id != lead {
			s.wantFollows(id, lead, s.term+terms)
		}
	}
	for _, m := range s.retries {
		if m.From != retrier {
			s.t.Errorf("core %d campaigned again (%v, term +%d); want a retry by core %d only (0: none)", m.From, m.Type, m.Term-s.term, retrier)
		}
	}
}

// TestGoneSplitVoteThreeWays: three survivors' fail-over campaigns crossed
// (ranks 2, 1 and 0, in that order). The middle one is earlier-ranked than
// the last and retrying at once would campaign against rank 0's retry
// (both in the next term: split again, and raft's timer decides). It
// waits its rank's spacing; rank 0's retry reaches it first, it grants it,
// and never campaigns again: one retry, rank 0 leads. The new leader's
// messages to it are lost until past its retry's time (it granted the
// vote but knows no leader yet): it does not campaign then either.
func TestGoneSplitVoteThreeWays(t *testing.T) {
	s := newSplitNet(t)
	tick := s.cores[2].cfg.TickInterval
	var quietUntil time.Duration // the leader's messages to core 3 are lost until then
	s.drop = func(m raftpb.Message) bool {
		return m.From == 2 && m.To == 3 && (m.Type == raftpb.MsgApp || m.Type == raftpb.MsgHeartbeat) && s.now < quietUntil
	}
	s.crossCampaigns(s.term, 4, 3, 2)
	quietUntil = s.now + 5*tick // core 3's retry falls due two ticks in
	s.prove(5)                  // rank 3: its turn is still to come
	s.pump()
	s.wantOutcome(2, 2, 2)
}

// TestGoneSplitRetryWithoutRankZero: ranks 1 and 2 crossed, and rank 0
// has no campaign (it is cut off): rank 1 retries after its spacing, not
// waiting for raft's election timeout, and leads.
func TestGoneSplitRetryWithoutRankZero(t *testing.T) {
	s := newSplitNet(t)
	et := s.cores[3].cfg.ElectionTimeout
	s.drop = func(m raftpb.Message) bool { return m.From == 2 || m.To == 2 }
	s.crossCampaigns(s.term, 4, 3)
	s.prove(5)
	s.pump()
	crossed := s.now
	cut := map[uint64]bool{2: true}
	for s.cores[3].View().Role != Leader && s.now-crossed < et/2 {
		s.tickAll(cut)
	}
	s.wantRole(3, Leader, s.term+2, fmt.Sprintf("%v after the crossing (election timeout %v)", s.now-crossed, et))
	for _, id := range []uint64{4, 5} {
		s.wantFollows(id, 3, s.term+2)
	}
}

// TestGoneSplitNoRetryWhileUndecided: the campaigns of core 3 (rank 1)
// and core 2 (rank 0) crossed, but with five voters the crossing need not
// be a split: core 3's request reached cores 4 and 5 first, and it wins
// the term with their votes. Core 2 got core 3's request before any
// answer, when it could not know that; it waits (half a spacing) instead
// of retrying, hears core 3's win, and never campaigns again: one term.
func TestGoneSplitNoRetryWhileUndecided(t *testing.T) {
	s := newSplitNet(t)
	s.prove(4, 5)
	s.crossCampaigns(s.term, 3, 2)
	s.pump()
	s.wantOutcome(3, 1, 0)
}

// TestGoneSplitNoRetryWhileWinning: the campaigns of core 2 (rank 0) and
// core 3 (rank 1) crossed; core 2 holds core 4's vote when core 3's
// request comes, and core 5 has not answered yet. With core 5's vote core
// 2 still wins the term, so it does not retry (which would throw its win
// away): it waits, core 5's vote comes, and it leads that term.
func TestGoneSplitNoRetryWhileWinning(t *testing.T) {
	s := newSplitNet(t)
	var held []raftpb.Message
	s.drop = func(m raftpb.Message) bool {
		if m.Type == raftpb.MsgVote && m.Term == s.term+1 && (m.To == 5 || m.From == 3 && m.To == 2) {
			held = append(held, m) // late: core 3's request to core 2, and both to core 5
			return true
		}
		return false
	}
	s.prove(4, 5)
	s.crossCampaigns(s.term, 2, 3)
	s.pump() // core 4 votes for core 2, core 3 refuses it
	s.drop = nil
	for _, m := range held {
		if m.From == 3 && m.To == 2 {
			_ = s.step(2, m)
		}
	}
	for _, m := range held {
		if m.To == 5 {
			_ = s.step(5, m) // core 2's first: core 5 votes for it
		}
	}
	s.wantOutcome(2, 1, 0)
}

// TestGoneDeferredVotesAllAnswered: core 4 has no proof yet when the
// crossed campaigns of cores 2 and 3 ask for its vote, and keeps both
// requests. When its proof comes it answers both, in the order they came:
// it grants core 2's and refuses core 3's (one kept request, unanswered,
// would leave that candidate unable to tell a split from a vote on its
// way). Core 2 wins with it.
func TestGoneDeferredVotesAllAnswered(t *testing.T) {
	s := newSplitNet(t)
	answers := s.votesFrom(4)
	s.prove(5)
	s.crossCampaigns(s.term, 2, 3)
	s.pump()
	if len(*answers) != 0 {
		t.Fatalf("core 4 answered before its proof: %+v", *answers)
	}
	s.now += 2 * time.Millisecond
	s.prove(4)
	s.pump()
	if a := *answers; len(a) != 2 || a[0].To != 2 || a[0].Reject || a[1].To != 3 || !a[1].Reject {
		t.Fatalf("core 4's answers after its proof: %+v; want a grant to core 2, then a refusal to core 3", a)
	}
	s.wantOutcome(2, 1, 0)
}

// TestGoneDeferredVotesHighestTerm: of the transfer vote requests a voter
// keeps for want of its proof, only the highest term's count: a request
// of a later term replaces those before it.
func TestGoneDeferredVotesHighestTerm(t *testing.T) {
	s := newSplitNet(t)
	answers := s.votesFrom(4)
	_ = s.step(4, s.transferVote(2, 4, s.term+1))
	_ = s.step(4, s.transferVote(3, 4, s.term+2))
	s.prove(4)
	s.pump()
	if a := *answers; len(a) != 1 || a[0].To != 3 || a[0].Term != s.term+2 || a[0].Reject {
		t.Fatalf("core 4's answers after its proof: %+v; want one grant, to core 3 in term +2", a)
	}
}

// TestGoneWinnerHandsOverAtOnce: the survivor that won a fail-over hands
// leadership on right away (its agent was stopped), within an election
// timeout of the last lease round it heard from the dead leader. That
// round's lease is the dead leader's, not one this peer follows any more:
// it grants the transferee's vote at once, and the hand-over elects it.
func TestGoneWinnerHandsOverAtOnce(t *testing.T) {
	n := newTestNet(t, []uint64{1, 2, 3}, nil)
	n.elect(1)
	n.now += n.cores[1].cfg.HeartbeatInterval
	n.cores[1].Tick() // a lease round, heard by both followers
	n.pump()
	term := n.cores[2].View().Term
	n.crash(1)
	n.now += time.Millisecond
	for _, id := range []uint64{3, 2} {
		if !n.cores[id].ReportGone(1, 0) {
			t.Fatalf("core %d ignored the proof", id)
		}
	}
	n.pump()
	n.wantRole(2, Leader, term+1, "after the fail-over")
	n.now += 5 * time.Millisecond // well within an election timeout of the last round
	n.cores[2].TransferLeadership(3)
	n.pump()
	if v := n.cores[3].View(); v.Role != Leader {
		t.Fatalf("after the hand-over core 3 is %v of term %d (core 2: %v of term %d), want leader", v.Role, v.Term, n.cores[2].View().Role, n.cores[2].View().Term)
	}
	n.wantFollows(2, 3, n.cores[3].View().Term)
}
