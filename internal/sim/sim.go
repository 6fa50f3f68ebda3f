package sim

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/storage"
)

// Default timings: the SDK's defaults. Options.TimeScale multiplies them.
const (
	DefaultHeartbeat       = 50 * time.Millisecond
	DefaultElectionTimeout = 150 * time.Millisecond
	DefaultTick            = 10 * time.Millisecond
	// DefaultClockDrift is the largest clock-rate error a peer gets (±4 %),
	// inside what the core's DriftMargin (ElectionTimeout/10) absorbs.
	DefaultClockDrift = 0.04
)

// Options configures a Cluster (NewCluster) or one random schedule (Run).
type Options struct {
	// Seed drives every random choice of the simulation.
	Seed uint64
	// Peers is the number of voters (default 3).
	Peers int
	// Spares is the number of further peers that start outside the
	// cluster (IDs Peers+1 on), waiting for a membership change to add
	// them (ProposeConfChange). Run adds some for FaultMembership.
	Spares int
	// TimeScale multiplies the default heartbeat (50 ms), election timeout
	// (150 ms) and tick (10 ms). Default 1.
	TimeScale float64
	// ClockDrift bounds each peer's clock rate to 1 ± ClockDrift (default
	// DefaultClockDrift); rates are drawn from the seed, often at the bounds.
	ClockDrift float64
	// ClockRates, when set, gives every peer's clock rate explicitly.
	ClockRates []float64
	// Network configures delays, loss and duplication. NewCluster uses it
	// as given (zero: 0.1-5 ms delays, nothing lost); Run draws its own
	// from the seed.
	Network Network
	// CompactEvery and CompactKeep mirror the node's log compaction (a
	// snapshot every CompactEvery applied entries, keeping CompactKeep).
	// Default 10000 and 1000, as in consensus.Node.
	CompactEvery, CompactKeep uint64

	// FaultTime is how long Run injects faults before it heals everything
	// and checks liveness (default 3 s of virtual time).
	FaultTime time.Duration
	// Faults selects the fault kinds Run injects (0: AllFaults).
	Faults FaultSet
	// LivenessBound is how long after the heal Run waits for an agreed
	// leader holding the lease (default 10 election timeouts).
	LivenessBound time.Duration

	// KVClients is how many key-value clients Run starts (0: drawn from
	// the seed, none in some schedules; negative: none). Each issues one
	// operation at a time during the fault phase (kv.go).
	KVClients int
	// KVKeys is how many keys the clients share (0: drawn from the seed
	// by Run, 4 otherwise).
	KVKeys int
	// KVApplyLag delays each batch of committed entries on its way to a
	// peer's KV store by up to this much (0: applied at once, as the root
	// package does). Run draws it from the seed.
	KVApplyLag time.Duration

	// TraceLen is how many recent events a violation report shows
	// (default 200).
	TraceLen int
	// Verbose, when set, receives every trace line as it happens.
	Verbose io.Writer
	// OnSend, when set, sees every message a peer sends (after its Save;
	// a leader's before it), at the virtual time it leaves.
	OnSend func(at time.Duration, m raftpb.Message)

	// ClockStopsInSuspend makes a peer's clock stand still while its
	// machine is suspended (Suspend), as CLOCK_MONOTONIC does: the clock
	// the node used before it read CLOCK_BOOTTIME, and the one it still
	// uses outside Linux (consensus.NewClock). By default a peer's clock
	// counts the suspend, as the node clock does on Linux.
	ClockStopsInSuspend bool

	// Deliberately broken behaviours, for tests that check the checker.
	// amnesia makes a restarted peer forget its vote; loseCommitted makes
	// a restarted peer's storage lose the record at the end of its log
	// (when committed); inflateLease lengthens every lease a peer
	// publishes; lowerTerm makes a peer publish, once, a term one below
	// the highest it published.
	amnesia       bool
	loseCommitted bool
	inflateLease  time.Duration
	lowerTerm     bool
	// kvLag, when set, is the apply lag of each peer's KV store (instead
	// of KVApplyLag's random ones), for scenarios.
	kvLag func(id uint64) time.Duration
	// linkDelay, when set, chooses a message's delay (ok false: the
	// Network's), for scenarios that need asymmetric links.
	linkDelay func(from, to uint64) (d time.Duration, ok bool)
	// endDelay, when set, adds to the delay of the end of a stream from
	// -> to (streams.go), for scenarios.
	endDelay func(from, to uint64) time.Duration
}

