package sim

import (
	"errors"
	"fmt"
	"math"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/storage"
)

// peer is one simulated process running a consensus.Loop, as
// consensus.Node does: this file is the Node's select (its timer, inbox
// and calls) on virtual time, with the faults around it (a slow or
// crashing disk, a stopped process, a drifting clock). Its state between
// crashes is one incarnation.
type peer struct {
	c      *Cluster
	idx    int
	id     uint64
	rate   float64 // clock rate
	voters []uint64

	inc     uint64        // incarnation; bumps on crash and restart
	startVT time.Duration // virtual time the incarnation started
	crashed bool
	loop    *consensus.Loop
	core    *consensus.Core // loop.Core(), for reading
	mem     *storage.Memory // durable state
	pub     consensus.View  // last published view (what IsLeader reads)

	// Node.Run's select: timer, inbox, calls.
	timerGen   uint64
	timerFired bool
	timerAt    time.Duration // when the armed timer fires (virtual time); -1: none armed
	inbox      []raftpb.Message
	calls      []call
	gone       []goneReport // PeerGone reports queued for the loop

	paused bool
	// suspended: paused by Suspend, at suspendedAt. clockLost is the
	// virtual time this incarnation's clock did not count (suspends, with
	// Options.ClockStopsInSuspend).
	suspended   bool
	suspendedAt time.Duration
	clockLost   time.Duration
	busyUntil   time.Duration // stalled fsync: loop blocked until then
	callDelay   time.Duration // time spent blocked inside the current iteration
	held        []raftpb.Message

	stallNext      time.Duration // armed: the next Save takes this long
	crashAfterSave bool          // armed: crash right after the next Save
	crashNow       bool
	preStall       *storage.Memory // durable state before the in-flight stalled Save
	stallDone      bool            // the stalled Save returned while the peer was paused

	// application state: the records applied, in index order.
	app         []record
	lastApplied uint64

	maxPubTerm uint64 // highest published term, across incarnations
	lowered    bool   // Options.lowerTerm did its one lowering

	kv peerKV // the key-value store beside the records (kv.go)
}

// goneReport is a proof that peer id's process is gone, taken at time at
// of the receiving peer's clock after a connect that took roundTrip
// (consensus.Node.PeerGone's queue).
type goneReport struct {
	id            uint64
	at, roundTrip time.Duration
}

type call struct {
	what string
	fn   func(*consensus.Core) error
}

// record is one applied registry record.
type record struct {
	index, term uint64
	data        string
}

// simStore is the peer's storage: a storage.Memory whose Save can be made
// slow, or be followed by a crash.
type simStore struct {
	*storage.Memory
	p *peer
}

func (s simStore) Save(hs raftpb.HardState, ents []raftpb.Entry, snap raftpb.Snapshot) error {
	p := s.p
	if p.stallNext > 0 {
		if p.preStall == nil {
			p.preStall = s.Memory.Clone()
		}
		p.callDelay += p.stallNext
		p.c.countFault("fsync-stall")
		p.c.event(p.idx, fmt.Sprintf("fsync stalls for %v", p.stallNext))
		p.stallNext = 0
	}
	if err := s.Memory.Save(hs, ents, snap); err != nil {
		return err
	}
	if p.crashAfterSave {
		p.crashAfterSave = false
		p.crashNow = true
	}
	return nil
}

// clock is the peer's clock at virtual time vt: it stands still while the
// peer is suspended with Options.ClockStopsInSuspend.
func (p *peer) clock(vt time.Duration) time.Duration {
	if p.suspended && p.c.opts.ClockStopsInSuspend {
		vt = min(vt, p.suspendedAt)
	}
	return clockAt(vt-p.clockLost, p.startVT, p.rate)
}

// virtualAt converts a time on the peer's clock to virtual time (for a
// peer suspended with a stopped clock: if it woke now).
func (p *peer) virtualAt(clock time.Duration) time.Duration {
	lost := p.clockLost
	if p.suspended && p.c.opts.ClockStopsInSuspend {
		lost += max(0, p.c.now-p.suspendedAt)
	}
	return p.startVT + lost + time.Duration(float64(clock-time.Second)/p.rate)
}

