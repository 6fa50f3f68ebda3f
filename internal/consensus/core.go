// Package consensus is QCluster's election core: an etcd raft RawNode plus the
// leader lease, driven step by step with no I/O of its own.
//
// A Core is not safe for concurrent use. One goroutine owns it (a Loop,
// which Node runs in production and the simulator in tests) and calls Tick
// once per TickInterval of the injected clock, never before the tick is
// due (a Loop applies the ticks due when it wakes, and sleeps through the
// ticks that would only be counted), Step for every received message and
// Process whenever HasReady reports work. Process persists a Ready before it
// hands its messages to the send function, as raft requires, except on a
// leader whose term and vote are already durable: it sends first and
// persists while its messages travel (see Core.Process).
//
// # Leader lease
//
// The lease is what makes IsLeader safe to act on. Every heartbeat interval
// the leader starts a ReadIndex round (raft sends it as a heartbeat carrying
// a context) and remembers the clock time t at which it did so, before any
// of the round's messages leave. These rounds are the leader's heartbeats:
// raft's own periodic heartbeat is set to just under the election timeout,
// a safety net that costs almost nothing. When a quorum has acknowledged a
// round, the leader holds the lease until
//
//	t + ElectionTimeout - TickInterval - DriftMargin
//
// Followers run with CheckQuorum, so a follower that heard from the leader at
// time r >= t refuses votes until it has counted ElectionTimeout/TickInterval
// ticks since r; a tick is applied no earlier than it is due, one
// TickInterval after the previous one was due, and the owner applies the
// ticks due before it steps a message (or drops them: Loop.ReceiveBatch), so
// those counted after the leader's message were due after it arrived, later
// than t: no quorum can elect
// another leader before t + ElectionTimeout - TickInterval. A peer
// that restarts has forgotten when it last heard from a leader, so it refuses
// votes for one election timeout after start. The DriftMargin absorbs clock
// rate differences between machines. The lease ends at once when the leader
// starts a leadership transfer, since the transferee's election bypasses the
// followers' lease.
//
// A new leader's first lease does not wait for a round: when the first entry
// of its term commits, a quorum has accepted appends sent after the moment t
// it became leader, and an append resets a follower's election timer just as
// a heartbeat does, so the same bound holds from that t.
//
// # Candidacy
//
// SetCandidate(false) takes a peer out of the running (its application's
// health check fails) while it keeps voting, so the cluster keeps its
// majority. raft keeps ticking (CheckQuorum's vote lease counts this peer's
// ticks since it heard from the leader), so its election timer may still
// fire, but the MsgPreVote and MsgVote requests it would send are dropped:
// with PreVote on, a pre-candidate does not raise its term, still grants
// votes, and becomes a follower again at the leader's next heartbeat. A
// MsgTimeoutNow (a leadership transfer to it) is ignored. A leader that is
// not a candidate earns no lease (IsLeader is false); its owner hands
// leadership over. A single-voter cluster's only voter does not tick while
// it is not a candidate (it would elect itself without asking anyone).
//
// Raft gives up on a transfer after an election timeout and the leader then
// earns its lease again, but a MsgTimeoutNow can arrive later than that (a
// slow network, a paused transferee), and the election it starts still
// bypasses the followers' lease. So rounds sent during a transfer are flagged
// in their context, and a follower grants a transfer vote only if the newest
// round it heard from the leader was flagged, or it heard no unflagged round
// within an election timeout; a peer in its first election timeout after a
// restart refuses transfer votes too.
//
// # Fail-over on proof that the leader is gone
//
// The common leader failure is its process dying (a panic, an OOM kill,
// kill -9) while its host stays up: the kernel closes the dead process's
// sockets. The owner (the transport) then has proof that the process is
// gone: the inbound stream from it ended with a clean end-of-file and no
// goodbye frame, and a new connection to its port was refused. It tells
// the Core with ReportGone (Loop.ReportGone, Node.PeerGone). A follower
// takes that report as evidence only about the leader it follows, in its
// current term (raft's lead and term now), and only if it followed that
// leader in that term already when the proof was taken; anything else is
// ignored. (The owner steps the messages queued before a report first:
// they were sent before the stream ended.)
// Evidence about (leader, term) stands while this peer still follows that
// leader in that term, or has heard of no leader since (between elections,
// in that term or a later one); it is dropped for good by any message from
// that leader and as soon as another leader, or the same one in another
// term, is heard of.
//
// With evidence, the survivors do not wait out the election timeout. Each
// ranks itself among the configuration's voters other than the gone
// leader, by ID, and the one of rank r starts a transfer-style election
// (raft's campaignTransfer, as a MsgTimeoutNow does: no pre-vote, and
// voters skip raft's in-lease check) r spacings after its evidence (two
// ticks, or twice the round trip of the refused connect if longer: on a
// slow link the earlier-ranked survivor's request must arrive first), if it
// is still a follower with evidence then, is a candidate (SetCandidate),
// and has not granted its vote to an earlier survivor's election since.
// A voter grants such a vote request early only if it holds evidence
// itself (or the transfer rules above let it). Survivors learn of the
// crash a few milliseconds apart, so a request refused for want of
// evidence is kept (those of the highest term, one per candidate) and
// stepped again when the evidence comes, within an election timeout, in
// the order they came: the first is granted, the others refused. A rank-0 survivor whose
// log is behind is refused by up-to-date voters, and the next one tries
// a spacing later: most up-to-date log first, then lowest ID, without
// anyone knowing the others' logs. Each survivor campaigns once per
// evidence; if no leader results, raft's election timer takes over. One
// exception: when two survivors' campaigns cross (the earlier-ranked one
// ran late, a stall, past the next one's turn), each votes for itself in
// the same term and neither can win it; the earlier-ranked of the two, on
// the other's request, campaigns again (a pre-vote, then a normal vote in
// the next term, which the other, a candidate without a leader, grants),
// instead of both waiting out raft's timer (followSplit). Rank r retries r
// spacings after such a request (when three or more crossed, the middle
// ones grant rank 0's retry instead of campaigning against it), half a
// spacing later while the answers and rivals it knows of leave someone
// able to win the term (a win heard drops the retry), and only if still
// where the crossing left it.
//
// Safety: the lease argument above only needs every member of a lease
// holder's quorum to refuse votes while the lease may run. Evidence lets a
// voter grant early only on its own proof about its own current leader in
// its current term, which no live process produces: a process that stops
// gracefully says goodbye first, deliberate closes without a goodbye reset
// the connection, and a paused (SIGSTOP) process, a partition, a reset or
// a firewall's reject give no clean end-of-file followed by a refused
// connection. A leader's lease lives in its process's memory, so once the
// process that led term T is gone, no one holds T's lease again. If a
// newer leader Y exists that this voter has not heard of, every quorum
// intersects Y's lease quorum, whose members follow Y, hold no evidence
// about Y (it is alive) and none about anyone else (it was dropped when they
// heard Y), and refuse. A stale report (a proof taken before this peer
// began to follow its current leader in its current term) is ignored: a
// proof taken while it already followed Y in term T, from messages of the
// process that won T, is about that process. The transport must report at
// once after the refused connection (Node.PeerGone stamps the report), and
// a process must listen on its port before it sends anything and until it
// has said goodbye, so that a refused connection means that no process of
// that peer that ever sent this peer anything is running then.
//
// # Messages from the network
//
// Every message Step receives is hostile until proven otherwise; Step
// refuses, with an error that names the reason (RefusalOf):
//
//   - types peers do not exchange: raft's local messages, MsgForgetLeader,
//     MsgTransferLeader, MsgReadIndex(Resp) and unknown types (ErrMessageType);
//   - any message from a peer outside this peer's configuration, once it
//     has one, unless Config.Vouch vouches for it (ErrNotMember; see
//     below);
//   - MsgTimeoutNow, unless it comes from the leader this peer follows, in
//     its term (ErrTimeoutNow): it starts an election that bypasses the
//     followers' lease;
//   - MsgProp, unless Config.AcceptProposal accepts every entry and this
//     peer leads (ErrProposal). raft would panic on an empty one and append
//     any entry, configuration changes included.
//
// A panic inside raft while it steps a message is recovered (ErrPanic): the
// message is dropped, the peer goes on. The owner counts refusals and may
// close the stream a message came on.
//
// The configuration a sender must belong to is the applied one plus the
// members that configuration changes this peer has appended, but not yet
// applied, add: a follower that appended the addition of a member hears
// from it even before the change commits here (it may already lead, or ask
// for votes, once a quorum applied it). A peer with no configuration yet
// (joining, waiting for its first snapshot) accepts members from anyone.
//
// That alone would cost liveness: a member that missed the addition of
// another entirely (it was down or cut off while the change was appended
// and committed) could not hear it, neither follow it while it leads nor
// vote for it. When the leader that added it then leaves, the configuration
// can be left with a majority that needs both (say {p2, p4}, where p2
// missed p4's addition and its log is behind p4's): no leader, ever. So a
// sender the configuration does not list is heard when Config.Vouch vouches
// for it: its owner knows it as a peer of this cluster by other means (the
// transport authenticated it with a certificate of the cluster's CA, or
// gossip lists it). Raft itself would let any peer that knows the
// cluster's address vote, campaign and append.
package consensus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/qcluster/qcluster/internal/loglimit"
	"github.com/qcluster/qcluster/internal/storage"
)