// Network describes the simulated network.
type Network struct {
	// MinDelay and MaxDelay bound a message's usual delay (uniform).
	// Defaults 100 µs and 5 ms.
	MinDelay, MaxDelay time.Duration
	// SpikeProb is the probability of a long delay, uniform in
	// (MaxDelay, SpikeMax]; SpikeMax defaults to 100 ms.
	SpikeProb float64
	SpikeMax  time.Duration
	// Loss and Dup are the probabilities that a message is lost, or
	// delivered twice (each copy with its own delay).
	Loss, Dup float64
}

func (n *Network) fill() {
	if n.MinDelay <= 0 {
		n.MinDelay = 100 * time.Microsecond
	}
	if n.MaxDelay < n.MinDelay {
		n.MaxDelay = max(5*time.Millisecond, n.MinDelay)
	}
	if n.SpikeMax <= n.MaxDelay {
		n.SpikeMax = max(100*time.Millisecond, n.MaxDelay)
	}
}

// LeaseSpan is one stretch of virtual time during which a peer's published
// view held the leader lease (what IsLeader() would have answered).
type LeaseSpan struct {
	Peer uint64
	Term uint64
	// From and Until are virtual times: the lease was published at From and
	// lasts until Until (exclusive), or until the peer published a view
	// without it or crashed.
	From, Until time.Duration
}

// Cluster is N simulated peers, each a real consensus.Core over a
// storage.Memory, on a virtual clock and a simulated network. It is driven
// by RunFor/RunUntil and the fault methods; it checks every invariant after
// every event. A Cluster must be used by the goroutine that created it.
type Cluster struct {
	opts   Options
	tm     timing
	rng    *rand.Rand // network and runtime choices
	now    time.Duration
	seq    uint64
	q      eventQueue
	peers  []*peer
	cut    [][]bool // cut[from][to]: messages from -> to are dropped
	cutGen uint64
	net    Network

	chk     checker
	tr      tracer
	stats   Result
	err     error
	spans   []LeaseSpan
	undo    func()
	faults  map[string]int
	healed  bool // Run: the fault phase is over
	fromRun bool // driven by Run
	// onSend is Run's own hook on every message sent (quiet restarts).
	onSend func(m raftpb.Message)
	// transferTo maps a transfer's target to the term it started in.
	transferTo map[uint64]uint64
	// removed: peers a removal was proposed for (never added again).
	removed map[uint64]bool
	// confApplied: the indexes of the applied membership changes.
	confApplied map[uint64]bool
	// kv: the KV clients' history and the reference (kv.go, kvcheck.go).
	kv kvState

	// The raft streams (streams.go): lastSent[from][to] is when the last
	// message from -> to in flight arrives; rejecting: a firewall rejects
	// the peer's traffic with resets (Reject); srng draws the streams'
	// delays; hostDown: the crash in progress takes the host down
	// (CrashHost); fo times a fail-over.
	lastSent  [][]time.Duration
	rejecting []bool
	srng      *rand.Rand
	hostDown  bool
	eofExtra  time.Duration // delays the end-of-files of the crash in progress
	fo        failoverWatch
}

type timing struct{ tick, hb, et time.Duration }