// start runs a new incarnation over mem.
func (p *peer) start(mem *storage.Memory) error {
	c := p.c
	p.inc++
	p.startVT = c.now
	p.crashed = false
	p.suspended, p.clockLost = false, 0
	p.mem = mem
	core, err := consensus.New(consensus.Config{
		ID:                p.id,
		Voters:            p.voters,
		Storage:           simStore{Memory: mem, p: p},
		Now:               func() time.Duration { return p.clock(c.now + p.callDelay) },
		TickInterval:      c.tm.tick,
		HeartbeatInterval: c.tm.hb,
		ElectionTimeout:   c.tm.et,
		Vouch:             p.vouch,
		AcceptProposal:    acceptKV,
	})
	if err != nil {
		return fmt.Errorf("sim: peer %d: %w", p.id, err)
	}
	p.core = core
	p.loop = consensus.NewLoop(core, consensus.LoopConfig{
		Send:    p.send,
		Publish: p.onPublish,
		Apply:   p.onApply,
		SnapshotData: func() []byte {
			p.kvDrain() // the store catches up with the applied index first
			return encodeApp(p.app, p.kv.store.Snapshot())
		},
		CompactEvery: c.opts.CompactEvery,
		CompactKeep:  c.opts.CompactKeep,
	})
	snap, err := mem.Snapshot()
	if err != nil {
		return err
	}
	p.app = decodeApp(snap.Data)
	p.lastApplied = snap.Metadata.Index
	c.chk.restarted(p, snap)
	p.kvStart(snap)
	p.loop.Start() // the first view, before the first event
	p.scheduleTimer()
	return nil
}

func (p *peer) crash(why string) {
	c := p.c
	c.countFault(why)
	wasLeader := c.IsLeader(p.id)
	durable := p.mem
	if p.preStall != nil && c.rng.IntN(2) == 0 {
		// The crash interrupted a stalled fsync: the write never reached
		// the disk. Nothing it covered was sent.
		durable = p.preStall
		c.countFault("crash-lost-write")
		why += ", in-flight Save lost"
	}
	_ = p.mem.Close()
	p.mem = durable
	p.crashed = true
	p.loop, p.core = nil, nil
	p.inc++
	p.timerGen++
	p.timerFired, p.timerAt = false, -1
	p.inbox, p.calls, p.held, p.gone = nil, nil, nil, nil
	p.paused, p.suspended = false, false
	p.busyUntil, p.callDelay = 0, 0
	p.stallNext, p.crashAfterSave, p.crashNow = 0, false, false
	p.preStall, p.stallDone = nil, false
	p.app = nil
	p.kv.store, p.kv.queue, p.kv.reads = nil, nil, nil
	c.endSpan(p)
	c.event(p.idx, why)
	if !c.hostDown {
		// Its kernel closes its sockets.
		if wasLeader && !c.healed && c.calm(p) {
			c.fo = failoverWatch{pending: true, old: p.id, at: c.now}
		}
		c.endStreams(p, endEOF, c.eofExtra)
	}
}

func (p *peer) restart() error {
	durable := p.mem.Clone()
	if p.c.opts.amnesia {
		hs, _, _ := durable.InitialState()
		hs.Vote = 0
		if err := durable.Save(hs, nil, raftpb.Snapshot{}); err != nil {
			return err
		}
	}
	if p.c.opts.loseCommitted {
		if err := loseLast(durable); err != nil {
			return err
		}
	}
	p.c.countFault("restart")
	if err := p.start(durable); err != nil {
		return err
	}
	p.c.event(p.idx, "restart")
	return nil
}

// scheduleTimer arms the peer's timer for the Loop's NextWake, as Node.Run
// does after every Flush (an earlier timer is dropped).
func (p *peer) scheduleTimer() {
	wake := p.loop.NextWake()
	at := max(p.virtualAt(wake), p.c.now)
	for i := 0; i < 8 && !p.suspended && p.clock(at) < wake; i++ {
		at++ // virtualAt rounds down: the clock must have reached wake
	}
	if at == p.timerAt {
		return // armed for that already
	}
	p.timerAt = at
	p.timerGen++
	p.c.schedule(event{at: at, kind: evTimer, peer: int32(p.idx), gen: p.timerGen})
}

// kick runs loop iterations while the peer can run and has work.
func (p *peer) kick() {
	for !p.crashed && !p.paused && p.c.now >= p.busyUntil && p.c.err == nil &&
		(p.timerFired || len(p.inbox) > 0 || len(p.calls) > 0 || len(p.gone) > 0) {
		p.iterate()
	}
}

// errCrashed stops a Loop's Flush when the peer crashed right after a Save
// (Options.CrashAfterNextSave): nothing after that Save happens.
var errCrashed = errors.New("sim: crashed after Save")

// errViolation stops a Loop's Flush when a check failed.
var errViolation = errors.New("sim: invariant violated")