// Role is a peer's Raft role.
type Role int

// Roles, in the order a peer usually passes through them.
const (
	Follower Role = iota
	PreCandidate
	Candidate
	Leader
)

// String returns the lower-case name of the role.
func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case PreCandidate:
		return "pre-candidate"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

func roleOf(s raft.StateType) Role {
	switch s {
	case raft.StateLeader:
		return Leader
	case raft.StateCandidate:
		return Candidate
	case raft.StatePreCandidate:
		return PreCandidate
	}
	return Follower
}

// Errors returned by the core.
var (
	// ErrBadConfig reports an invalid Config.
	ErrBadConfig = errors.New("consensus: invalid config")
	// ErrStorage reports that durable state could not be read or written;
	// the core must not be used after it.
	ErrStorage = errors.New("consensus: storage failure")
)

// Config configures a Core. Durations are of the injected clock.
type Config struct {
	// ID is this peer's raft node ID (non-zero).
	ID uint64
	// Voters are the voters a brand-new cluster starts with (must contain
	// ID). Ignored when Storage already holds state. When empty and the
	// Storage is empty, the peer starts as no member at all, waiting for a
	// leader to add it with a configuration change and send it its state
	// (joining a running cluster).
	Voters []uint64
	// BootstrapData is the application state stored in the snapshot that
	// founds a new cluster (index 1, term 1). Every founding peer should
	// give the same bytes. Ignored when Storage already holds state.
	BootstrapData []byte
	// Storage holds the durable raft state.
	Storage storage.Storage
	// Now reads a clock that never goes backwards (a Node's default is
	// NewClock's, which counts suspend); it must return values > 0.
	Now func() time.Duration
	// TickInterval is how often the owner calls Tick. Default
	// HeartbeatInterval/5.
	TickInterval time.Duration
	// HeartbeatInterval is the leader's heartbeat and lease-renewal period.
	HeartbeatInterval time.Duration
	// ElectionTimeout is the minimum election timeout; raft randomizes each
	// follower's timeout in [ElectionTimeout, 2*ElectionTimeout).
	ElectionTimeout time.Duration
	// DriftMargin is subtracted from the lease for clock-rate differences
	// between peers. Default ElectionTimeout/10.
	DriftMargin time.Duration
	// Logger receives raft's own log lines (Info as Debug). May be nil.
	Logger *slog.Logger
	// AcceptProposal, when set, lets this peer's leader append proposals
	// that followers forward (MsgProp): each entry's data must be accepted
	// by it (a nil error), with from the sender's node ID; the sender is a
	// member, the entry a normal one with data. When nil, followers do not
	// forward proposals (raft's DisableProposalForwarding: Propose works on
	// the leader only) and every MsgProp from the network is refused. It
	// runs on the goroutine that owns the Core and must not call the Core.
	AcceptProposal func(from uint64, data []byte) error
	// Vouch, when set, is asked about a sender that this peer's
	// configuration does not list (see the package doc, "Messages from the
	// network"): true lets Step take its message. It must vouch only for
	// peers of this cluster (authenticated, or known by other means), and
	// it runs on the goroutine that owns the Core, for messages from the
	// network: it must be cheap and must not call the Core. Nil vouches
	// for nobody.
	Vouch func(id uint64) bool
	// NotCandidate starts the Core out of the running, as after
	// SetCandidate(false).
	NotCandidate bool

	// Hooks is told about events worth measuring. Its functions run on the
	// goroutine that owns the Core and must neither block nor call the
	// Core.
	Hooks Hooks
}

// Hooks are optional callbacks (each may be nil) for metrics.
type Hooks struct {
	// RoleChanged reports a change of raft role, as the Core sees it: once
	// per Ready, so roles passed through within one Ready (a pre-candidate
	// that is granted its pre-votes and then its votes before the Ready is
	// processed) are skipped.
	RoleChanged func(from, to Role)
	// LeaseRound reports that a quorum acknowledged a lease (heartbeat)
	// round, with the time from sending the round to learning of the
	// acknowledgement: the round trip to the quorum's slowest needed member.
	LeaseRound func(rtt time.Duration)
	// Committed reports, on the leader, an entry it appended while leading
	// (a proposal, a membership change, or the empty entry that opens its
	// term) that is now committed and applied (Process returns it), with
	// the time since it was appended (before it was persisted). Entries
	// still pending when the peer stops leading are not reported.
	Committed func(latency time.Duration)
}

