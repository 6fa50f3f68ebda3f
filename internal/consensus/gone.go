package consensus

import (
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// goneEvidence is a follower's proof that the process of the leader it
// followed in term is gone (ReportGone): see the package doc, "Fail-over
// on proof that the leader is gone". lead is 0 when there is none.
type goneEvidence struct{ lead, term uint64 }

// goneStagger separates the campaigns of the survivors, in ticks, at the
// least: the survivor of rank r campaigns r*goneSpacing after its evidence.
const goneStagger = 2

// goneSpacing is how far apart the survivors' campaigns are, given the
// round trip of the refused connect that proved the leader gone:
// goneStagger ticks, or twice that round trip if longer. The survivor of
// rank r-1 sends its vote request up to a round trip after the one of rank
// r got its proof (their proofs' round trips differ with the link's
// jitter) and the request takes half a round trip more to arrive; on a
// slow link two ticks are not enough, the campaigns cross, and each
// survivor votes for itself (multihost, 100±50ms of delay each way: two
// and three rounds instead of one).
func (c *Core) goneSpacing(roundTrip time.Duration) time.Duration {
	return max(goneStagger*c.cfg.TickInterval, 2*roundTrip)
}

// ReportGone tells the Core that its owner has proof, now, that peer id's
// process is gone (see the package doc, "Fail-over on proof that the
// leader is gone"); roundTrip is how long the refused connect took (0 if
// unknown), which spaces the survivors' campaigns (goneSpacing). It is
// taken only about the leader this peer follows, in its current term, and
// ignored otherwise; it reports whether it was taken.
func (c *Core) ReportGone(id uint64, roundTrip time.Duration) bool {
	return c.reportGone(id, c.cfg.Now(), roundTrip)
}

// reportGone is ReportGone for a proof obtained at time at of the Core's
// clock (the owner may hand it over later): it is about the leader this
// peer follows only if this peer followed it, in this term, already at
// time at.
func (c *Core) reportGone(id uint64, at, roundTrip time.Duration) bool {
	c.keepGone() // brings seenLead up to date
	st := c.rn.BasicStatus()
	if id == 0 || id == c.cfg.ID || st.RaftState != raft.StateFollower || st.Lead != id {
		return false
	}
	if c.seenLeadSince >= at {
		// This peer began to follow it (in this term) after the proof
		// was taken: the proof may be about an older process of it.
		return false
	}
	if c.gone.lead == id && c.gone.term == st.Term {
		return true // already known; keep the first campaign time
	}
	now := c.cfg.Now()
	c.gone = goneEvidence{lead: id, term: st.Term}
	c.goneCampaignAt = 0
	c.goneSpaced = c.goneSpacing(roundTrip)
	if rank, ok := c.goneRank(id); ok && !c.notCandidate {
		c.goneCampaignAt = now + time.Duration(rank)*c.goneSpaced
	}
	// Transfer votes refused a moment ago for want of this evidence: the
	// survivors learn of the crash a few milliseconds apart. Each is
	// stepped, in the order they came: raft grants the first and refuses
	// the others, so that every candidate has its answer (a crossed one
	// counts it: followSplit).
	if ds := c.deferredVotes; len(ds) > 0 && now-c.deferredAt < c.cfg.ElectionTimeout {
		c.deferredVotes = nil
		for _, d := range ds {
			if d.Term > st.Term {
				_ = c.Step(d)
			}
		}
	}
	c.maybeFailover(now)
	return true
}

// goneRank is this peer's rank among the voters that survive the gone
// leader, by ID: the order in which they campaign. ok is false when this
// peer is not a voter.
func (c *Core) goneRank(gone uint64) (int, bool) { return c.survivorRank(gone, c.cfg.ID) }

// survivorRank is voter id's rank among the voters that survive the gone
// leader, by ID; ok is false when id is not such a voter.
func (c *Core) survivorRank(gone, id uint64) (int, bool) {
	rank := 0
	for _, v := range c.voters { // sorted
		switch v {
		case gone:
		case id:
			return rank, true
		default:
			rank++
		}
	}
	return 0, false
}

// followSplit follows a vote request or answer m, stepped at time now, of
// the term of this peer's fail-over campaign (goneTerm): when the
// survivors' campaigns crossed (the earlier-ranked one ran late, a stall,
// and the next one's turn came first), each voted for itself in that term,
// and none may be able to win it; raft would wait out its randomized
// election timeout. The earlier-ranked candidate, on a later-ranked one's
// request, campaigns again (a pre-vote, then a vote in the next term),
// which the others, without a leader, grant; the later-ranked one waits
// for it. Once per fail-over campaign.
//
// When: the candidate of rank r retries r spacings (goneSpacing) after
// the request, so that when three or more crossed an earlier-ranked
// retry reaches the middle ones first and they grant it instead of
// campaigning against it. And half a spacing later still (a round trip
// of the proof's) while someone could yet win the term (splitUndecided):
// with more than three voters this peer or a rival may have most of
// them, and a retry would throw away its own win or depose the rival (its
// pre-vote granted before the win, its vote after: the simulator saw a
// 7-peer fail-over take three terms and 3 s so); the wait gives a win
// time to be heard, which drops the retry (keepGone), and is short of
// raft's own timer, which would have both campaign again. Each answer
// this peer gets, and each rival it hears of, moves the retry
// (retryDue); it happens only if this peer is still where the crossing
// left it (splitIn).
func (c *Core) followSplit(m raftpb.Message, now time.Duration) {
	if c.goneTerm == 0 || m.Term != c.goneTerm || c.gone.lead == 0 {
		return
	}
	st := c.rn.BasicStatus()
	if st.Term != c.goneTerm {
		return
	}
	switch {
	case m.Type == raftpb.MsgVote:
		c.goneRivals = appendNew(c.goneRivals, m.From)
	case m.Reject:
		c.goneRefusals = appendNew(c.goneRefusals, m.From)
	default:
		c.goneGrants = appendNew(c.goneGrants, m.From)
	}
	if c.goneSplitAt == 0 {
		if m.Type != raftpb.MsgVote || !c.splitIn(st, c.goneTerm) {
			return
		}
		mine, ok := c.goneRank(c.gone.lead)
		theirs, ok2 := c.survivorRank(c.gone.lead, m.From)
		if !ok || !ok2 || mine > theirs {
			return
		}
		c.goneSplitAt, c.goneSplitRank = now, mine
	}
	c.maybeRetry(now)
}

// retryDue is when this peer retries its crossed fail-over campaign
// (followSplit): rank r spacings after the later-ranked request, and half
// a spacing more while someone may still win the term.
func (c *Core) retryDue() time.Duration {
	due := c.goneSplitAt + time.Duration(c.goneSplitRank)*c.goneSpaced
	if c.splitUndecided() {
		due += c.goneSpaced / 2
	}
	return due
}

// splitUndecided reports whether someone could still win the term of this
// peer's crossed fail-over campaign, by the votes it knows of: itself,
// with its own vote, the ones it was granted and the ones not yet known;
// or a rival, with its own vote, the ones not yet known and the ones that
// refused this peer (they may have voted for it). The gone leader votes
// for nobody.
func (c *Core) splitUndecided() bool {
	unknown, refused := 0, 0
	for _, v := range c.voters {
		switch {
		case v == c.cfg.ID || v == c.gone.lead || slices.Contains(c.goneRivals, v) || slices.Contains(c.goneGrants, v):
		case slices.Contains(c.goneRefusals, v):
			refused++
		default:
			unknown++
		}
	}
	quorum := len(c.voters)/2 + 1
	return 1+len(c.goneGrants)+unknown >= quorum || 1+unknown+refused >= quorum
}

// appendNew appends id to ids unless it is there already.
func appendNew(ids []uint64, id uint64) []uint64 {
	if slices.Contains(ids, id) {
		return ids
	}
	return append(ids, id)
}

// maybeRetry campaigns again when this peer's retry of a crossed fail-over
// campaign is due (followSplit), unless the election moved on: it granted
// an earlier-ranked survivor's retry (a later term), or a leader won the
// term (splitIn). Once: the campaign's state is dropped.
func (c *Core) maybeRetry(now time.Duration) {
	if c.goneSplitAt == 0 || now < c.retryDue() {
		return
	}
	term := c.goneTerm
	c.dropSplit()
	if c.splitIn(c.rn.BasicStatus(), term) {
		_ = c.Campaign()
	}
}

// splitIn reports whether this peer, in raft state st, is still where a
// crossed campaign of term left it: in that term, having voted for itself,
// with no leader known — a candidate, or a follower once a majority
// refused it (raft's lost campaign) — and still a candidate for
// leadership.
func (c *Core) splitIn(st raft.BasicStatus, term uint64) bool {
	return st.Term == term && st.Vote == c.cfg.ID && st.Lead == raft.None && st.RaftState != raft.StateLeader && !c.notCandidate
}

// dropSplit forgets this peer's fail-over campaign and its crossing.
func (c *Core) dropSplit() {
	c.goneTerm = 0
	c.goneGrants, c.goneRefusals, c.goneRivals = c.goneGrants[:0], c.goneRefusals[:0], c.goneRivals[:0]
	c.goneSplitAt = 0
}

// keepGone notes when raft's leader or term changed, and drops the
// evidence once raft's state leaves it behind: it
// stands while this peer follows the gone leader in the evidence's term,
// or has heard of no leader since (it is between elections, in that term
// or a later one), and is gone for good once another leader, or the same
// one in another term, is heard of. The Core calls it after every change
// of raft's state (Step, Tick, a campaign), so that c.gone.lead != 0
// means the evidence stands.
func (c *Core) keepGone() {
	st := c.rn.BasicStatus()
	if key := [2]uint64{st.Lead, st.Term}; key != c.seenLead {
		c.seenLead, c.seenLeadSince = key, c.cfg.Now()
	}
	if c.gone.lead == 0 {
		return
	}
	if !((st.Lead == c.gone.lead && st.Term == c.gone.term) || (st.Lead == raft.None && st.Term >= c.gone.term)) {
		c.dropGone()
	}
}

func (c *Core) dropGone() {
	c.gone = goneEvidence{}
	c.goneCampaignAt = 0
	c.dropSplit()
}

// maybeFailover starts this peer's campaign when its turn has come and
// the evidence still stands: a transfer-style election (raft's
// campaignTransfer, as a MsgTimeoutNow starts), which skips pre-vote and
// the voters' in-lease check; the voters' own evidence is what lets them
// grant it.
func (c *Core) maybeFailover(now time.Duration) {
	if c.goneCampaignAt == 0 || now < c.goneCampaignAt {
		return
	}
	c.goneCampaignAt = 0 // one campaign per evidence; then raft's timer
	st := c.rn.BasicStatus()
	if c.gone.lead == 0 || st.RaftState != raft.StateFollower || c.notCandidate {
		return
	}
	if st.Term > c.gone.term && st.Vote != raft.None && st.Vote != c.cfg.ID {
		return // it granted an earlier survivor's campaign: let it win
	}
	_ = c.stepRaft(raftpb.Message{Type: raftpb.MsgTimeoutNow, From: c.gone.lead, To: c.cfg.ID, Term: st.Term})
	if st := c.rn.BasicStatus(); st.RaftState == raft.StateCandidate {
		c.dropSplit()
		c.goneTerm = st.Term
	}
	c.keepGone()
}

// deferVote keeps a transfer vote request refused for want of evidence,
// for ReportGone to step: those of the highest term, one per candidate
// (its newest), in the order they came.
func (c *Core) deferVote(m raftpb.Message, now time.Duration) {
	if m.Type != raftpb.MsgVote {
		return
	}
	ds := c.deferredVotes
	if len(ds) > 0 && now-c.deferredAt < c.cfg.ElectionTimeout {
		switch {
		case ds[0].Term > m.Term:
			return
		case ds[0].Term < m.Term:
			ds = ds[:0]
		}
	} else {
		ds = ds[:0]
	}
	m.Entries, m.Snapshot = nil, nil
	m.Context = slices.Clone(m.Context)
	ds = slices.DeleteFunc(ds, func(d raftpb.Message) bool { return d.From == m.From })
	c.deferredVotes, c.deferredAt = append(ds, m), now
}

// GoneEvidence returns the leader and term this peer holds evidence about
// (ReportGone), or zeros.
func (c *Core) GoneEvidence() (lead, term uint64) { return c.gone.lead, c.gone.term }
