package consensus

import (
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Loop defaults and bounds, shared by every owner of a Loop (Node and the
// simulator).
const (
	// DefaultCompactEvery is how many applied entries trigger a log
	// compaction, and DefaultCompactKeep how many entries stay behind for
	// slow followers.
	DefaultCompactEvery = 10000
	DefaultCompactKeep  = 1000
	// ReceiveBatch is how many received messages an owner steps (Receive)
	// at most before it flushes: one, then a drain of what queued.
	ReceiveBatch = 257
	// DefaultInboxSize bounds the received messages waiting for the loop.
	DefaultInboxSize = 4096
)

// LoopConfig configures a Loop. The callbacks run inside the Loop's
// methods, on the owner's goroutine; they must not call the Loop.
type LoopConfig struct {
	// Send hands messages to the network. It is called inside Flush: after
	// the Ready that produced them was persisted through the Core's
	// Storage, or just before, on a leader whose term and vote are durable
	// (see Core.Process). Required.
	Send func(msgs []raftpb.Message)
	// Publish receives every view the Loop publishes (see Flush), in order.
	// A view in which the lease shrank or the role left Leader is published
	// before the messages of the same Ready are sent: they may let another
	// peer lead (a MsgTimeoutNow, a granted vote). May be nil.
	Publish func(v View)
	// Apply is called after each processed Ready, with what it committed
	// (possibly nothing). A non-nil error stops Flush, which returns it;
	// the Loop must then be abandoned. May be nil.
	Apply func(a Applied) error
	// Refused is called for every received message Core.Step refused,
	// after it is counted. May be nil.
	Refused func(m raftpb.Message, reason Refusal, err error)
	// SnapshotData returns the application state to store in a snapshot.
	// May be nil.
	SnapshotData func() []byte
	// CompactEvery and CompactKeep: the log is compacted when
	// CompactEvery entries were applied since the last snapshot, keeping
	// CompactKeep. Defaults DefaultCompactEvery and DefaultCompactKeep.
	CompactEvery, CompactKeep uint64
}

// Loop is a Core's event loop without a goroutine, a timer or a clock of
// its own: its owner feeds it ticks (Tick, every TickInterval of the
// Core's clock), received messages (Receive), transport reports and calls,
// then asks it to Flush. Flush persists each Ready through the Core's
// Storage and sends its messages (a follower sends after the write, a
// leader before it: Core.Process), applies what it committed, takes the
// snapshots and compactions due, and publishes the view. Node runs a Loop
// on a goroutine; the simulator runs the same Loop on virtual time.
type Loop struct {
	cfg  LoopConfig
	core *Core
	last View // the last view published

	tick       time.Duration // the Core's TickInterval
	nextTick   time.Duration // the Core's clock time the next tick is due
	maxCatchUp int           // ticks Advance applies at most at once

	// promised is the wake NextWake last gave the owner; lateRun: the last
	// wake with ticks due was late too (see Advance).
	promised time.Duration
	lateRun  bool

	ticked, called bool
	snapReports    []snapReport

	refused                [NumRefusals]atomic.Uint64
	stalls                 atomic.Uint64
	goneTaken, goneIgnored atomic.Uint64
}

type snapReport struct {
	to uint64
	ok bool
}

// NewLoop creates a Loop around core.
func NewLoop(core *Core, cfg LoopConfig) *Loop {
	if cfg.CompactEvery == 0 {
		cfg.CompactEvery, cfg.CompactKeep = DefaultCompactEvery, DefaultCompactKeep
	}
	tick := core.cfg.TickInterval
	return &Loop{cfg: cfg, core: core, tick: tick,
		// Past two election timeouts raft has acted on every tick it
		// could; more would only spin after a long suspend.
		maxCatchUp: int(2*core.cfg.ElectionTimeout/tick) + 2}
}

// Core returns the Loop's Core, for reading between calls.
func (l *Loop) Core() *Core { return l.core }

// Last returns the last view the Loop published.
func (l *Loop) Last() View { return l.last }

// Start publishes the Core's view, before the first event, and starts
// the ticks: the first is due one TickInterval from now.
func (l *Loop) Start() {
	l.nextTick = l.core.cfg.Now() + l.tick
	l.publish(l.core.View())
}

// Advance applies the ticks due by now, a time of the Core's clock: one
// for every TickInterval since the previous one was due, none before it is
// due, so a peer never counts more ticks than its clock allows (the lease
// relies on it). The owner calls it when its timer for NextWake fires;
// Receive, ReceiveBatch (unless it drops the ticks), Call,
// ReportUnreachable and ReportGone call it first themselves. It applies at
// most two election timeouts' worth at once (raft has acted on all it
// could by then); the rest are skipped. The next Flush publishes the view
// if a tick was applied, changed or not (its holders re-evaluate it on
// their clock). It returns how many ticks it applied.
//
// After a stall it counts less: when Advance comes more than stallAfter
// ticks after the wake NextWake promised, the process (or its whole machine: a
// starved virtual machine stops for 150 ms at a time) could not run. It
// counts the ticks due up to the promised wake and drops the rest, as
// ReceiveBatch drops those a leader's message covers: the time it could
// not run is nobody's silence. A follower would otherwise take the stall
// for its leader's (whose messages may be waiting in the socket, not yet
// read) and campaign before reading them; a leader would run raft's quorum
// check over a stall in which it could read no answer, and step down.
// Dropping ticks is safe for the lease: a follower that counts fewer
// refuses votes for longer, never sooner, and a leader's lease is measured
// on its clock, not in ticks (its next lease round goes out at once).
// Only the first of a run of late wakes is taken for a stall: on a machine
// so loaded that every wake is late, the later ones count in full (a
// leader's message heard, or a wake on time, ends the run), so elections
// there are not slowed down wake after wake.
func (l *Loop) Advance(now time.Duration) int {
	until := now
	if l.nextTick <= now {
		late := l.promised != 0 && now-l.promised > stallAfter*l.tick
		if late && !l.lateRun {
			until = l.promised
		}
		l.lateRun = late
	}
	if until < now {
		l.stalls.Add(1)
		l.core.cfg.Logger.Debug("woke late: the process could not run; the ticks missed are not counted",
			"late", now-l.promised)
	}
	n := 0
	for l.nextTick <= until {
		if n == l.maxCatchUp {
			l.nextTick = until + l.tick
			break
		}
		l.core.tickAt(now)
		l.nextTick += l.tick
		n++
	}
	if n > 0 {
		l.ticked = true
	}
	if until < now {
		l.drop(now)
	}
	return n
}

// NextWake returns the time of the Core's clock by which the owner must
// call Advance, if no other event comes first: the first tick due at or
// after the moment a tick may make the Core act (Core.tickDue). The ticks
// before it would only be counted, and Advance counts them when it comes:
// an idle follower that hears its leader sleeps until a message arrives,
// an idle leader until its next heartbeat round, instead of waking every
// TickInterval.
func (l *Loop) NextWake() time.Duration {
	l.promised = l.nextWake()
	return l.promised
}

func (l *Loop) nextWake() time.Duration {
	due := l.core.tickDue()
	if due <= l.nextTick {
		return l.nextTick
	}
	k := (due - l.nextTick + l.tick - 1) / l.tick
	return l.nextTick + k*l.tick
}

// stallAfter is how many TickIntervals past its promised wake an Advance
// must come to be taken for a stall (see Advance): well above a loaded
// machine's usual timer lateness (a few milliseconds at p99).
const stallAfter = 2

// Stalls is the number of wakes Advance took for a stall (see Advance):
// more than stallAfter ticks after the promised one, and the first of a
// run of late wakes.
func (l *Loop) Stalls() uint64 { return l.stalls.Load() }

// catchUp applies the ticks due by now, before an event: a message must
// not reset raft's election count and then have ticks that were due before
// it counted after it (a follower would vote earlier than the lease
// allows).
func (l *Loop) catchUp() { l.Advance(l.core.cfg.Now()) }

// Receive steps a message from the network into the Core, after the ticks
// due (Advance). A refused message is counted (Refused) and reported to
// LoopConfig.Refused; other step errors (raft's own) are logged at debug
// level.
func (l *Loop) Receive(m raftpb.Message) {
	now := l.core.cfg.Now()
	l.Advance(now)
	l.receive(m, now)
}

// ReceiveBatch is Receive for messages already taken from the inbox, with
// one reading of the clock for all of them: the ticks due by then are
// applied first, then each message is stepped as of that reading
// (Core.StepAt). Every message arrived before the reading, so no tick that
// fell due before one of them is counted after it, and none is counted
// before it was due. It returns how many ticks it applied.
//
// Except on a follower when the batch holds a message from its leader in
// its term (Core.hearsLive: an append, heartbeat or snapshot): then the
// ticks due are dropped, not counted, and the next is due one TickInterval
// after the last one dropped. When the process could not run for a while
// (a machine starved of CPU wakes its timers hundreds of milliseconds
// late), those ticks would count the time the leader's messages spent
// waiting in the inbox as silence, and the follower would campaign before
// stepping the messages that say otherwise. Dropping ticks is always safe
// for the lease: a follower that counts fewer ticks refuses votes for
// longer, never sooner.
func (l *Loop) ReceiveBatch(msgs []raftpb.Message) int {
	now := l.core.cfg.Now()
	n := 0
	if l.core.hearsLive(msgs) {
		l.drop(now)
		l.lateRun = false // the leader is heard: a later late wake is a stall again
	} else {
		n = l.Advance(now)
	}
	for _, m := range msgs {
		l.receive(m, now)
	}
	return n
}

// drop skips the ticks due by now without applying them (see
// ReceiveBatch).
func (l *Loop) drop(now time.Duration) {
	if l.nextTick > now {
		return
	}
	l.nextTick += ((now-l.nextTick)/l.tick + 1) * l.tick
	l.ticked = true // the view is published, as after a tick
}

// receive steps m as of now (see ReceiveBatch) and counts a refusal.
func (l *Loop) receive(m raftpb.Message, now time.Duration) {
	err := l.core.StepAt(m, now)
	if err == nil {
		return
	}
	log := l.core.cfg.Logger
	r, ok := RefusalOf(err)
	if !ok {
		log.Debug("raft step", "type", m.Type.String(), "from", m.From, "err", err)
		return
	}
	l.refused[r].Add(1)
	if r == RefusedPanic {
		log.Warn("raft message refused", "reason", r.String(), "type", m.Type.String(), "from", m.From, "err", err)
	} else {
		log.Debug("raft message refused", "reason", r.String(), "type", m.Type.String(), "from", m.From, "err", err)
	}
	if l.cfg.Refused != nil {
		l.cfg.Refused(m, r, err)
	}
}

// Refused is the number of received messages Core.Step refused for reason
// r. It reads an atomic counter: it is safe for concurrent use.
func (l *Loop) Refused(r Refusal) uint64 {
	if r < 0 || r >= NumRefusals {
		return 0
	}
	return l.refused[r].Load()
}

// ReportUnreachable tells the Core that messages to id are not getting
// through (after the ticks due).
func (l *Loop) ReportUnreachable(id uint64) {
	l.catchUp()
	l.core.ReportUnreachable(id)
}

// ReportGone tells the Core, after the ticks due, that the owner has proof
// now that peer id's process is gone (Core.ReportGone): the inbound stream
// from id ended with a clean end-of-file and no goodbye, and a connection
// to id's port was then refused, after roundTrip. It is taken only about
// the leader this peer follows, in its term, and counted (GoneReports)
// either way.
func (l *Loop) ReportGone(id uint64, roundTrip time.Duration) {
	l.ReportGoneAt(id, l.core.cfg.Now(), roundTrip)
}

// ReportGoneAt is ReportGone for a proof obtained at time at of the Core's
// clock, handed over later (Node.PeerGone queues it): it is taken only if
// the Core already followed id, in its current term, at time at. The
// owner should step the messages it received before the report first.
func (l *Loop) ReportGoneAt(id uint64, at, roundTrip time.Duration) {
	l.catchUp()
	if l.core.reportGone(id, at, roundTrip) {
		l.goneTaken.Add(1)
	} else {
		l.goneIgnored.Add(1)
	}
}

// GoneReports is how many ReportGone reports the Core took as evidence
// about its leader, and how many it ignored (about another peer, or
// voided by a later message). It reads atomic counters: it is safe for
// concurrent use.
func (l *Loop) GoneReports() (taken, ignored uint64) {
	return l.goneTaken.Load(), l.goneIgnored.Load()
}

// ReportSnapshot queues the outcome of a snapshot sent to id (a MsgSnap
// handed to Send): written out (ok) or dropped. Flush hands it to raft.
// It may be called from inside LoopConfig.Send.
func (l *Loop) ReportSnapshot(id uint64, ok bool) {
	l.snapReports = append(l.snapReports, snapReport{to: id, ok: ok})
}

func (l *Loop) reportSnapshots() {
	for _, r := range l.snapReports {
		l.core.ReportSnapshot(r.to, r.ok)
	}
	l.snapReports = l.snapReports[:0]
}

// Call runs fn with exclusive access to the Core, after the ticks due,
// and returns its error; the next Flush publishes the view even if it did
// not change, so the caller sees the call's effect once Flush returns.
func (l *Loop) Call(fn func(*Core) error) error {
	l.catchUp()
	l.called = true
	return fn(l.core)
}

// Flush processes every Ready (persist, send, apply), takes the snapshot a
// new member needs (Core.SnapshotWanted) and the compaction due, and
// publishes the view when it changed or after a Tick or a Call. It returns
// the view, and an error when storage failed (an ErrStorage error: the
// Core cannot keep its promises, the peer must stop) or Apply failed.
func (l *Loop) Flush() (View, error) {
	l.reportSnapshots()
	for l.core.HasReady() {
		applied, err := l.core.Process(l.send)
		if err != nil {
			return l.core.View(), err
		}
		if l.cfg.Apply != nil {
			if err := l.cfg.Apply(applied); err != nil {
				return l.core.View(), err
			}
		}
		l.reportSnapshots()
	}
	if l.core.SnapshotWanted() {
		// A member needs a snapshot that lists it (see Core.SnapshotWanted).
		if err := l.core.Snapshot(l.snapshotData()); err != nil {
			return l.core.View(), err
		}
	}
	if l.core.AppliedIndex() >= l.core.snapshotIndex+l.cfg.CompactEvery {
		if err := l.core.Compact(l.snapshotData(), l.cfg.CompactKeep); err != nil {
			return l.core.View(), err
		}
	}
	v := l.core.View()
	if l.ticked || l.called || !v.Equal(l.last) {
		l.publish(v)
	}
	l.ticked, l.called = false, false
	return v, nil
}

func (l *Loop) snapshotData() []byte {
	if l.cfg.SnapshotData == nil {
		return nil
	}
	return l.cfg.SnapshotData()
}

func (l *Loop) publish(v View) {
	l.last = v
	if l.cfg.Publish != nil {
		l.cfg.Publish(v)
	}
}

// send runs inside Core.Process, after the core's view is updated (and,
// except on a leader, after the Ready's state is persisted). When that view
// lost the lease the last published one had (a transfer began, or this
// leader stepped down for a higher term), it is published first: the
// messages may let another peer lead at once (MsgTimeoutNow, a granted vote), and IsLeader must say no
// here before it can say yes there.
func (l *Loop) send(msgs []raftpb.Message) {
	if l.last.Role == Leader && l.last.LeaseUntil > 0 {
		if v := l.core.View(); v.Role != Leader || v.LeaseUntil < l.last.LeaseUntil {
			l.publish(v)
		}
	}
	l.cfg.Send(msgs)
}