func (c *Config) fill() error {
	if c.ID == 0 {
		return fmt.Errorf("%w: ID must be non-zero", ErrBadConfig)
	}
	if c.Storage == nil || c.Now == nil {
		return fmt.Errorf("%w: Storage and Now are required", ErrBadConfig)
	}
	if c.HeartbeatInterval <= 0 || c.ElectionTimeout < 3*c.HeartbeatInterval {
		return fmt.Errorf("%w: need HeartbeatInterval > 0 and ElectionTimeout >= 3*HeartbeatInterval (got %v, %v)",
			ErrBadConfig, c.HeartbeatInterval, c.ElectionTimeout)
	}
	if c.TickInterval <= 0 {
		c.TickInterval = c.HeartbeatInterval / 5
	}
	if c.TickInterval <= 0 || c.TickInterval > c.HeartbeatInterval {
		return fmt.Errorf("%w: TickInterval %v must be in (0, HeartbeatInterval]", ErrBadConfig, c.TickInterval)
	}
	if c.DriftMargin <= 0 {
		c.DriftMargin = c.ElectionTimeout / 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// View is the core's externally visible state at one instant.
type View struct {
	// ID is this peer's node ID.
	ID uint64
	// Role is raft's role. A Leader whose lease has lapsed is still Leader
	// until CheckQuorum makes it step down; use LeaseUntil.
	Role Role
	// Term is the current term (the fencing token while leading).
	Term uint64
	// Lead is the leader raft believes in for Term (0: none).
	Lead uint64
	// LeaseUntil is the clock time until which this peer holds the leader
	// lease (0: no lease).
	LeaseUntil time.Duration
	// LeaderSeen is when this peer last heard from Lead (followers), or the
	// lease end (leader).
	LeaderSeen time.Duration
	// Voters and Learners are the current configuration, sorted. Shared and
	// read-only.
	Voters, Learners []uint64
	// Transferring is the target of a leadership transfer in progress (0: none).
	Transferring uint64
}

// IsLeaderAt reports whether the view holds a valid lease at now.
func (v *View) IsLeaderAt(now time.Duration) bool {
	return v.Role == Leader && now < v.LeaseUntil
}

// Equal reports whether two views are the same (slices by content).
func (v View) Equal(o View) bool {
	return v.ID == o.ID && v.Role == o.Role && v.Term == o.Term && v.Lead == o.Lead &&
		v.LeaseUntil == o.LeaseUntil && v.LeaderSeen == o.LeaderSeen && v.Transferring == o.Transferring &&
		slices.Equal(v.Voters, o.Voters) && slices.Equal(v.Learners, o.Learners)
}

// LeaderAt returns the leader this peer may report at now: itself while it
// holds the lease, or the leader it heard from within the election timeout.
func (v *View) LeaderAt(now, electionTimeout time.Duration) (uint64, bool) {
	if v.Role == Leader {
		return v.ID, now < v.LeaseUntil
	}
	if v.Lead == 0 || v.LeaderSeen == 0 || now-v.LeaderSeen >= electionTimeout {
		return 0, false
	}
	return v.Lead, true
}

// Core is the election state machine. See the package doc.
type Core struct {
	cfg   Config
	rn    *raft.RawNode
	store storage.Storage

	leaseDur       time.Duration
	voteGuardUntil time.Duration

	leaseSeq     uint64
	leaseReqs    map[uint64]time.Duration // ReadIndex ctx -> time sent
	lastLeaseReq time.Duration
	leaseUntil   time.Duration
	// slowRounds counts the lease rounds in a row whose round trip took a
	// third of the election timeout or more; slowWarn limits the warnings
	// about them (see noteRoundTrip).
	slowRounds int
	slowWarn   loglimit.Limiter

	role       Role
	term, lead uint64
	// durableTerm and durableVote are the term and vote on stable storage
	// (see Process: a leader sends before it persists only when its Ready
	// changes neither).
	durableTerm, durableVote uint64
	// electedAt is when this peer became leader, until its first entry of
	// the term commits (0 otherwise).
	electedAt  time.Duration
	leaderSeen time.Duration
	transferee uint64

	// The newest lease round heard from the leader (follower side): the
	// leader, term and sequence, whether it could earn a lease (not sent
	// during a transfer), and when it arrived if so.
	roundLead, roundTerm, roundSeq uint64
	roundLease                     bool
	roundAt                        time.Duration

	// appended holds the entries appended while leading that are not yet
	// applied, with when they were appended (only with Hooks.Committed).
	appended []appendedEntry

	confState     raftpb.ConfState
	voters        []uint64
	learners      []uint64
	appliedIndex  uint64
	snapshotIndex uint64
	// pendingAdds are the members that appended, not yet applied changes
	// add: they may talk to this peer already (see knows).
	pendingAdds []pendingAdd
	// confIndex is the index of the last applied configuration change (or
	// snapshot); a stored snapshot before it does not list every member.
	// snapWanted: raft wanted to send a snapshot and the stored one was
	// older than confIndex (see SnapshotWanted).
	confIndex  uint64
	snapWanted bool

	// notCandidate: this peer does not seek leadership (SetCandidate).
	notCandidate bool

	// Fail-over on proof that the leader is gone (gone.go): the evidence,
	// when this peer's campaign is due (0: none), the transfer vote
	// requests refused for want of evidence and when the last came, and
	// raft's leader and term as last seen, with when they became so.
	gone           goneEvidence
	goneCampaignAt time.Duration
	// goneTerm is the term of this peer's fail-over campaign, while a
	// crossed one may still be retried (followSplit); 0: none.
	goneTerm uint64
	// goneSpaced is how far apart the survivors' campaigns are
	// (goneSpacing of the proof's round trip).
	goneSpaced time.Duration
	// The crossing of this peer's fail-over campaign (followSplit): the
	// voters that granted it, refused it, and the rival candidates of
	// goneTerm, and once a later-ranked rival's request came (splitAt, 0:
	// not yet), this peer's rank (the retry's time follows: retryDue).
	goneGrants, goneRefusals, goneRivals []uint64
	goneSplitAt                          time.Duration
	goneSplitRank                        int
	// (The deferred votes and raft's leader and term as last seen.)
	deferredVotes []raftpb.Message
	deferredAt    time.Duration
	seenLead      [2]uint64
	seenLeadSince time.Duration
}

// raftStorage is the storage raft reads. It refuses to hand raft a
// snapshot older than the applied configuration (raft would send it, and
// the member it does not list would drop it), and asks the owner for a
// new one instead (SnapshotWanted); raft tries again at the follower's
// next response.
type raftStorage struct {
	storage.Storage
	c *Core
}

func (s raftStorage) Snapshot() (raftpb.Snapshot, error) {
	snap, err := s.Storage.Snapshot()
	if err == nil && snap.Metadata.Index < s.c.confIndex {
		s.c.snapWanted = true
		return raftpb.Snapshot{}, raft.ErrSnapshotTemporarilyUnavailable
	}
	return snap, err
}

// appendedEntry is an entry a leader appended at a clock time.
type appendedEntry struct {
	index uint64
	at    time.Duration
}

// maxAppended bounds Core.appended: beyond it, further entries are not
// timed.
const maxAppended = 4096

// Raft's size limits. maxSizePerMsg bounds the entries of one append
// message; maxUncommittedSize the entries a leader holds appended but not
// committed (each at least one append's worth, so the largest proposal, a
// member's record with 64 KiB of metadata, always fits).
const (
	maxSizePerMsg      = 1 << 20
	maxUncommittedSize = 8 << 20
)

// pendingAdd is a member that a configuration change appended to this
// peer's log adds, before the change is applied.
type pendingAdd struct{ index, id uint64 }

// maxPendingAdds bounds Core.pendingAdds.
const maxPendingAdds = 1024

// New creates a Core over cfg.Storage, bootstrapping a new cluster of
// cfg.Voters when the storage is empty.
func New(cfg Config) (*Core, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	hs, cs, err := cfg.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	snap, err := cfg.Storage.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if raft.IsEmptyHardState(hs) && raft.IsEmptySnap(snap) && len(cfg.Voters) > 0 {
		if !slices.Contains(cfg.Voters, cfg.ID) {
			return nil, fmt.Errorf("%w: Voters must contain this peer's ID", ErrBadConfig)
		}
		// Every founding peer writes the same snapshot at index 1, term 1,
		// so their logs agree from the first entry on.
		voters := slices.Clone(cfg.Voters)
		slices.Sort(voters)
		voters = slices.Compact(voters)
		snap = raftpb.Snapshot{Data: cfg.BootstrapData, Metadata: raftpb.SnapshotMetadata{
			Index: 1, Term: 1, ConfState: raftpb.ConfState{Voters: voters},
		}}
		hs = raftpb.HardState{Term: 1, Commit: 1}
		if err := cfg.Storage.Save(hs, nil, snap); err != nil {
			return nil, fmt.Errorf("%w: bootstrap: %w", ErrStorage, err)
		}
		cs = snap.Metadata.ConfState
	}
	etTicks := int(cfg.ElectionTimeout / cfg.TickInterval)
	// The lease rounds are the heartbeats (see the package doc); raft's own
	// heartbeat only fires if they stop, e.g. before the first commit.
	hbTicks := max(etTicks-1, 1)
	c := &Core{}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              cfg.ID,
		ElectionTick:    etTicks,
		HeartbeatTick:   hbTicks,
		Storage:         raftStorage{cfg.Storage, c},
		Applied:         snap.Metadata.Index,
		MaxSizePerMsg:   maxSizePerMsg,
		MaxInflightMsgs: 256,
		// Bounds what proposals a leader holds uncommitted (raft drops
		// further ones until entries commit): with forwarded proposals a
		// follower cannot make the leader's log grow without bound.
		MaxUncommittedEntriesSize: maxUncommittedSize,
		// Without AcceptProposal the leader refuses every MsgProp from the
		// network (Step), so a follower's forwarded proposal could only be
		// lost: raft returns ErrProposalDropped to the follower's Propose
		// at once instead.
		DisableProposalForwarding: cfg.AcceptProposal == nil,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    raftLogger{cfg.Logger},
		// A leader removed from the voters steps down instead of leading a
		// cluster it is not part of.
		StepDownOnRemoval: true,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	now := cfg.Now()
	*c = Core{
		cfg:            cfg,
		rn:             rn,
		store:          cfg.Storage,
		leaseDur:       time.Duration(etTicks)*cfg.TickInterval - cfg.TickInterval - cfg.DriftMargin,
		voteGuardUntil: now + cfg.ElectionTimeout,
		leaseReqs:      make(map[uint64]time.Duration),
		slowWarn:       loglimit.Limiter{Period: slowWarnEvery},
		term:           hs.Term,
		durableTerm:    hs.Term,
		durableVote:    hs.Vote,
		appliedIndex:   snap.Metadata.Index,
		snapshotIndex:  snap.Metadata.Index,
		confIndex:      snap.Metadata.Index,
		notCandidate:   cfg.NotCandidate,
	}
	c.setConf(cs)
	if err := c.loadPendingAdds(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadPendingAdds finds, after a restart, the members that stored but
// unapplied configuration changes add.
func (c *Core) loadPendingAdds() error {
	last, err := c.store.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	for lo := c.appliedIndex + 1; lo <= last; {
		ents, err := c.store.Entries(lo, last+1, maxSizePerMsg)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrStorage, err)
		}
		if len(ents) == 0 {
			break
		}
		c.notePendingAdds(ents)
		lo = ents[len(ents)-1].Index + 1
	}
	return nil
}

// notePendingAdds records the members that conf changes among ents add.
func (c *Core) notePendingAdds(ents []raftpb.Entry) {
	for i := range ents {
		e := &ents[i]
		if e.Type == raftpb.EntryNormal {
			continue
		}
		cc, err := decodeConfChange(*e)
		if err != nil {
			continue // raft fails on it when it commits
		}
		for _, ch := range cc.AsV2().Changes {
			if ch.Type == raftpb.ConfChangeAddNode || ch.Type == raftpb.ConfChangeAddLearnerNode {
				if len(c.pendingAdds) < maxPendingAdds {
					c.pendingAdds = append(c.pendingAdds, pendingAdd{index: e.Index, id: ch.NodeID})
				}
			}
		}
	}
}

// forgetPendingAdds drops the pending adds at or before index (applied,
// or replaced by a snapshot).
func (c *Core) forgetPendingAdds(index uint64) {
	if len(c.pendingAdds) == 0 {
		return
	}
	c.pendingAdds = slices.DeleteFunc(c.pendingAdds, func(a pendingAdd) bool { return a.index <= index })
}

// decodeConfChange decodes a conf change entry of either version.
func decodeConfChange(e raftpb.Entry) (raftpb.ConfChangeI, error) {
	if e.Type == raftpb.EntryConfChange {
		var v1 raftpb.ConfChange
		if err := v1.Unmarshal(e.Data); err != nil {
			return nil, err
		}
		return v1, nil
	}
	var v2 raftpb.ConfChangeV2
	if err := v2.Unmarshal(e.Data); err != nil {
		return nil, err
	}
	return v2, nil
}

// LeaseDuration is how long a lease lasts after the round that earned it was
// sent.
func (c *Core) LeaseDuration() time.Duration { return c.leaseDur }

// Tick advances raft's logical clock by one tick and, on a leader, starts a
// heartbeat (lease) round every heartbeat interval.
func (c *Core) Tick() { c.tickAt(c.cfg.Now()) }

// tickAt is Tick with a reading of the clock taken just before (Loop.Advance
// applies all the ticks due with one reading): an idle leader's rounds cost
// no clock reads of their own. A round stamped with an earlier reading
// than its send only makes the lease it earns end earlier.
func (c *Core) tickAt(now time.Duration) {
	if c.notCandidate && c.role != Leader && len(c.voters) == 1 && c.voters[0] == c.cfg.ID {
		// Alone, raft would elect this peer without sending a request.
		return
	}
	c.rn.Tick()
	if c.transferee != 0 && c.rn.BasicStatus().LeadTransferee == 0 {
		// raft gave up on (or refused) the transfer: the lease may be
		// earned again.
		c.transferee = 0
	}
	c.keepGone()
	if c.goneCampaignAt != 0 {
		c.maybeFailover(now)
	}
	if c.goneSplitAt != 0 {
		c.maybeRetry(now)
	}
	c.heartbeatAt(now)
}

// tickDue returns the earliest time of the clock at which a tick may make
// this peer act; the ticks before it only count (see Loop.NextWake), and 0
// means the next tick may act:
//
//   - a leader acts at its next lease round, a heartbeat interval after the
//     last (raft's own heartbeat and quorum check come every election
//     timeout, and may come up to a heartbeat interval late: the lease,
//     not them, bounds how long a deposed leader says IsLeader);
//   - a survivor of a gone leader campaigns at its turn (ReportGone), a
//     multiple of TickInterval after its evidence;
//   - a follower that hears its leader can campaign only once it has
//     counted raft's randomized election timeout, at least ElectionTimeout,
//     in ticks since it last heard from it (leaderSeen), so not before
//     ElectionTimeout - 2*TickInterval after that (a tick of margin); if
//     raft reset its count later (a granted vote), the wake is early and
//     harmless;
//   - anyone else (a candidate, a follower without a leader, a joining
//     peer) may act at every tick.
func (c *Core) tickDue() time.Duration {
	st := c.rn.BasicStatus()
	switch {
	case st.RaftState == raft.StateLeader && c.role == Leader && c.lastLeaseReq != 0:
		return c.lastLeaseReq + c.cfg.HeartbeatInterval
	case st.RaftState == raft.StateFollower && st.Lead != raft.None && st.Lead == c.lead && c.leaderSeen != 0:
		due := c.leaderSeen + c.cfg.ElectionTimeout - 2*c.cfg.TickInterval
		if c.goneCampaignAt != 0 {
			due = min(due, c.goneCampaignAt)
		}
		return due
	}
	return 0
}

// heartbeat starts a ReadIndex round when one is due. During a leadership
// transfer the rounds still go out (they keep the followers quiet) but earn
// no lease.
func (c *Core) heartbeat() {
	if c.role == Leader {
		c.heartbeatAt(c.cfg.Now())
	}
}

// heartbeatAt is heartbeat as of now, a reading of the clock taken before.
func (c *Core) heartbeatAt(now time.Duration) {
	if c.role != Leader || c.rn.BasicStatus().RaftState != raft.StateLeader {
		// Not leading, or raft stepped down since the last Ready (a tick's
		// quorum check): a read index on a follower would be forwarded,
		// and peers refuse MsgReadIndex.
		return
	}
	if c.lastLeaseReq != 0 && now-c.lastLeaseReq < c.cfg.HeartbeatInterval {
		return
	}
	c.lastLeaseReq = now
	c.leaseSeq++
	var ctx [8]byte
	tag := c.leaseSeq
	if c.transferee != 0 {
		tag |= transferRound
	}
	binary.BigEndian.PutUint64(ctx[:], tag)
	// Forget rounds that can no longer give a lease.
	for seq, t := range c.leaseReqs {
		if now-t > c.leaseDur {
			delete(c.leaseReqs, seq)
		}
	}
	if c.transferee == 0 {
		c.leaseReqs[c.leaseSeq] = now
	}
	c.rn.ReadIndex(ctx[:])
}

// transferRound flags the context of a lease round sent during a leadership
// transfer.
const transferRound = 1 << 63

// Step hands a message from another peer to raft, unless it is refused
// (see the package doc, "Messages from the network"): the error then wraps
// one of the refusal errors below, and RefusalOf names its reason. Votes
// are also ignored, without an error, during the first election timeout
// after start, and transfer votes while a lease may be running; so is the
// leader's MsgTimeoutNow while this peer is not a candidate.
func (c *Core) Step(m raftpb.Message) error { return c.StepAt(m, c.cfg.Now()) }

// StepAt is Step with the clock already read: now is a reading of the
// Core's clock taken after m was received and after the ticks due by now
// were applied (Loop.ReceiveBatch reads it once for a batch of messages
// taken from the inbox). It stands for when m arrived: when its leader was
// last heard from, when its lease round came, whether a vote falls inside
// a guard. A reading later than the arrival only makes those guards last
// longer.
func (c *Core) StepAt(m raftpb.Message, now time.Duration) error {
	if !peerType(m.Type) {
		return fmt.Errorf("%w: %v", ErrMessageType, m.Type)
	}
	if m.From == c.cfg.ID || m.From == raft.None || !c.admits(m.From) {
		return fmt.Errorf("%w: %v from %x", ErrNotMember, m.Type, m.From)
	}
	switch m.Type {
	case raftpb.MsgTimeoutNow:
		// It makes this peer campaign at once, bypassing the followers'
		// lease: only the leader may say so, while it leads (it sends it
		// after dropping its own lease).
		if st := c.rn.BasicStatus(); m.From != st.Lead || m.Term != st.Term {
			return fmt.Errorf("%w: from %x at term %d, leader %x at term %d", ErrTimeoutNow, m.From, m.Term, st.Lead, st.Term)
		}
		if c.notCandidate {
			// Not a candidate (SetCandidate): the leader did not know yet;
			// raft gives the transfer up after an election timeout.
			return nil
		}
	case raftpb.MsgProp:
		if err := c.checkProposal(m); err != nil {
			return err
		}
	}
	if m.From == c.gone.lead {
		// It is alive after all (or its message was late): no fail-over.
		c.dropGone()
	}
	if m.Type == raftpb.MsgVote || m.Type == raftpb.MsgPreVote {
		if now < c.voteGuardUntil {
			return nil
		}
		if string(m.Context) == "CampaignTransfer" && c.roundLease && now-c.roundAt < c.cfg.ElectionTimeout &&
			c.gone.lead == 0 && c.followsRoundLead() {
			// Kept a moment: this peer's own evidence that the leader
			// is gone may be on its way (ReportGone steps it then).
			c.deferVote(m, now)
			return nil
		}
	}
	err := c.stepRaft(m)
	c.keepGone()
	if err != nil {
		return err
	}
	if m.Type == raftpb.MsgVote || m.Type == raftpb.MsgVoteResp {
		c.followSplit(m, now)
	}
	switch m.Type {
	case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap:
		if st := c.rn.BasicStatus(); m.From == st.Lead && m.Term == st.Term {
			c.leaderSeen = now
			if m.Type == raftpb.MsgHeartbeat && len(m.Context) == 8 {
				tag := binary.BigEndian.Uint64(m.Context)
				seq := tag &^ transferRound
				if m.From != c.roundLead || m.Term != c.roundTerm || seq > c.roundSeq {
					c.roundLead, c.roundTerm, c.roundSeq = m.From, m.Term, seq
					c.roundLease = tag&transferRound == 0
					if c.roundLease {
						c.roundAt = now
					}
				}
			}
		}
	}
	return nil
}

// followsRoundLead reports whether the newest lease round this peer heard
// may still be its leader's: it follows that round's leader in that term,
// or has heard of no leader since. Only then does a transfer vote wait for
// evidence. A peer that has since won leadership itself (raft names it
// the leader: a fail-over winner handing leadership on at once) or
// followed another leader holds no such round: the lease it acknowledged
// is not one it would protect.
func (c *Core) followsRoundLead() bool {
	st := c.rn.BasicStatus()
	return st.Lead == raft.None || (st.Lead == c.roundLead && st.Term == c.roundTerm)
}

// hearsLive reports whether msgs hold a message that shows the leader this
// follower follows alive in its term, for Loop.ReceiveBatch: an append,
// heartbeat or snapshot from it. A leader hears nobody this way: its ticks
// pace its lease rounds (Tick starts them), and dropping them whenever a
// follower's answer waited would hold the rounds back while answers keep
// coming (a member catching up), until its followers lose it.
func (c *Core) hearsLive(msgs []raftpb.Message) bool {
	st := c.rn.BasicStatus()
	for i := range msgs {
		m := &msgs[i]
		if m.Term != st.Term || m.Term == 0 {
			continue
		}
		switch st.RaftState {
		case raft.StateFollower:
			if st.Lead != raft.None && m.From == st.Lead &&
				(m.Type == raftpb.MsgApp || m.Type == raftpb.MsgHeartbeat || m.Type == raftpb.MsgSnap) {
				return true
			}

		}
	}
	return false
}

// stepRaft steps m into raft. raft panics on some messages a correct peer
// never sends (a heartbeat committing past this peer's log, an append that
// rewrites committed entries); such a panic is recovered and returned as an
// ErrPanic error: the message is dropped, and the peer goes on.
func (c *Core) stepRaft(m raftpb.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v from %x: %v", ErrPanic, m.Type, m.From, r)
		}
	}()
	return c.rn.Step(m)
}