// NewCluster starts opts.Peers peers of a brand-new cluster at virtual time
// 0. Close it when done.
func NewCluster(opts Options) (*Cluster, error) {
	if opts.Peers == 0 {
		opts.Peers = 3
	}
	if opts.Peers < 1 || opts.Spares < 0 || opts.Peers+opts.Spares > 64 {
		return nil, fmt.Errorf("sim: Peers+Spares must be in [1, 64], got %d+%d", opts.Peers, opts.Spares)
	}
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	if opts.ClockDrift <= 0 {
		opts.ClockDrift = DefaultClockDrift
	}
	if opts.ClockRates != nil && len(opts.ClockRates) != opts.Peers+opts.Spares {
		return nil, fmt.Errorf("sim: %d ClockRates for %d peers", len(opts.ClockRates), opts.Peers+opts.Spares)
	}
	if opts.CompactEvery == 0 {
		opts.CompactEvery, opts.CompactKeep = consensus.DefaultCompactEvery, consensus.DefaultCompactKeep
	}
	if opts.TraceLen <= 0 {
		opts.TraceLen = 200
	}
	opts.Network.fill()
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * opts.TimeScale) }
	c := &Cluster{
		opts:   opts,
		tm:     timing{tick: scale(DefaultTick), hb: scale(DefaultHeartbeat), et: scale(DefaultElectionTimeout)},
		rng:    rand.New(rand.NewPCG(opts.Seed, 0x6e6574776f726b)),
		net:    opts.Network,
		faults: map[string]int{},

		transferTo:  map[uint64]uint64{},
		removed:     map[uint64]bool{},
		confApplied: map[uint64]bool{},
	}
	c.tr = newTracer(opts.TraceLen, opts.Verbose)
	c.chk = newChecker(c)
	c.kvInit()
	c.stats.Seed, c.stats.Peers = opts.Seed, opts.Peers
	c.stats.DeterministicElections = DeterministicElections()
	c.undo = registerStream(opts.Seed)
	total := opts.Peers + opts.Spares
	c.cut = make([][]bool, total)
	c.lastSent = make([][]time.Duration, total)
	for i := range c.cut {
		c.cut[i] = make([]bool, total)
		c.lastSent[i] = make([]time.Duration, total)
	}
	c.rejecting = make([]bool, total)
	c.srng = rand.New(rand.NewPCG(opts.Seed, 0x73747265616d))
	voters := make([]uint64, opts.Peers)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	rateRng := rand.New(rand.NewPCG(opts.Seed, 0x636c6f636b))
	for i := range total {
		rate := 1.0
		switch {
		case opts.ClockRates != nil:
			rate = opts.ClockRates[i]
		default:
			// Half the peers sit at a bound: the worst case is common.
			switch rateRng.IntN(4) {
			case 0:
				rate = 1 - opts.ClockDrift
			case 1:
				rate = 1 + opts.ClockDrift
			default:
				rate = 1 + opts.ClockDrift*(2*rateRng.Float64()-1)
			}
		}
		p := &peer{c: c, idx: i, id: uint64(i + 1), rate: rate, timerAt: -1}
		if i < opts.Peers {
			p.voters = voters
		}
		c.peers = append(c.peers, p)
	}
	for _, p := range c.peers {
		if err := p.start(storage.NewMemory()); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.afterEvent()
	return c, c.err
}

// Close releases the Cluster (its deterministic random stream).
func (c *Cluster) Close() {
	if c.undo != nil {
		c.undo()
		c.undo = nil
	}
}

// Now is the virtual time.
func (c *Cluster) Now() time.Duration { return c.now }

// ElectionTimeout is the peers' (scaled) election timeout.
func (c *Cluster) ElectionTimeout() time.Duration { return c.tm.et }

// Err returns the first invariant violation (a *Violation), or nil.
func (c *Cluster) Err() error { return c.err }

// Stats returns the counters so far.
func (c *Cluster) Stats() Result {
	r := c.stats
	r.VirtualTime = c.now
	r.Elections = len(c.chk.leaders)
	r.Committed = c.chk.ncommitted
	r.Faults = make(map[string]int, len(c.faults))
	for k, v := range c.faults {
		r.Faults[k] = v
	}
	r.Digest = c.tr.digest
	return r
}

// Trace returns the recent events, oldest first, one per line.
func (c *Cluster) Trace() string { return c.tr.String() }

