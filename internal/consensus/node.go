package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Sender delivers raft messages to other peers. Send must not block: a
// message that cannot be queued is dropped (raft retransmits). For every
// MsgSnap it is given, the Sender (or its owner) must call
// Node.ReportSnapshot exactly once, when the snapshot was written out or
// dropped: until then raft sends that follower nothing but heartbeats.
type Sender interface {
	Send(msgs []raftpb.Message)
}

// NodeConfig configures a Node.
type NodeConfig struct {
	// Core configures the state machine. When Core.Now is nil the Node
	// uses NewClock's clock, which counts suspend on Linux.
	Core Config
	// Transport sends this peer's messages.
	Transport Sender
	// OnView is called on the Node's goroutine after every tick and every
	// change of the view, with the clock time it was taken at. A view in
	// which the lease shrank or the role left Leader is published before
	// the messages of the same Ready are handed to the Transport (they may
	// let another peer lead: a MsgTimeoutNow, a granted vote). It must not
	// block. It may be nil.
	OnView func(v View, now time.Duration)
	// OnRefused is called on the Node's goroutine for every received
	// message Core.Step refused (after it is counted), with the refusal
	// error (see RefusalOf). It must not block. It may be nil.
	OnRefused func(m raftpb.Message, reason Refusal, err error)
	// OnApply is called on the Node's goroutine with newly committed
	// entries. It may be nil.
	OnApply func(Applied)
	// SnapshotData returns the application state to store in a snapshot
	// when the log is compacted. It may be nil.
	SnapshotData func() []byte
	// InboxSize bounds received messages waiting for the core. Default 4096.
	InboxSize int
}

// Node runs a Core on one goroutine: wall time becomes ticks here and
// nowhere else, received messages are stepped in, and every Ready is
// persisted, sent and applied.
type Node struct {
	cfg     NodeConfig
	core    *Core
	inbox   chan raftpb.Message
	unreach chan uint64
	calls   chan call
	done    chan struct{}
	stopped chan struct{}

	initial View
	last    View // the last view published (Run's goroutine only)

	// Snapshot outcomes reported by the transport, waiting for the loop.
	snapMu      sync.Mutex
	snapReports []snapReport
	snapReady   chan struct{} // capacity 1: snapReports is not empty

	dropped atomic.Uint64
	refused [NumRefusals]atomic.Uint64
}

type snapReport struct {
	to uint64
	ok bool
}

type call struct {
	fn  func(*Core) error
	res chan error
}

// ErrStopped is returned by calls on a Node that is not running.
var ErrStopped = errors.New("consensus: node stopped")

// compactEvery is how many applied entries trigger a log compaction, and
// compactKeep how many entries stay behind for slow followers.
const (
	compactEvery = 10000
	compactKeep  = 1000
)

// NewNode creates a Node and its Core. Call Run to start it.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.Transport == nil {
		return nil, fmt.Errorf("%w: Transport is required", ErrBadConfig)
	}
	if cfg.InboxSize <= 0 {
		cfg.InboxSize = 4096
	}
	n := &Node{
		cfg:       cfg,
		inbox:     make(chan raftpb.Message, cfg.InboxSize),
		unreach:   make(chan uint64, 64),
		calls:     make(chan call),
		snapReady: make(chan struct{}, 1),
		done:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	if cfg.Core.Now == nil {
		cfg.Core.Now = NewClock()
	}
	core, err := New(cfg.Core)
	if err != nil {
		return nil, err
	}
	n.core = core
	n.initial = core.View()
	n.cfg.Core = core.cfg
	return n, nil
}

// Now reads the Node's clock (the one its views are in: Core.Now). It takes
// no lock and does not allocate; NewClock's clock is a system call on
// Linux.
func (n *Node) Now() time.Duration { return n.cfg.Core.Now() }

// InitialView is the core's view when the Node was created (its durable
// term and configuration), for publishing before Run has started.
func (n *Node) InitialView() View { return n.initial }

// Config returns the effective core configuration (defaults filled in).
func (n *Node) Config() Config { return n.cfg.Core }

// LeaseDuration is how long a lease lasts after its round was sent.
func (n *Node) LeaseDuration() time.Duration { return n.core.LeaseDuration() }

// Deliver queues a received message for the core. It never blocks for
// long: when the inbox is full the message is dropped and counted.
func (n *Node) Deliver(m raftpb.Message) {
	select {
	case n.inbox <- m:
	case <-n.done:
	default:
		n.dropped.Add(1)
	}
}

// Dropped is the number of received messages dropped because the inbox
// was full.
func (n *Node) Dropped() uint64 { return n.dropped.Load() }

// Queued is the number of received messages waiting in the inbox.
func (n *Node) Queued() int { return len(n.inbox) }

// Refused is the number of received messages Core.Step refused for reason
// r. It reads an atomic counter and does not allocate.
func (n *Node) Refused(r Refusal) uint64 {
	if r < 0 || r >= NumRefusals {
		return 0
	}
	return n.refused[r].Load()
}

// ReportSnapshot tells raft whether the snapshot the Node sent to peer id
// (a MsgSnap handed to the Sender) was written out (ok) or dropped. It
// never blocks and is safe for concurrent use; reports are never lost
// while the Node runs.
func (n *Node) ReportSnapshot(id uint64, ok bool) {
	n.snapMu.Lock()
	n.snapReports = append(n.snapReports, snapReport{to: id, ok: ok})
	n.snapMu.Unlock()
	select {
	case n.snapReady <- struct{}{}:
	default:
	}
}