// peerType reports whether peers exchange messages of type t. The others
// are raft's local messages (MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus,
// MsgCheckQuorum, MsgStorageAppend/Resp, MsgStorageApply/Resp: raft would
// act on some of them if their sender claimed to be one of its local
// threads), MsgForgetLeader (it clears a follower's lease guard),
// MsgTransferLeader (it would start a transfer without dropping the
// leader's lease: QCluster transfers only through TransferLeadership),
// MsgReadIndex and MsgReadIndexResp (only the leader starts read-index
// rounds, its lease rounds, and their context must not be forged), and
// types this build does not know.
func peerType(t raftpb.MessageType) bool {
	switch t {
	case raftpb.MsgApp, raftpb.MsgAppResp,
		raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgPreVote, raftpb.MsgPreVoteResp,
		raftpb.MsgSnap, raftpb.MsgHeartbeat, raftpb.MsgHeartbeatResp,
		raftpb.MsgTimeoutNow, raftpb.MsgProp:
		return true
	}
	return false
}

// checkProposal decides whether a MsgProp a follower forwarded may be
// appended: only with Config.AcceptProposal, only on the leader, only from
// a member (not one that Vouch only vouches for), only normal entries with
// data, each accepted by AcceptProposal.
func (c *Core) checkProposal(m raftpb.Message) error {
	if c.cfg.AcceptProposal == nil {
		return fmt.Errorf("%w: this peer takes no proposals from the network", ErrProposal)
	}
	if c.rn.BasicStatus().RaftState != raft.StateLeader {
		return fmt.Errorf("%w: this peer does not lead", ErrProposal)
	}
	if !c.knows(m.From) {
		// Vouch lets a peer the configuration does not list vote and
		// follow; proposing is for members.
		return fmt.Errorf("%w: %x is not a member", ErrProposal, m.From)
	}
	if len(m.Entries) == 0 {
		return fmt.Errorf("%w: no entries", ErrProposal)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != raftpb.EntryNormal || len(e.Data) == 0 {
			return fmt.Errorf("%w: entry of type %v with %d bytes", ErrProposal, e.Type, len(e.Data))
		}
		if err := c.cfg.AcceptProposal(m.From, e.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProposal, err)
		}
	}
	return nil
}