// LeaseSpans returns every stretch of time some peer held the lease.
func (c *Cluster) LeaseSpans() []LeaseSpan { return slices.Clone(c.spans) }

func (c *Cluster) schedule(e event) {
	c.seq++
	e.seq = c.seq
	c.q.push(e)
}

func (c *Cluster) after(d time.Duration, fn func()) {
	c.schedule(event{at: c.now + d, kind: evFunc, fn: fn})
}

// RunFor processes events for d of virtual time. It returns the first
// invariant violation.
func (c *Cluster) RunFor(d time.Duration) error {
	end := c.now + d
	for c.err == nil && len(c.q) > 0 && c.q[0].at <= end {
		c.step()
	}
	if c.err == nil {
		c.now = max(c.now, end)
	}
	return c.err
}

// RunUntil processes events until cond holds (checked after every event)
// or limit of virtual time passes. It reports whether cond held, and the
// first invariant violation.
func (c *Cluster) RunUntil(limit time.Duration, cond func() bool) (bool, error) {
	end := c.now + limit
	if cond() {
		return true, c.err
	}
	for c.err == nil && len(c.q) > 0 && c.q[0].at <= end {
		c.step()
		if c.err == nil && cond() {
			return true, nil
		}
	}
	if c.err == nil {
		c.now = max(c.now, end)
	}
	return false, c.err
}

func (c *Cluster) step() {
	e := c.q.pop()
	c.now = e.at
	c.stats.Events++
	switch e.kind {
	case evTimer:
		p := c.peers[e.peer]
		if p.crashed || e.gen != p.timerGen {
			return
		}
		p.timerFired, p.timerAt = true, -1 // fired: none armed
		p.kick()
	case evDeliver:
		c.deliver(int(e.from), int(e.peer), e.data, false)
	case evWake:
		p := c.peers[e.peer]
		if p.crashed || e.gen != p.inc {
			return
		}
		p.wake()
	case evFunc:
		e.fn()
	}
	c.afterEvent()
}

// afterEvent runs the checks that depend on time or on every peer.
func (c *Cluster) afterEvent() {
	if c.err != nil {
		return
	}
	c.chk.lease()
	c.watchFailover()
}

func (c *Cluster) fail(invariant, format string, args ...any) {
	if c.err != nil {
		return
	}
	c.tr.note(c.now, -1, "VIOLATION "+invariant+": "+fmt.Sprintf(format, args...))
	c.err = &Violation{
		Schedule:  c.fromRun,
		Seed:      c.opts.Seed,
		Peers:     c.opts.Peers,
		Invariant: invariant,
		Detail:    fmt.Sprintf(format, args...),
		At:        c.now,
		Trace:     c.tr.String(),
	}
}

func (c *Cluster) countFault(kind string) {
	c.faults[kind]++
	c.stats.FaultsTotal++
}

func (c *Cluster) peer(id uint64) *peer {
	if id == 0 || id > uint64(len(c.peers)) {
		panic(fmt.Sprintf("sim: no peer %d", id))
	}
	return c.peers[id-1]
}

// ----- the network -----

func (c *Cluster) send(from *peer, m raftpb.Message) {
	c.stats.Messages++
	c.chk.sent(from, m)
	if c.onSend != nil {
		c.onSend(m)
	}
	if c.opts.OnSend != nil {
		c.opts.OnSend(c.now, m)
	}
	to := int(m.To) - 1
	if to < 0 || to >= len(c.peers) {
		c.stats.Dropped++
		return
	}
	if c.cut[from.idx][to] {
		c.stats.Dropped++
		return
	}
	if c.net.Loss > 0 && c.rng.Float64() < c.net.Loss {
		c.stats.Lost++
		return
	}
	data, err := m.Marshal()
	if err != nil {
		c.fail("sim", "marshal %v: %v", m.Type, err)
		return
	}
	copies := 1
	// Forwarded proposals (MsgProp) are duplicated too, though the raft
	// transport delivers a message at most once: raft appends every
	// MsgProp it gets, and the KV store applies a ReqID once (its dedupe
	// window; kvResult checks it).
	if c.net.Dup > 0 && c.rng.Float64() < c.net.Dup {
		copies = 2
		c.stats.Duplicated++
	}
	for range copies {
		d := c.delay()
		if c.opts.linkDelay != nil {
			if ld, ok := c.opts.linkDelay(from.id, m.To); ok {
				d = ld
			}
		}
		c.schedule(event{at: c.now + d, kind: evDeliver, peer: int32(to), from: int32(from.idx), data: data})
		c.lastSent[from.idx][to] = max(c.lastSent[from.idx][to], c.now+d)
	}
}

