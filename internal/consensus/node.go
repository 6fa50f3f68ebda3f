package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/fifo"
	"github.com/qcluster/qcluster/internal/quiettimer"
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

// Node runs a Loop on one goroutine: wall time becomes ticks here and
// nowhere else, received messages queue in an inbox, and the Loop is
// flushed after every event.
type Node struct {
	cfg     NodeConfig
	loop    *Loop
	core    *Core
	inbox   *fifo.Queue[raftpb.Message]
	unreach chan uint64
	gone    chan goneReport
	calls   chan call
	done    chan struct{}
	stopped chan struct{}

	initial View

	// Snapshot outcomes reported by the transport, waiting for the loop.
	snapMu      sync.Mutex
	snapReports []snapReport
	snapReady   chan struct{} // capacity 1: snapReports is not empty

	dropped atomic.Uint64
}

// goneReport is a PeerGone report: the peer, when it was made, and the
// refused connect's round trip.
type goneReport struct {
	id            uint64
	at, roundTrip time.Duration
}

type call struct {
	fn  func(*Core) error
	res chan error
}

// ErrStopped is returned by calls on a Node that is not running.
var ErrStopped = errors.New("consensus: node stopped")

// NewNode creates a Node and its Core. Call Run to start it.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.Transport == nil {
		return nil, fmt.Errorf("%w: Transport is required", ErrBadConfig)
	}
	if cfg.InboxSize <= 0 {
		cfg.InboxSize = DefaultInboxSize
	}
	n := &Node{
		cfg:       cfg,
		inbox:     fifo.New[raftpb.Message](cfg.InboxSize),
		unreach:   make(chan uint64, 64),
		gone:      make(chan goneReport, 64),
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
	n.loop = NewLoop(core, LoopConfig{
		Send:         cfg.Transport.Send,
		Publish:      n.publish,
		Apply:        n.apply,
		Refused:      cfg.OnRefused,
		SnapshotData: cfg.SnapshotData,
	})
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
	case <-n.done:
		return
	default:
	}
	if !n.inbox.Push(m) {
		n.dropped.Add(1)
	}
}

// Dropped is the number of received messages dropped because the inbox
// was full.
func (n *Node) Dropped() uint64 { return n.dropped.Load() }

// Queued is the number of received messages waiting in the inbox.
func (n *Node) Queued() int { return n.inbox.Len() }