// Errors wrapped by Step for the messages it refuses; each is one Refusal.
var (
	// ErrMessageType: a type peers do not exchange (see peerType).
	ErrMessageType = errors.New("consensus: message type not accepted from the network")
	// ErrNotMember: the sender is not a member (voter or learner) of this
	// peer's configuration and Config.Vouch does not vouch for it, or it
	// claims to be this peer.
	ErrNotMember = errors.New("consensus: message from a non-member")
	// ErrProposal: a forwarded proposal that may not be appended.
	ErrProposal = errors.New("consensus: proposal refused")
	// ErrTimeoutNow: a MsgTimeoutNow not from the leader this peer
	// follows, in its term.
	ErrTimeoutNow = errors.New("consensus: MsgTimeoutNow not from the current leader")
	// ErrPanic: raft panicked while stepping the message.
	ErrPanic = errors.New("consensus: raft panicked on a message")
)

// Refusal is why Step refused a message, for counting.
type Refusal int

// Refusals, one per refusal error.
const (
	RefusedType       Refusal = iota // ErrMessageType
	RefusedNonMember                 // ErrNotMember
	RefusedProposal                  // ErrProposal
	RefusedTimeoutNow                // ErrTimeoutNow
	RefusedPanic                     // ErrPanic
	NumRefusals                      // how many there are
)