func (c *Cluster) delay() time.Duration {
	n := &c.net
	if n.SpikeProb > 0 && c.rng.Float64() < n.SpikeProb {
		c.stats.Spikes++
		return n.MaxDelay + 1 + time.Duration(c.rng.Int64N(int64(n.SpikeMax-n.MaxDelay)))
	}
	return n.MinDelay + time.Duration(c.rng.Int64N(int64(n.MaxDelay-n.MinDelay)+1))
}

func (c *Cluster) deliver(from, to int, data []byte, injected bool) {
	p := c.peers[to]
	if p.crashed || (!injected && c.cut[from][to]) {
		c.stats.Dropped++
		return
	}
	var m raftpb.Message
	if err := m.Unmarshal(data); err != nil {
		c.fail("sim", "unmarshal: %v", err)
		return
	}
	c.stats.Delivered++
	if len(p.inbox) >= consensus.DefaultInboxSize {
		c.stats.InboxDropped++ // as consensus.Node.Deliver does
		return
	}
	p.inbox = append(p.inbox, m)
	p.kick()
}

// ----- faults, usable from scenarios -----

// Partition splits the peers into groups that cannot reach each other
// (symmetric). Peers not named form one more group.
func (c *Cluster) Partition(groups ...[]uint64) {
	group := make([]int, len(c.peers))
	for i := range group {
		group[i] = -1
	}
	for g, ids := range groups {
		for _, id := range ids {
			group[c.peer(id).idx] = g
		}
	}
	for i := range c.peers {
		for j := range c.peers {
			c.cut[i][j] = group[i] != group[j]
		}
	}
	clear(c.rejecting) // the new cuts replace the firewall's rules (Reject sets its own after)
	c.cutGen++
	c.event(-1, fmt.Sprintf("partition %v", groups))
}

// Isolate cuts id off from every other peer in both directions.
func (c *Cluster) Isolate(id uint64) { c.Partition([]uint64{id}) }

// Cut drops every message from a peer in from to a peer in to (one-way).
// It adds to the current cuts.
func (c *Cluster) Cut(from, to []uint64) {
	for _, f := range from {
		for _, t := range to {
			if f != t {
				c.cut[c.peer(f).idx][c.peer(t).idx] = true
			}
		}
	}
	c.cutGen++
	c.event(-1, fmt.Sprintf("cut %v -> %v", from, to))
}

// Heal removes every partition and cut.
func (c *Cluster) Heal() {
	for i := range c.cut {
		clear(c.cut[i])
	}
	clear(c.rejecting)
	c.cutGen++
	c.event(-1, "heal")
}

// Crash kills peer id's process: its in-memory state, queued messages and
// timers are gone; what it Saved survives. Its host stays up: every peer's
// stream from it ends with an end-of-file, and a connection to its port is
// refused while it is down (streams.go): proof that it is gone.
// CrashHost takes the host down with it.
func (c *Cluster) Crash(id uint64) {
	if p := c.peer(id); !p.crashed {
		p.crash("crash")
		c.afterEvent()
	}
}

// CrashAfterNextSave kills peer id right after its next Save returns,
// before the messages of that Ready are sent (unless it leads: a leader
// sends before it saves).
func (c *Cluster) CrashAfterNextSave(id uint64) {
	if p := c.peer(id); !p.crashed {
		p.crashAfterSave = true
		c.event(p.idx, "armed: crash after next Save")
	}
}