// iterate is one pass of consensus.Node.Run's select: one case (Go picks
// uniformly among the ready ones), then the Loop's Flush.
func (p *peer) iterate() {
	c := p.c
	var ready [4]int
	n := 0
	if p.timerFired {
		ready[n] = 0
		n++
	}
	if len(p.inbox) > 0 {
		ready[n] = 1
		n++
	}
	if len(p.calls) > 0 {
		ready[n] = 2
		n++
	}
	if len(p.gone) > 0 {
		ready[n] = 3
		n++
	}
	choice := ready[0]
	if n > 1 {
		choice = ready[c.rng.IntN(n)]
	}
	p.callDelay = 0
	te := traceEntry{at: c.now, peer: int32(p.idx)}
	if choice == 0 && len(p.inbox) > 0 {
		// Node.Run's timer case takes the messages that waited too.
		p.timerFired = false
		choice = 1
	}
	switch choice {
	case 0:
		p.timerFired = false
		ticks := p.loop.Advance(p.clock(c.now))
		c.stats.Ticks += uint64(ticks)
		te.kind, te.n = trTick, int32(ticks)
	case 1:
		// Stepped with one reading of the clock, after the ticks due
		// (or with them dropped: consensus.Loop.ReceiveBatch).
		k := min(len(p.inbox), consensus.ReceiveBatch)
		te.kind, te.mtype, te.from, te.mterm, te.n = trRecv, p.inbox[0].Type, p.inbox[0].From, p.inbox[0].Term, int32(k)
		c.stats.Ticks += uint64(p.loop.ReceiveBatch(p.inbox[:k]))
		p.inbox = p.inbox[k:]
		if len(p.inbox) == 0 {
			p.inbox = nil
		}
	case 2:
		// The calls waiting, in one Flush, as Node.Run takes them (after
		// the ticks due, as Loop.Call applies them).
		c.stats.Ticks += uint64(p.loop.Advance(p.clock(c.now)))
		k := min(len(p.calls), consensus.ReceiveBatch)
		te.kind = trCall
		for i, cl := range p.calls[:k] {
			if i > 0 {
				te.note += "; "
			}
			te.note += cl.what
			if err := p.loop.Call(cl.fn); err != nil {
				te.note += fmt.Sprintf(" (%v)", err)
			}
		}
		p.calls = p.calls[k:]
	case 3:
		// As Node.Run: the messages queued before the report first.
		for _, m := range p.inbox {
			p.loop.Receive(m)
		}
		p.inbox = nil
		g := p.gone[0]
		p.gone = p.gone[1:]
		taken, _ := p.loop.GoneReports()
		p.loop.ReportGoneAt(g.id, g.at, g.roundTrip)
		te.kind = trCall
		if now, _ := p.loop.GoneReports(); now > taken {
			te.note = fmt.Sprintf("proof that p%d is gone: evidence", g.id)
			c.stats.GoneTaken++
		} else {
			te.note = fmt.Sprintf("proof that p%d is gone: ignored", g.id)
			c.stats.GoneIgnored++
		}
	}
	v, err := p.loop.Flush()
	switch {
	case c.err != nil:
		return
	case errors.Is(err, errCrashed) || p.crashNow:
		te.fill(p)
		c.tr.add(te)
		p.crash("crash-after-save")
		return
	case err != nil:
		c.fail("storage", "peer %d: Flush: %v", p.id, err)
		return
	}
	c.chk.coreView(p, v)
	p.scheduleTimer()
	if p.callDelay > 0 {
		// The loop is blocked in Save: the view is published, and the
		// Ready's messages leave, only when it returns.
		p.busyUntil = c.now + p.callDelay
		c.schedule(event{at: p.busyUntil, kind: evWake, peer: int32(p.idx), gen: p.inc})
		te.note += fmt.Sprintf(" [blocked in fsync until %v]", fmtVT(p.busyUntil))
	}
	te.fill(p)
	c.tr.add(te)
}

// wake ends a stalled fsync: the write is durable; unless the process is
// stopped, the messages go out, the view is published and the loop catches up
// with what queued meanwhile.
func (p *peer) wake() {
	p.busyUntil = 0
	p.preStall = nil
	if p.paused {
		p.stallDone = true // finishStall runs on Resume
		return
	}
	p.finishStall()
}

func (p *peer) finishStall() {
	c := p.c
	p.stallDone = false
	held := p.held
	p.held = nil
	p.publish(p.loop.Last()) // before the messages, as the Loop does
	for _, m := range held {
		c.send(p, m)
	}
	c.event(p.idx, fmt.Sprintf("fsync returns; view published, %d held messages sent", len(held)))
	p.kick()
}