// String returns the reason as a metric label: "type", "non_member",
// "proposal", "timeout_now" or "panic".
func (r Refusal) String() string {
	switch r {
	case RefusedType:
		return "type"
	case RefusedNonMember:
		return "non_member"
	case RefusedProposal:
		return "proposal"
	case RefusedTimeoutNow:
		return "timeout_now"
	case RefusedPanic:
		return "panic"
	}
	return fmt.Sprintf("refusal(%d)", int(r))
}

// RefusalOf returns the reason of an error Step returned, and false for
// errors that are not refusals (raft's own, such as a response from a peer
// it does not track).
func RefusalOf(err error) (Refusal, bool) {
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, ErrMessageType):
		return RefusedType, true
	case errors.Is(err, ErrNotMember):
		return RefusedNonMember, true
	case errors.Is(err, ErrProposal):
		return RefusedProposal, true
	case errors.Is(err, ErrTimeoutNow):
		return RefusedTimeoutNow, true
	case errors.Is(err, ErrPanic):
		return RefusedPanic, true
	}
	return 0, false
}

// knows reports whether id may talk to this peer: it is a voter or learner
// of the applied configuration, or a change this peer has appended but not
// yet applied adds it, or this peer has no configuration yet (it is joining
// and waits for a leader to send it one).
func (c *Core) knows(id uint64) bool {
	if len(c.voters) == 0 && len(c.learners) == 0 {
		return true
	}
	if _, ok := slices.BinarySearch(c.voters, id); ok {
		return true
	}
	if _, ok := slices.BinarySearch(c.learners, id); ok {
		return true
	}
	for _, a := range c.pendingAdds {
		if a.id == id {
			return true
		}
	}
	return false
}

// admits reports whether Step takes messages from id: it knows id, or
// Config.Vouch vouches for it.
func (c *Core) admits(id uint64) bool {
	return c.knows(id) || (c.cfg.Vouch != nil && c.cfg.Vouch(id))
}

// Knows reports whether this peer's configuration lists id: a member of the
// applied configuration, or one that an appended change adds, or anyone
// while this peer has no configuration (see the package doc, "Messages
// from the network").
func (c *Core) Knows(id uint64) bool { return c.knows(id) }

// Campaign makes this peer start an election now (tests and demos).
func (c *Core) Campaign() error {
	defer c.keepGone()
	return c.rn.Campaign()
}

// Propose appends data to the replicated log (leader only; followers
// forward it).
func (c *Core) Propose(data []byte) error { return c.rn.Propose(data) }

// ProposeConfChange proposes a membership change.
func (c *Core) ProposeConfChange(cc raftpb.ConfChangeI) error { return c.rn.ProposeConfChange(cc) }

// TransferLeadership starts handing leadership to the given voter. The lease
// ends at once: the transferee's election does not wait for followers'
// leases to run out.
func (c *Core) TransferLeadership(to uint64) {
	if c.role != Leader || to == c.cfg.ID {
		return
	}
	c.dropLease()
	c.transferee = to
	// Send a flagged round first, so the other followers hear that a
	// transfer is under way before the transferee's vote request can reach
	// them (they refuse transfer votes right after an ordinary round): in
	// the same Ready its heartbeats precede the MsgTimeoutNow.
	c.heartbeat()
	c.rn.TransferLeader(to)
}

// BestTransferee returns the voter best placed to take over leadership
// from this leader, skipping this peer and the IDs skip reports (skip may be
// nil): one raft is replicating to (a peer reported unreachable is only
// probed), then one that answered recently, then the longest matching log.
// It returns 0 when there is none or this peer does not lead.
func (c *Core) BestTransferee(skip func(id uint64) bool) uint64 {
	if c.role != Leader {
		return 0
	}
	type score struct {
		replicating, active bool
		match               uint64
	}
	better := func(a, b score) bool {
		if a.replicating != b.replicating {
			return a.replicating
		}
		if a.active != b.active {
			return a.active
		}
		return a.match > b.match
	}
	var best uint64
	var bestScore score
	progress := c.rn.Status().Progress
	for _, id := range c.voters { // sorted: ties go to the lowest ID
		if id == c.cfg.ID || (skip != nil && skip(id)) {
			continue
		}
		pr, ok := progress[id]
		if !ok {
			continue
		}
		s := score{pr.State == tracker.StateReplicate, pr.RecentActive, pr.Match}
		if best == 0 || better(s, bestScore) {
			best, bestScore = id, s
		}
	}
	return best
}

// Replicating returns, on the leader, how many members (voters and
// learners, itself included) raft is replicating to: appends flow to them,
// as opposed to a member being probed after a failed or unreachable send, or
// being sent a snapshot. It returns 0 when this peer does not lead.
func (c *Core) Replicating() int {
	if c.role != Leader {
		return 0
	}
	n := 0
	c.rn.WithProgress(func(_ uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pr.State == tracker.StateReplicate {
			n++
		}
	})
	return n
}

// ReportUnreachable tells raft that messages to id are not getting through.
func (c *Core) ReportUnreachable(id uint64) { c.rn.ReportUnreachable(id) }

// ReportSnapshot tells raft whether a snapshot sent to id arrived.
func (c *Core) ReportSnapshot(id uint64, ok bool) {
	st := raft.SnapshotFinish
	if !ok {
		st = raft.SnapshotFailure
	}
	c.rn.ReportSnapshot(id, st)
}

func (c *Core) dropLease() {
	c.leaseUntil = 0
	c.lastLeaseReq = 0
	clear(c.leaseReqs)
}

// HasReady reports whether Process has work to do.
func (c *Core) HasReady() bool { return c.rn.HasReady() }

// Applied is what one Process call committed for the application.
type Applied struct {
	// Entries are committed normal entries with data, in log order.
	Entries []raftpb.Entry
	// ConfChanged reports that the voters or learners changed.
	ConfChanged bool
	// Snapshot, when set, replaces the application state before Entries.
	Snapshot *raftpb.Snapshot
}