// Restart starts a crashed peer again from what it had Saved.
func (c *Cluster) Restart(id uint64) error {
	p := c.peer(id)
	if !p.crashed {
		return nil
	}
	if err := p.restart(); err != nil {
		return err
	}
	c.afterEvent()
	return c.err
}

// Pause stops peer id (SIGSTOP): no ticks, nothing received or sent, its
// published view unchanged, its clock running.
func (c *Cluster) Pause(id uint64) {
	if p := c.peer(id); !p.crashed && !p.paused {
		p.paused = true
		c.event(p.idx, "pause (SIGSTOP)")
	}
}

// Suspend suspends peer id's machine (a system suspend, or its VM paused):
// as with Pause nothing runs, no ticks, nothing received or sent, its
// published view unchanged. Its clock counts the time suspended, as the
// node clock (CLOCK_BOOTTIME) does on Linux, so then Suspend is Pause;
// with Options.ClockStopsInSuspend it stands still instead, and after
// Resume it is behind by the time suspended. Resume wakes it.
func (c *Cluster) Suspend(id uint64) {
	if p := c.peer(id); !p.crashed && !p.paused {
		p.paused, p.suspended, p.suspendedAt = true, true, c.now
		if c.opts.ClockStopsInSuspend {
			c.event(p.idx, "suspend (its clock stops)")
		} else {
			c.event(p.idx, "suspend (its clock counts it)")
		}
	}
}

// Resume continues a paused peer (or wakes a suspended one) with its old
// state.
func (c *Cluster) Resume(id uint64) {
	if p := c.peer(id); !p.crashed && p.paused {
		p.paused = false
		what := "resume (SIGCONT)"
		if p.suspended {
			what = "wake from suspend"
			if c.opts.ClockStopsInSuspend {
				p.clockLost += c.now - p.suspendedAt
				what += fmt.Sprintf(" (its clock missed %v)", c.now-p.suspendedAt)
			}
			p.suspended = false
		}
		c.event(p.idx, what)
		if p.stallDone {
			p.finishStall()
		}
		p.kick()
		c.afterEvent()
	}
}

// StallFsync makes peer id's next Save take d: the peer's loop blocks (no
// ticks, messages queue, its published view goes stale) and the Ready's
// messages leave only when the Save returns (a leader's left before it).
func (c *Cluster) StallFsync(id uint64, d time.Duration) {
	if p := c.peer(id); !p.crashed {
		p.stallNext = d
		c.event(p.idx, fmt.Sprintf("armed: next fsync takes %v", d))
	}
}

// Do runs fn on peer id's loop, as consensus.Node.Do does: at once if the
// peer is idle, else when it gets to it.
func (c *Cluster) Do(id uint64, what string, fn func(*consensus.Core) error) {
	p := c.peer(id)
	if p.crashed {
		return
	}
	p.calls = append(p.calls, call{what: what, fn: fn})
	p.kick()
	c.afterEvent()
}

// Transfer asks peer from (normally the leader) to hand leadership to to.
func (c *Cluster) Transfer(from, to uint64) {
	if p := c.peer(from); !p.crashed {
		c.transferTo[to] = p.core.View().Term
	}
	c.Do(from, fmt.Sprintf("transfer leadership to %d", to), func(core *consensus.Core) error {
		core.TransferLeadership(to)
		return nil
	})
}

// Propose proposes a record on peer id.
func (c *Cluster) Propose(id uint64, data []byte) {
	c.Do(id, fmt.Sprintf("propose %x", data[:min(len(data), 4)]), func(core *consensus.Core) error {
		return core.Propose(data)
	})
}

// ProposeConfChange asks peer id (normally the leader) to propose a
// membership change.
func (c *Cluster) ProposeConfChange(id uint64, cc raftpb.ConfChange) {
	if cc.Type == raftpb.ConfChangeRemoveNode {
		c.removed[cc.NodeID] = true
	}
	c.Do(id, fmt.Sprintf("propose %v %d", cc.Type, cc.NodeID), func(core *consensus.Core) error {
		return core.ProposeConfChange(cc)
	})
}