// Refused is the number of received messages Core.Step refused for reason
// r. It reads an atomic counter and does not allocate.
func (n *Node) Refused(r Refusal) uint64 {
	return n.loop.Refused(r)
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

// reportSnapshots hands the queued snapshot outcomes to the loop.
func (n *Node) reportSnapshots() {
	n.snapMu.Lock()
	reports := n.snapReports
	n.snapReports = nil
	n.snapMu.Unlock()
	for _, r := range reports {
		n.loop.ReportSnapshot(r.to, r.ok)
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

// PeerGone tells the core that its owner has proof now that peer id's
// process is gone: the inbound stream from id ended with a clean
// end-of-file and no goodbye frame, and a connection to id's port was then
// refused (see the package doc, "Fail-over on proof that the leader is
// gone"), after roundTrip (how long the connect took; 0 if unknown). When
// id is the leader this peer follows, the survivors elect a new one
// without waiting for an election timeout. It never blocks and is
// safe for concurrent use; a report the queue has no room for is dropped
// (it is only an optimisation). The report is stamped with the time of the
// call, so call it at once when the connection is refused: it is taken
// only if this peer already followed id, in its current term, then. The
// messages received before it are stepped before it.
func (n *Node) PeerGone(id uint64, roundTrip time.Duration) {
	select {
	case n.gone <- goneReport{id: id, at: n.Now(), roundTrip: roundTrip}:
	default:
	}
}

// GoneReports is how many PeerGone reports the core took as evidence
// about its leader, and how many it ignored (Loop.GoneReports).
func (n *Node) GoneReports() (taken, ignored uint64) { return n.loop.GoneReports() }

// Stalls is how many late wakes the core took for a stall of its process
// (Loop.Stalls, Loop.Advance).
func (n *Node) Stalls() uint64 { return n.loop.Stalls() }

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
	n.loop.Start()
	// The loop's timer is a quiettimer: a follower's wake moves later with
	// every message from its leader, and a time.Timer reset later still
	// wakes the process at the time it was set for before.
	timer := quiettimer.New()
	defer timer.Close()
	// armed is the wake the timer is set for (a NextWake), or 0 once it
	// fired: it is set again only when the wake moves.
	armed := n.loop.NextWake()
	timer.Reset(armed - n.Now())
	type reply struct {
		res chan error
		err error
	}
	var replies []reply
	batch := make([]raftpb.Message, 0, ReceiveBatch)
	for {
		// A Do call is answered after its effect is flushed and
		// published, so its caller sees the new view at once.
		replies = replies[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
			armed = 0
			// Messages that waited in the inbox while the timer fell due
			// (a process that could not run) are stepped with the ticks:
			// ReceiveBatch decides whether those count.
			if batch = n.takeInbox(batch[:0]); len(batch) > 0 {
				n.loop.ReceiveBatch(batch)
				clear(batch)
			} else {
				n.loop.Advance(n.Now())
			}
		case <-n.inbox.Ready():
			// The messages waiting are taken first and stepped with one
			// reading of the clock, taken after all of them arrived
			// (after the ticks due: every Loop event).
			if batch = n.takeInbox(batch[:0]); len(batch) == 0 {
				continue // taken already, with the ticks of a timer
			}
			n.loop.ReceiveBatch(batch)
			clear(batch) // do not keep the messages' memory alive
		case id := <-n.unreach:
			n.loop.ReportUnreachable(id)
		case r := <-n.gone:
			// The transport delivered everything the gone peer sent
			// before it saw the end of its stream: step it first, so
			// that the report is not about a leader older than the
			// messages still queued.
			for range n.inbox.Len() {
				m, ok := n.inbox.Pop()
				if !ok {
					break
				}
				n.loop.Receive(m)
			}
			n.loop.ReportGoneAt(r.id, r.at, r.roundTrip)
		case <-n.snapReady:
			n.reportSnapshots()
		case c := <-n.calls:
			// The calls waiting go in one Flush: proposals from many
			// callers share one Ready, one fsync and one round of
			// messages.
			replies = append(replies, reply{c.res, n.loop.Call(c.fn)})
		calls:
			for range ReceiveBatch - 1 {
				select {
				case c := <-n.calls:
					replies = append(replies, reply{c.res, n.loop.Call(c.fn)})
				default:
					break calls
				}
			}
		}
		if _, err := n.loop.Flush(); err != nil {
			n.cfg.Core.Logger.Error("storage failure: stopping this peer", "err", err)
			return err
		}
		// Reset also drops a fire not yet received.
		if wake := n.loop.NextWake(); wake != armed {
			armed = wake
			timer.Reset(wake - n.Now())
		}
		for _, r := range replies {
			r.res <- r.err
		}
	}
}

// takeInbox appends to batch the messages waiting in the inbox, without
// blocking, until it holds ReceiveBatch; when it leaves messages behind,
// the inbox is ready again for the next turn of the loop.
func (n *Node) takeInbox(batch []raftpb.Message) []raftpb.Message {
	for len(batch) < ReceiveBatch {
		m, ok := n.inbox.Pop()
		if !ok {
			return batch
		}
		batch = append(batch, m)
	}
	n.inbox.Notify()
	return batch
}

// publish hands v to OnView with the clock time it is published at.
func (n *Node) publish(v View) {
	if n.cfg.OnView != nil {
		n.cfg.OnView(v, n.Now())
	}
}

// apply hands what a Ready committed to OnApply, unless it is nothing.
func (n *Node) apply(a Applied) error {
	if n.cfg.OnApply != nil && (len(a.Entries) > 0 || a.ConfChanged || a.Snapshot != nil) {
		n.cfg.OnApply(a)
	}
	return nil
}