// Process handles one raft Ready: it persists the hard state, entries and
// snapshot durably and passes the outgoing messages to send, then applies
// committed configuration changes and returns the committed application
// entries. After an ErrStorage error the Core must be abandoned.
//
// # Send, then persist, on the leader
//
// A follower or candidate persists first and sends after: its messages are
// promises about its durable state (a MsgAppResp says "I hold these
// entries", a vote "I voted for you in this term"), and a promise that
// leaves before it is durable is forgotten by a crash, after the leader or
// the candidate counted it.
//
// A leader sends first and persists after (the raft thesis, 10.2.1; etcd's
// server does the same): its appends then reach the followers while its
// own disk writes, so a proposal costs the slower of the two writes plus a
// round trip instead of both writes in series. It is safe because:
//
//   - raft counts the leader's own copy of its entries only once they are
//     durable: its self-acknowledgement is stepped at Advance, after Save
//     returned. An entry commits when a quorum holds it durably, the
//     leader's copy counted or not; a leader that crashes before its write
//     lands restarts with a shorter log, which it is never asked to
//     acknowledge, and an election needs a quorum's votes, which compare
//     durable logs.
//   - the messages of this Ready never overtake the state of an earlier
//     one: Process persists a Ready completely before it returns, and raft
//     hands out the next Ready only after Advance.
//   - never before the Ready's term and vote are durable: a leader that
//     sent appends in a term it had not saved, and crashed before the
//     write, would restart in the old term, could be elected again in the
//     same term and append other entries at the same indexes and term as
//     the ones it sent: two logs that agree on (index, term) but not on
//     content. raft steps a candidate's own votes at Advance, so the Ready
//     that makes a peer leader follows the one that saved its term, even
//     for a single voter; sendsBeforeSave checks it anyway: a Ready whose
//     hard state changes the durable term or vote sends after Save,
//     whoever makes it. A change of the commit index alone does not count
//     (raft needs it nowhere durable).
//   - never with a snapshot to restore (a leader has none; a peer that does
//     is a follower anyway).
//   - lease rounds: a round's time is recorded when it starts (heartbeat,
//     which calls raft's ReadIndex), before its messages are in any Ready;
//     sending them earlier only makes the round trip shorter, the lease
//     still counts from before they left. A new leader's electedAt is taken
//     here before the Ready's messages leave, as before.
//   - a leader's Ready may also hold answers (a rejected vote, a pre-vote
//     answered without changing any state): they promise nothing about its
//     disk.
//
// The view the Loop publishes before a Ready's messages (a lease that
// shrank, a role that left Leader) is computed before the early send too.
func (c *Core) Process(send func([]raftpb.Message)) (Applied, error) {
	var out Applied
	if !c.rn.HasReady() {
		return out, nil
	}
	rd := c.rn.Ready()
	if rd.SoftState != nil {
		wasLeader := c.role == Leader
		c.setSoft(rd.SoftState)
		if c.role == Leader && !wasLeader {
			// Before this Ready's appends leave: a quorum that accepts
			// them heard from this leader after now.
			c.electedAt = c.cfg.Now()
		}
	}
	if c.cfg.Hooks.Committed != nil && c.role == Leader && len(rd.Entries) > 0 {
		c.noteAppended(rd.Entries)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		c.term = rd.HardState.Term
	}
	msgs := rd.Messages
	if c.notCandidate {
		msgs = dropVoteRequests(msgs)
	}
	if len(msgs) > 0 && c.sendsBeforeSave(rd) {
		send(msgs)
		msgs = nil
	}
	if !raft.IsEmptyHardState(rd.HardState) || len(rd.Entries) > 0 || !raft.IsEmptySnap(rd.Snapshot) {
		if err := c.store.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
			return out, fmt.Errorf("%w: %w", ErrStorage, err)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			c.durableTerm, c.durableVote = rd.HardState.Term, rd.HardState.Vote
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		c.setConf(rd.Snapshot.Metadata.ConfState)
		c.forgetPendingAdds(rd.Snapshot.Metadata.Index)
		c.confIndex = rd.Snapshot.Metadata.Index
		c.appliedIndex = rd.Snapshot.Metadata.Index
		c.snapshotIndex = rd.Snapshot.Metadata.Index
		out.ConfChanged = true
		out.Snapshot = &rd.Snapshot
	}
	// Members the appended changes add may talk to this peer from now on
	// (a leader whose addition this peer has not applied yet).
	c.notePendingAdds(rd.Entries)
	if len(msgs) > 0 {
		send(msgs)
	}
	for _, rs := range rd.ReadStates {
		c.onReadState(rs)
	}
	for _, e := range rd.CommittedEntries {
		switch e.Type {
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			cc, err := decodeConfChange(e)
			if err != nil {
				return out, fmt.Errorf("%w: conf change at %d: %w", ErrStorage, e.Index, err)
			}
			c.setConf(*c.rn.ApplyConfChange(cc))
			c.forgetPendingAdds(e.Index)
			c.confIndex = e.Index
			out.ConfChanged = true
			out.Entries = append(out.Entries, e)
		case raftpb.EntryNormal:
			if len(e.Data) > 0 {
				out.Entries = append(out.Entries, e)
			}
		}
		if c.electedAt != 0 && e.Term == c.term && c.role == Leader {
			// The first entry of this leader's term is committed: a
			// quorum accepted appends sent after electedAt, which resets
			// their election timers as a lease round would. The lease
			// starts without waiting for the first round's extra trip.
			if c.transferee == 0 && !c.notCandidate {
				c.leaseUntil = max(c.leaseUntil, c.electedAt+c.leaseDur)
			}
			c.electedAt = 0
		}
		c.appliedIndex = e.Index
	}
	// A pending change whose index is now applied either was applied above
	// or was overwritten by a new leader before it committed.
	c.forgetPendingAdds(c.appliedIndex)
	if len(c.appended) > 0 && len(rd.CommittedEntries) > 0 {
		c.noteApplied(rd.CommittedEntries[len(rd.CommittedEntries)-1].Index)
	}
	c.rn.Advance(rd)
	// A peer that just won an election (or dropped its lease) asks for a
	// lease at once; the later rounds fall due on ticks (tickDue), so a
	// Ready need not read the clock for them.
	if c.lastLeaseReq == 0 {
		c.heartbeat()
	}
	return out, nil
}

// sendsBeforeSave reports whether the messages of rd may leave before rd
// is persisted (see Process): only a leader's, and only when rd changes
// neither the durable term nor the durable vote, nor restores a snapshot.
func (c *Core) sendsBeforeSave(rd raft.Ready) bool {
	if c.role != Leader || !raft.IsEmptySnap(rd.Snapshot) {
		return false
	}
	hs := rd.HardState
	return raft.IsEmptyHardState(hs) || (hs.Term == c.durableTerm && hs.Vote == c.durableVote)
}