// Inject delivers m to peer m.To now, as if it came from the network,
// whatever the cuts.
func (c *Cluster) Inject(m raftpb.Message) {
	data, err := m.Marshal()
	if err != nil {
		c.fail("sim", "marshal: %v", err)
		return
	}
	c.event(-1, fmt.Sprintf("inject %v %d->%d term %d", m.Type, m.From, m.To, m.Term))
	c.deliver(int(m.From)-1, int(m.To)-1, data, true)
	c.afterEvent()
}

// ----- observation -----

// IsLeader is what peer id's IsLeader() answers now: its last published
// view evaluated against its clock.
func (c *Cluster) IsLeader(id uint64) bool {
	p := c.peer(id)
	return !p.crashed && p.pub.IsLeaderAt(p.clock(c.now))
}

// LeaderOf is what peer id's Leader() names now (0, false: no leader).
func (c *Cluster) LeaderOf(id uint64) (uint64, bool) {
	p := c.peer(id)
	if p.crashed {
		return 0, false
	}
	return p.pub.LeaderAt(p.clock(c.now), c.tm.et)
}

// Leader returns the peer that holds the lease now, if any.
func (c *Cluster) Leader() (uint64, bool) {
	for _, p := range c.peers {
		if c.IsLeader(p.id) {
			return p.id, true
		}
	}
	return 0, false
}

// Agreed reports whether some peer holds the lease and every live member
// of its configuration (voters and learners) names it.
func (c *Cluster) Agreed() (uint64, bool) {
	l, ok := c.Leader()
	if !ok {
		return 0, false
	}
	lv := c.peer(l).pub
	for _, p := range c.peers {
		if p.crashed || (!slices.Contains(lv.Voters, p.id) && !slices.Contains(lv.Learners, p.id)) {
			continue
		}
		if id, ok := c.LeaderOf(p.id); !ok || id != l {
			return 0, false
		}
	}
	return l, true
}

// View returns peer id's last published view and its clock now.
func (c *Cluster) View(id uint64) (consensus.View, time.Duration) {
	p := c.peer(id)
	return p.pub, p.clock(c.now)
}

// CoreView returns peer id's current core view (what the loop would
// publish next), and false if the peer is down.
func (c *Cluster) CoreView(id uint64) (consensus.View, bool) {
	p := c.peer(id)
	if p.crashed {
		return consensus.View{}, false
	}
	return p.core.View(), true
}

// HardState returns what peer id has durably Saved.
func (c *Cluster) HardState(id uint64) raftpb.HardState {
	p := c.peer(id)
	hs, _, _ := p.mem.InitialState()
	return hs
}

// VirtualAt converts a time on peer id's clock (current incarnation) to
// virtual time.
func (c *Cluster) VirtualAt(id uint64, clock time.Duration) time.Duration {
	p := c.peer(id)
	return p.virtualAt(clock)
}

// coreLeader is the live peer whose core is Leader in the highest term.
func (c *Cluster) coreLeader() *peer {
	var best *peer
	var term uint64
	for _, p := range c.peers {
		if p.crashed {
			continue
		}
		if v := p.core.View(); v.Role == consensus.Leader && v.Term >= term {
			best, term = p, v.Term
		}
	}
	return best
}

func (c *Cluster) event(idx int, note string) {
	e := traceEntry{at: c.now, peer: int32(idx), note: note}
	if idx >= 0 {
		e.fill(c.peers[idx])
	}
	c.tr.add(e)
}

// clockAt maps virtual time to a peer clock: 1 s at the incarnation's start
// (consensus.Node's clock starts at 1 s), then rate × elapsed.
func clockAt(vt, start time.Duration, rate float64) time.Duration {
	return time.Second + time.Duration(float64(vt-start)*rate)
}

// virtualFor is how much virtual time a peer with this rate needs for its
// clock to advance by at least d.
func virtualFor(d time.Duration, rate float64) time.Duration {
	return time.Duration(math.Ceil(float64(d)/rate)) + 1
}