// onPublish is the Loop's Publish: a view published while the loop is
// blocked in a stalled Save is seen when the Save returns (finishStall
// publishes the Loop's last); after a crash, never.
func (p *peer) onPublish(v consensus.View) {
	if p.callDelay > 0 || p.crashNow {
		return
	}
	p.publish(v)
}

// onApply is the Loop's Apply.
func (p *peer) onApply(a consensus.Applied) error {
	p.apply(a) // committed is a fact, even if this peer dies now
	switch {
	case p.crashNow:
		return errCrashed
	case p.c.err != nil:
		return errViolation
	}
	p.kvApply(a) // the process applies it, unless it died first
	if p.c.err != nil {
		return errViolation
	}
	return nil
}

// send is the Loop's Send: the messages of a persisted Ready (a leader's
// just before the Save: consensus.Core.Process). The simulated transport
// writes out every snapshot it is given.
// vouch is the peer's consensus.Config.Vouch: the simulator's peers are
// the cluster's, as a transport that authenticates them with certificates
// of the cluster's CA knows them; an outsider's ID (Inject) is not one.
func (p *peer) vouch(id uint64) bool {
	if id == 0 || id > uint64(len(p.c.peers)) {
		return false
	}
	p.c.stats.Vouched++
	return true
}

func (p *peer) send(msgs []raftpb.Message) {
	for _, m := range msgs {
		if m.Type == raftpb.MsgSnap && !p.crashNow {
			p.loop.ReportSnapshot(m.To, true)
		}
		switch {
		case p.crashNow:
			p.c.stats.Dropped++ // the crash comes before the send
		case p.callDelay > 0:
			p.held = append(p.held, m)
		default:
			p.c.send(p, m)
		}
	}
}

func (p *peer) apply(a consensus.Applied) {
	c := p.c
	if a.ConfChanged {
		p.confApplied(a)
	}
	if a.Snapshot != nil {
		c.stats.SnapshotsApplied++
		p.app = decodeApp(a.Snapshot.Data)
		p.lastApplied = a.Snapshot.Metadata.Index
		c.chk.snapshotApplied(p, a.Snapshot)
	}
	for _, e := range a.Entries {
		c.chk.applied(p, e)
		if e.Type == raftpb.EntryNormal {
			p.app = append(p.app, record{index: e.Index, term: e.Term, data: string(e.Data)})
		}
		p.lastApplied = e.Index
	}
}

func (p *peer) publish(v consensus.View) {
	c := p.c
	if c.opts.inflateLease > 0 && v.LeaseUntil > 0 {
		v.LeaseUntil += c.opts.inflateLease
	}
	if c.opts.lowerTerm && !p.lowered && p.maxPubTerm >= 2 && v.Term == p.maxPubTerm {
		p.lowered = true
		v.Term--
	}
	c.chk.published(p, v)
	p.pub = v
	c.trackSpan(p)
}

// trackSpan keeps LeaseSpans up to date after p published a view.
func (c *Cluster) trackSpan(p *peer) {
	v := p.pub
	now := p.clock(c.now)
	last := -1
	for i := len(c.spans) - 1; i >= 0; i-- {
		if c.spans[i].Peer == p.id {
			last = i
			break
		}
	}
	if !v.IsLeaderAt(now) {
		if last >= 0 && c.spans[last].Until > c.now {
			c.spans[last].Until = c.now
		}
		return
	}
	until := p.virtualAt(v.LeaseUntil)
	if last >= 0 && c.spans[last].Term == v.Term && c.spans[last].Until >= c.now {
		c.spans[last].Until = max(c.spans[last].Until, until)
		return
	}
	c.spans = append(c.spans, LeaseSpan{Peer: p.id, Term: v.Term, From: c.now, Until: until})
}

func (c *Cluster) endSpan(p *peer) {
	for i := len(c.spans) - 1; i >= 0; i-- {
		if c.spans[i].Peer == p.id {
			if c.spans[i].Until > c.now {
				c.spans[i].Until = c.now
			}
			return
		}
	}
}

// loseLast empties the record at the end of mem's log if it is committed
// (Options.loseCommitted: a storage that loses a committed record).
func loseLast(mem *storage.Memory) error {
	hs, _, err := mem.InitialState()
	if err != nil {
		return err
	}
	last, err := mem.LastIndex()
	if err != nil || last > hs.Commit {
		return err
	}
	ents, err := mem.Entries(last, last+1, math.MaxUint64)
	if err != nil || len(ents) != 1 || len(ents[0].Data) == 0 {
		return err
	}
	e := ents[0]
	e.Data = nil
	return mem.Save(raftpb.HardState{}, []raftpb.Entry{e}, raftpb.Snapshot{})
}