// dropVoteRequests returns msgs without vote and pre-vote requests (a
// peer that is not a candidate does not ask for votes; it still answers).
func dropVoteRequests(msgs []raftpb.Message) []raftpb.Message {
	var out []raftpb.Message
	for i, m := range msgs {
		if m.Type == raftpb.MsgVote || m.Type == raftpb.MsgPreVote {
			if out == nil {
				out = append(make([]raftpb.Message, 0, len(msgs)), msgs[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, m)
		}
	}
	if out == nil {
		return msgs
	}
	return out
}

// SetCandidate says whether this peer may seek leadership (see the package
// doc, "Candidacy"). A leader that stops being a candidate loses its lease
// at once; its owner should hand leadership over (BestTransferee).
func (c *Core) SetCandidate(ok bool) {
	if c.notCandidate == !ok {
		return
	}
	c.notCandidate = !ok
	if !ok {
		c.dropLease()
	}
}

// Candidate reports whether this peer may seek leadership (SetCandidate).
func (c *Core) Candidate() bool { return !c.notCandidate }

func (c *Core) onReadState(rs raft.ReadState) {
	if len(rs.RequestCtx) != 8 || c.role != Leader || c.transferee != 0 || c.notCandidate {
		return
	}
	seq := binary.BigEndian.Uint64(rs.RequestCtx)
	sent, ok := c.leaseReqs[seq]
	if !ok {
		return
	}
	delete(c.leaseReqs, seq)
	if until := sent + c.leaseDur; until > c.leaseUntil {
		c.leaseUntil = until
	}
	now := c.cfg.Now()
	rtt := now - sent
	c.noteRoundTrip(rtt, now)
	if c.cfg.Hooks.LeaseRound != nil {
		c.cfg.Hooks.LeaseRound(rtt)
	}
}

// Slow lease rounds: a warning when slowRoundsToWarn rounds in a row took
// a third of the election timeout or more, at most once per
// slowWarnEvery.
const (
	slowRoundsToWarn = 10
	slowWarnEvery    = time.Minute
)

// noteRoundTrip warns when the leader's lease rounds are slow for its
// timings. A round trip of a third of the election timeout leaves a vote
// request and its answer little room before a candidate's election times
// out, and a follower hears each round late: elections fail and
// leadership moves without a fault (the simulator elects no leader at all
// once round trips pass the election timeout). The cause is a slow
// network for these timings (election_timeout should be at least 3x the
// worst round trip between peers) or a machine too busy to run the
// peers; one slow round (a pause, a GC) is neither, hence the run.
func (c *Core) noteRoundTrip(rtt, now time.Duration) {
	if 3*rtt < c.cfg.ElectionTimeout {
		c.slowRounds = 0
		return
	}
	c.slowRounds++
	// The limiter reads the Core's clock as a time (it only subtracts).
	if c.slowRounds < slowRoundsToWarn || !c.slowWarn.Allow(time.Unix(0, int64(now))) {
		return
	}
	c.cfg.Logger.Warn("lease rounds are slow for these timings: a quorum's answers take a third of the election timeout or more, "+
		"so elections may fail and leadership move without a fault; across a slow network raise election_timeout "+
		"(and heartbeat_interval) to at least 3x the round trip between peers, on a busy machine give the peers CPU",
		"component", "raft", "round_trip", rtt, "election_timeout", c.cfg.ElectionTimeout, "slow_rounds_in_a_row", c.slowRounds)
}

// noteAppended records when the leader appended ents (for Hooks.Committed).
func (c *Core) noteAppended(ents []raftpb.Entry) {
	now := c.cfg.Now()
	for _, e := range ents {
		if len(c.appended) >= maxAppended {
			return
		}
		c.appended = append(c.appended, appendedEntry{index: e.Index, at: now})
	}
}

// noteApplied reports the appended entries up to index as committed and
// applied.
func (c *Core) noteApplied(index uint64) {
	now := c.cfg.Now()
	k := 0
	for k < len(c.appended) && c.appended[k].index <= index {
		c.cfg.Hooks.Committed(now - c.appended[k].at)
		k++
	}
	c.appended = c.appended[:copy(c.appended, c.appended[k:])]
}

func (c *Core) setSoft(s *raft.SoftState) {
	role := roleOf(s.RaftState)
	if role != Leader || c.role != Leader {
		// Any change of role starts the lease over: a new leader earns its
		// own; a deposed one has none.
		c.dropLease()
		c.transferee = 0
		c.electedAt = 0
		c.appended = c.appended[:0]
	}
	if role != c.role && c.cfg.Hooks.RoleChanged != nil {
		c.cfg.Hooks.RoleChanged(c.role, role)
	}
	if s.Lead != c.lead {
		c.leaderSeen = 0
	}
	c.role, c.lead = role, s.Lead
	if role == Leader {
		c.leaderSeen = 0
	}
}

func (c *Core) setConf(cs raftpb.ConfState) {
	c.confState = cs
	c.voters = sortedCopy(cs.Voters)
	c.learners = sortedCopy(cs.Learners)
}

func sortedCopy(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// ConfState returns the applied configuration.
func (c *Core) ConfState() raftpb.ConfState { return c.confState }

// LeaseRead returns the index a linearizable read must wait for: this
// peer's commit index, with ok only while it leads and holds its lease now
// (not during a transfer, not while it is no candidate). The lease implies
// that an entry of this term committed (see the package doc, "Leader
// lease"), so the commit index covers every write acknowledged anywhere
// before the read started; once the application has applied up to it, it
// may answer from its local state without a round trip. Not ok: ask the
// leader, or retry.
func (c *Core) LeaseRead() (index uint64, ok bool) {
	if c.role != Leader || c.transferee != 0 || c.notCandidate || c.cfg.Now() >= c.leaseUntil {
		return 0, false
	}
	return c.rn.BasicStatus().Commit, true
}

// AppliedIndex is the index of the last applied entry.
func (c *Core) AppliedIndex() uint64 { return c.appliedIndex }

// SnapshotWanted reports that raft needs to send a snapshot (to a member
// too far behind, such as a new one) and the stored one predates the
// applied configuration: the owner should call Snapshot. Raft sends the
// latest snapshot, and a peer drops a snapshot whose configuration does
// not list it, so the snapshot that founded the cluster cannot serve a
// member added later. Taking it only when needed spares every peer from
// encoding and storing the application state at every membership change.
func (c *Core) SnapshotWanted() bool { return c.snapWanted }

// Snapshot stores a snapshot of the state at the applied index, with the
// given application data, without discarding any log (see SnapshotWanted).
func (c *Core) Snapshot(data []byte) error {
	c.snapWanted = false
	if c.appliedIndex <= c.snapshotIndex {
		return nil
	}
	cs := c.confState
	if _, err := c.store.CreateSnapshot(c.appliedIndex, &cs, data); err != nil {
		return fmt.Errorf("%w: snapshot: %w", ErrStorage, err)
	}
	c.snapshotIndex = c.appliedIndex
	return nil
}

// Compact snapshots the state at the applied index with the given
// application data and discards the log before it, keeping keep entries so
// slightly lagging followers need no snapshot.
func (c *Core) Compact(data []byte, keep uint64) error {
	if c.appliedIndex <= c.snapshotIndex+keep {
		return nil
	}
	cs := c.confState
	if _, err := c.store.CreateSnapshot(c.appliedIndex, &cs, data); err != nil {
		return fmt.Errorf("%w: snapshot: %w", ErrStorage, err)
	}
	if err := c.store.Compact(c.appliedIndex - keep); err != nil {
		return fmt.Errorf("%w: compact: %w", ErrStorage, err)
	}
	c.snapshotIndex = c.appliedIndex
	return nil
}

// View returns the current state. Its slices are shared and read-only.
func (c *Core) View() View {
	v := View{
		ID:         c.cfg.ID,
		Role:       c.role,
		Term:       c.term,
		Lead:       c.lead,
		LeaseUntil: c.leaseUntil,
		LeaderSeen: c.leaderSeen,
		Voters:     c.voters,
		Learners:   c.learners,
	}
	if c.role == Leader {
		v.LeaderSeen = c.leaseUntil
		v.Transferring = c.transferee
	}
	return v
}

// raftLogger adapts slog to raft's Logger; raft's Info lines are chatty, so
// they go to Debug. Formatting is skipped when the level is off.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) log(level slog.Level, msg func() string) {
	if r.l.Enabled(context.Background(), level) {
		r.l.Log(context.Background(), level, msg(), "component", "raft")
	}
}

func (r raftLogger) Debug(v ...any) {
	r.log(slog.LevelDebug, func() string { return fmt.Sprint(v...) })
}
func (r raftLogger) Debugf(f string, v ...any) {
	r.log(slog.LevelDebug, func() string { return fmt.Sprintf(f, v...) })
}
func (r raftLogger) Info(v ...any) { r.log(slog.LevelDebug, func() string { return fmt.Sprint(v...) }) }
func (r raftLogger) Infof(f string, v ...any) {
	r.log(slog.LevelDebug, func() string { return fmt.Sprintf(f, v...) })
}
func (r raftLogger) Warning(v ...any) {
	r.log(slog.LevelWarn, func() string { return fmt.Sprint(v...) })
}
func (r raftLogger) Warningf(f string, v ...any) {
	r.log(slog.LevelWarn, func() string { return fmt.Sprintf(f, v...) })
}
func (r raftLogger) Error(v ...any) {
	r.log(slog.LevelError, func() string { return fmt.Sprint(v...) })
}
func (r raftLogger) Errorf(f string, v ...any) {
	r.log(slog.LevelError, func() string { return fmt.Sprintf(f, v...) })
}
func (r raftLogger) Fatal(v ...any)            { panic(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(f string, v ...any) { panic(fmt.Sprintf(f, v...)) }
func (r raftLogger) Panic(v ...any)            { panic(fmt.Sprint(v...)) }
func (r raftLogger) Panicf(f string, v ...any) { panic(fmt.Sprintf(f, v...)) }