// reportSnapshots hands the queued snapshot outcomes to the core.
func (n *Node) reportSnapshots() {
	n.snapMu.Lock()
	reports := n.snapReports
	n.snapReports = nil
	n.snapMu.Unlock()
	for _, r := range reports {
		n.core.ReportSnapshot(r.to, r.ok)
	}
}

// ReportUnreachable tells the core that messages to id are not getting
// through. It never blocks.
func (n *Node) ReportUnreachable(id uint64) {
	select {
	case n.unreach <- id:
	default:
	}
}

// Do runs fn on the Node's goroutine with exclusive access to the Core and
// returns its error, ErrStopped when the Node is not running, or ctx's error.
func (n *Node) Do(ctx context.Context, fn func(*Core) error) error {
	c := call{fn: fn, res: make(chan error, 1)}
	select {
	case n.calls <- c:
	case <-n.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.res:
		return err
	case <-n.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run drives the Node until ctx is done (returning nil) or storage fails
// (returning an ErrStorage error: the peer must stop, it cannot keep its
// promises without a disk). Run must be called once.
func (n *Node) Run(ctx context.Context) error {
	defer close(n.stopped)
	defer close(n.done)
	tick := n.cfg.Core.TickInterval
	timer := time.NewTimer(tick)
	defer timer.Stop()
	n.publish(n.core.View())
	for {
		ticked := false
		// A Do call is answered after its effect is processed and
		// published, so its caller sees the new view at once.
		var reply chan error
		var replyErr error
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			// Reset after the tick, not on a fixed grid: ticks are spaced
			// at least TickInterval apart, which the lease relies on.
			n.core.Tick()
			timer.Reset(tick)
			ticked = true
		case m := <-n.inbox:
			n.step(m)
		drain:
			for range 256 {
				select {
				case m := <-n.inbox:
					n.step(m)
				default:
					break drain
				}
			}
		case id := <-n.unreach:
			n.core.ReportUnreachable(id)
		case <-n.snapReady:
			n.reportSnapshots()
		case c := <-n.calls:
			reply, replyErr = c.res, c.fn(n.core)
		}
		if err := n.process(); err != nil {
			return err
		}
		v := n.core.View()
		if ticked || reply != nil || !v.Equal(n.last) {
			n.publish(v)
		}
		if reply != nil {
			reply <- replyErr
		}
	}
}

func (n *Node) step(m raftpb.Message) {
	err := n.core.Step(m)
	if err == nil {
		return
	}
	r, ok := RefusalOf(err)
	if !ok {
		n.cfg.Core.Logger.Debug("raft step", "type", m.Type.String(), "from", m.From, "err", err)
		return
	}
	n.refused[r].Add(1)
	if r == RefusedPanic {
		n.cfg.Core.Logger.Warn("raft message refused", "reason", r.String(), "type", m.Type.String(), "from", m.From, "err", err)
	} else {
		n.cfg.Core.Logger.Debug("raft message refused", "reason", r.String(), "type", m.Type.String(), "from", m.From, "err", err)
	}
	if n.cfg.OnRefused != nil {
		n.cfg.OnRefused(m, r, err)
	}
}

// publish hands v to OnView and remembers it as the last published view.
func (n *Node) publish(v View) {
	n.last = v
	if n.cfg.OnView != nil {
		n.cfg.OnView(v, n.Now())
	}
}

func (n *Node) process() error {
	for n.core.HasReady() {
		applied, err := n.core.Process(n.send)
		if err != nil {
			n.cfg.Core.Logger.Error("storage failure: stopping this peer", "err", err)
			return err
		}
		if n.cfg.OnApply != nil && (len(applied.Entries) > 0 || applied.ConfChanged || applied.Snapshot != nil) {
			n.cfg.OnApply(applied)
		}
	}
	if n.core.SnapshotWanted() {
		// A member needs a snapshot that lists it (see Core.SnapshotWanted).
		if err := n.core.Snapshot(n.snapshotData()); err != nil {
			n.cfg.Core.Logger.Error("storage failure: stopping this peer", "err", err)
			return err
		}
	}
	if n.core.AppliedIndex() >= n.core.snapshotIndex+compactEvery {
		if err := n.core.Compact(n.snapshotData(), compactKeep); err != nil {
			n.cfg.Core.Logger.Error("storage failure: stopping this peer", "err", err)
			return err
		}
	}
	return nil
}

func (n *Node) snapshotData() []byte {
	if n.cfg.SnapshotData == nil {
		return nil
	}
	return n.cfg.SnapshotData()
}

// send runs inside Core.Process, after the Ready's state is persisted and
// the core's view updated. When that view lost the lease the last
// published one had (a transfer began, or this leader stepped down for a
// higher term), it is published first: the messages may let another peer
// lead at once (MsgTimeoutNow, a granted vote), and IsLeader must say no
// here before it can say yes there.
func (n *Node) send(msgs []raftpb.Message) {
	if n.last.Role == Leader && n.last.LeaseUntil > 0 {
		if v := n.core.View(); v.Role != Leader || v.LeaseUntil < n.last.LeaseUntil {
			n.publish(v)
		}
	}
	n.cfg.Transport.Send(msgs)
}
