package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/clock"
	"github.com/qcluster/qcluster/internal/fifo"
	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/quietconn"
)

// RaftPreamble opens every raft stream; register [Transport.HandleStream]
// for it with [Mux.Handle].
const RaftPreamble = "QCRAFT1\n"

// HelloVersion is the version a raft stream's hello carries, and the only
// one accepted: 3, whose writer ends every deliberate close with a goodbye
// frame and every other close with a reset, so that a clean end of stream
// without a goodbye means the writer's process is gone (see the package
// doc). Version 2 closed cleanly without a goodbye, which a version-3
// reader would take for evidence of a crash; version 1 sent a snapshot as
// one frame of up to 64 MiB. A peer refuses another version's streams
// (bad_hello).
const HelloVersion = 3

// Defaults for the zero fields of [Config].
const (
	DefaultQueueSize    = 4096    // messages per peer
	DefaultMaxFrameSize = 8 << 20 // bytes (8 MiB)
	// DefaultMaxSnapshotSize: 256 MiB holds a replicated store at its
	// default quota (64 MiB) beside a registry of a thousand members that
	// each carry the largest metadata (64 KiB), with room for a second
	// snapshot from a new leader while the old one's stalls.
	DefaultMaxSnapshotSize = 256 << 20
	// DefaultSnapshotChunkSize: a MsgSnap whose encoding is larger is sent
	// in frames of at most this many bytes; a heartbeat waits for at most
	// one of them.
	DefaultSnapshotChunkSize = 1 << 20
	DefaultDialTimeout       = time.Second           // per dial
	DefaultMinBackoff        = 10 * time.Millisecond // first reconnect delay
	DefaultMaxBackoff        = time.Second           // longest reconnect delay
	DefaultFrameTimeout      = 10 * time.Second      // a started frame's longest stall
)

const (
	// writeTimeout bounds how long a write to a peer may make no progress
	// before the connection is considered stuck and closed.
	writeTimeout = 5 * time.Second
	// helloTimeout bounds how long an inbound stream may take to send its
	// hello after the preamble.
	helloTimeout = 5 * time.Second

	writeBufferSize = 64 << 10
	readBufferSize  = 64 << 10
	// maxRetainedBuffer: scratch buffers larger than this are not kept
	// between messages.
	maxRetainedBuffer = 1 << 20
	// writeChunk: frames larger than this are written in pieces of this
	// size, each with its write deadline pushed on (a frame of megabytes
	// may take longer than writeTimeout on a slow link, as long as it
	// progresses).
	writeChunk = 256 << 10
	// goodbyeTimeout bounds the write of a goodbye frame; a goodbye that
	// cannot be written in time is replaced by a reset.
	goodbyeTimeout = 200 * time.Millisecond
)

// probePauses are the pauses before the second and later dials of a probe
// whose dials are accepted: a process killed with SIGKILL may close its
// stream sockets before its listener (the kernel releases the files of a
// dying process in no particular order), so a connect right after the end
// of stream may still reach the dying listener's backlog. They double,
// from 1ms to 32ms (63ms in all, at most 7 connects to a live peer).
var probePauses = [...]time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond,
	8 * time.Millisecond, 16 * time.Millisecond, 32 * time.Millisecond}

// Config configures a [Transport].
type Config struct {
	// LocalID is this node's raft ID; required (non-zero).
	LocalID uint64
	// ClusterName is sent in the hello of every outbound stream. An inbound
	// stream whose hello names another cluster is refused, logged and
	// counted (Refusals.WrongCluster); an empty name is a name like any
	// other, so a peer without one and a peer with one refuse each other.
	// At most 255 bytes.
	ClusterName string
	// Deliver is called from reader goroutines for each received message
	// that passed validation and the filter; required. It may block briefly
	// (the consumer has a bounded inbox) but must return: Close waits for it.
	Deliver func(m raftpb.Message)
	// Unreachable, if non-nil, is called when a message to id is dropped or
	// the connection to id fails, at most once per backoff interval per known
	// peer. It is called with no Transport lock held, either from Send (in the
	// caller's goroutine) or from a writer goroutine.
	Unreachable func(id uint64)
	// QueueSize is the per-peer outbound queue length in messages
	// (default 4096). When the queue is full, Send drops the message.
	QueueSize int
	// MaxFrameSize bounds a frame's payload (default 8 MiB), snapshot
	// frames included. A larger incoming length prefix closes the
	// connection without allocating (and counts in
	// Refusals.FrameTooLarge); a larger outbound message is dropped,
	// except a MsgSnap, which is sent in chunks. The receive buffer of a
	// frame grows with the bytes that actually arrive, not with the length
	// its prefix claims.
	MaxFrameSize int
	// SnapshotChunkSize: a MsgSnap whose encoding is larger is sent as
	// snapshot frames of at most this many bytes (default 1 MiB; at least
	// 1 KiB, at most MaxFrameSize), interleaved with the stream's other
	// messages, and reassembled by the receiver. Its SnapshotStatus is ok
	// once the last frame is flushed.
	SnapshotChunkSize int
	// MaxSnapshotSize bounds the data of the snapshots being reassembled,
	// over all inbound streams (default 256 MiB), and so the size of one
	// snapshot: each stream reassembles one snapshot at a time, whose
	// announced size is reserved (and its buffer allocated) when its first
	// frame arrives and freed when it is delivered or abandoned. A
	// snapshot announcing more than is left, frames out of sequence or
	// past the announced size, or a reassembly whose next frame does not
	// begin within FrameTimeout close the stream, deliver nothing and
	// count in Refusals.BadSnapshot. An outbound snapshot with more data
	// is dropped.
	MaxSnapshotSize int
	// SnapshotStatus, if non-nil, is told the outcome of every MsgSnap
	// passed to Send, exactly once: ok when the frame was written and
	// flushed to the peer's connection, not ok when it was dropped (filter,
	// unknown or unreachable peer, full queue, too large, failed write,
	// peer removed, Transport closed). It is called with no Transport
	// lock held, from Send or from a writer goroutine, and must not block.
	// The raft node needs it: raft sends a follower nothing but
	// heartbeats until it learns the outcome of its snapshot.
	SnapshotStatus func(to uint64, ok bool)
	// FrameTimeout bounds how long an inbound frame that has started may
	// go without progress before its stream is closed (and counted in
	// Refusals.Stalled): a peer that announces a frame and stops sending
	// does not hold its buffer forever. Streams may idle between frames
	// without limit (a follower may have nothing to say to another for as
	// long as the leader lives), except during a snapshot's reassembly,
	// whose next frame must begin within FrameTimeout of the previous one
	// (Refusals.BadSnapshot). Default 10s.
	FrameTimeout time.Duration
	// DialTimeout bounds each dial (default 1s).
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 10ms and
	// 1s). The delay doubles after each failure, with jitter, and is reset
	// once a connection has stayed up for MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock the Unreachable rate limit is judged by (default
	// clock.Monotonic(); the node clock, consensus.NewClock, fits too).
	Now clock.Clock
	// Dial opens a connection to a peer's host:port (a raft stream, or a
	// probe of a peer whose stream ended without a goodbye); the default
	// is a net.Dialer. It must return when ctx is done (Close and
	// RemovePeer cancel it; DialTimeout ends it). With TLS, the Transport runs the TLS handshake on the
	// connection Dial returns.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// TLS, when set, secures raft streams: every outbound stream is a TLS
	// client connection with this configuration (offering ALPNPeer; the
	// configuration verifies the server, as pki.Credentials.ClientTLS
	// does) to a server whose certificate must name the identifier whose
	// NodeID is the peer's ID; and every inbound stream must have come
	// over TLS (through a TLS Mux) with a client certificate whose
	// identifier maps, through NodeID, to the node ID its hello claims.
	// Other streams are refused, logged and counted
	// (Refusals.Unauthenticated, Refusals.WrongIdentity).
	TLS *tls.Config
	// NodeID maps the identifier a peer certificate names to its raft
	// node ID (QCluster's NodeID); required with TLS. Without TLS, it is
	// still used to check inbound streams that happen to be TLS.
	NodeID func(identifier string) uint64
	// Identifier, if non-nil, returns the identifier of a member's node ID
	// (false for an ID that is no member, such as a peer joining). A peer
	// certificate is then checked against a member's identifier by
	// string: its identifier must be that one, not merely one whose
	// NodeID (a 64-bit hash, which can be made to collide) is the same.
	// Only for an ID it does not know does the check fall back to NodeID.
	// It is called on every stream (re)connect and must be cheap.
	Identifier func(id uint64) (string, bool)
	// PeerGone, if non-nil, is called with the ID of a peer whose process
	// is proven gone: its authenticated inbound stream (the newest from it)
	// ended with a clean end of stream at a frame boundary, without a
	// goodbye frame, and then a TCP connect to its address (the one
	// SetPeer gave; plain TCP through Dial, DialTimeout each: a refusal
	// takes a round trip, which on a slow link is hundreds of
	// milliseconds) was refused (ECONNREFUSED); a
	// connect that is accepted (and closed) or reset is made again after
	// 1, 2, 4, 8, 16 and 32ms, since a killed process's listener may close
	// a moment after its streams, resetting the connects in its backlog. A goodbye, a connection reset, a truncated frame,
	// a probe that times out, fails otherwise or is accepted every time
	// give nothing;
	// StreamEnds counts each. It is called with no Transport lock held,
	// from a goroutine of the Transport (never after Close returns), and
	// must not block long: Close waits for it. roundTrip is how long the
	// refused connect took: a round trip to the peer's host.
	PeerGone func(id uint64, roundTrip time.Duration)
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Direction tells a [Filter] which way a message is going.
type Direction int

const (
	// Outbound is a message passed to Send, before it is queued.
	Outbound Direction = iota
	// Inbound is a message received from a peer, before it is delivered.
	Inbound
)

// String returns "outbound" or "inbound".
func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return "Direction(?)"
}

// Refusals counts raft streams the Transport refused or closed because of
// what the other side sent, by reason.
type Refusals struct {
	// BadHello: the stream's hello was malformed or late.
	BadHello uint64
	// WrongNode: the hello was addressed to another node ID.
	WrongNode uint64
	// WrongCluster: the hello named another cluster.
	WrongCluster uint64
	// Unauthenticated: with Config.TLS, an inbound stream without TLS or
	// without a peer certificate naming a QCluster peer of this cluster.
	Unauthenticated uint64
	// WrongIdentity: the peer certificate of an inbound stream names an
	// identifier whose node ID is not the one its hello claims.
	WrongIdentity uint64
	// FrameTooLarge: a frame's length prefix exceeded MaxFrameSize.
	FrameTooLarge uint64
	// BadSnapshot: a snapshot's frames were malformed, misaddressed, out
	// of sequence (a gap, a repeat, a new snapshot before the previous one
	// ended), past the size they announced, announced more than
	// MaxSnapshotSize leaves, or stopped coming for FrameTimeout.
	BadSnapshot uint64
	// Stalled: a started frame made no progress for FrameTimeout.
	Stalled uint64
	// BadMessage: a frame did not decode, or its message was not from the
	// hello's sender to this node.
	BadMessage uint64
	// DialFailed: an outbound TLS handshake failed, or the server's
	// certificate named another node than the one dialled.
	DialFailed uint64
}

// StreamEnds counts how authenticated inbound raft streams ended, and the
// probes that followed an end without a goodbye (see Config.PeerGone).
type StreamEnds struct {
	// Goodbyes: the stream ended with a goodbye frame (the peer closed it
	// deliberately).
	Goodbyes uint64
	// Resets: the stream ended with a connection reset (the peer gave up
	// on it, or something between us reset it).
	Resets uint64
	// EOFs: the stream ended with a clean end of stream at a frame
	// boundary without a goodbye, which is what a dead process's kernel
	// sends; a probe follows when the stream was the peer's newest and the
	// peer has an address.
	EOFs uint64
	// ProbesRefused: the probe's connect was refused; Config.PeerGone was
	// called (unless the Transport was closing).
	ProbesRefused uint64
	// ProbesAccepted: the probe's connect was accepted (and closed at
	// once): the peer's port is alive.
	ProbesAccepted uint64
	// ProbesFailed: the probe's connect failed otherwise (a time-out, no
	// route, Close, a reset on the last try).
	ProbesFailed uint64
}

// endCounters are StreamEnds as atomics.
type endCounters struct {
	goodbyes, resets, eofs, probesRefused, probesAccepted, probesFailed atomic.Uint64
}

// refusalCounters are Refusals as atomics.
type refusalCounters struct {
	badHello, wrongNode, wrongCluster, unauthenticated, wrongIdentity,
	frameTooLarge, badSnapshot, stalled, badMessage, dialFailed atomic.Uint64
}

// Filter is a fault-injection hook: it returns false to drop m. Dropped
// messages count in Stats.Dropped; Unreachable is not called for them.
type Filter func(m raftpb.Message, dir Direction) bool

// Stats are a Transport's cumulative message counters.
type Stats struct {
	// Sent counts messages written (flushed) to a peer's connection.
	Sent uint64
	// Received counts messages handed to Deliver.
	Received uint64
	// Dropped counts messages discarded: by the filter, for an unknown or
	// unreachable peer, a full queue, an oversized message, or a failed write.
	Dropped uint64
}

// Transport sends and receives raft messages over one stream per peer and
// direction. Outbound, each peer has a bounded queue drained by a single
// writer goroutine that dials, writes RaftPreamble and a hello, and then
// writes message frames through a buffer flushed whenever the queue is
// momentarily empty. Inbound streams arrive through [Transport.HandleStream].
//
// All methods are safe for concurrent use.
type Transport struct {
	cfg  Config
	log  *slog.Logger
	ctx  context.Context // canceled by Close
	stop context.CancelFunc

	filter                  atomic.Pointer[Filter]
	sent, received, dropped typeCounters
	refused                 refusalCounters
	ends                    endCounters
	closing                 atomic.Bool
	// writeTimeout is writeTimeout; tests shorten it before SetPeer.
	writeTimeout time.Duration
	// dialProbe makes one probe's connect (probeDial); tests replace it
	// before SetPeer.
	dialProbe func(addr string) error
	snapBytes atomic.Int64 // bytes reserved by inbound snapshots being reassembled
	clientTLS *tls.Config  // Config.TLS offering ALPNPeer; nil without TLS

	mu      sync.RWMutex
	closed  bool
	peers   map[uint64]*peer
	inbound map[net.Conn]uint64 // inbound stream -> remote ID (0 before hello)
	latest  map[uint64]net.Conn // newest inbound stream per remote ID
	wg      sync.WaitGroup      // every goroutine started, plus running HandleStream calls
}

// New returns a Transport for cfg, with defaults filled in. It panics if
// cfg.LocalID is zero, cfg.Deliver is nil, cfg.ClusterName is longer than
// 255 bytes, or cfg.TLS is set without cfg.NodeID.
func New(cfg Config) *Transport {
	if cfg.TLS != nil && cfg.NodeID == nil {
		panic("transport: Config.NodeID is required with Config.TLS")
	}
	if cfg.LocalID == 0 {
		panic("transport: Config.LocalID must be non-zero")
	}
	if cfg.Deliver == nil {
		panic("transport: Config.Deliver is required")
	}
	if len(cfg.ClusterName) > maxClusterName {
		panic("transport: Config.ClusterName longer than 255 bytes")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = DefaultMaxFrameSize
	}
	if cfg.SnapshotChunkSize <= 0 {
		cfg.SnapshotChunkSize = DefaultSnapshotChunkSize
	}
	cfg.SnapshotChunkSize = min(max(cfg.SnapshotChunkSize, minSnapshotChunk), cfg.MaxFrameSize)
	if cfg.MaxSnapshotSize <= 0 {
		cfg.MaxSnapshotSize = DefaultMaxSnapshotSize
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Now == nil {
		cfg.Now = clock.Monotonic()
	}
	if cfg.FrameTimeout <= 0 {
		cfg.FrameTimeout = DefaultFrameTimeout
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return quietconn.Wrap(c), nil
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var clientTLS *tls.Config
	if cfg.TLS != nil {
		clientTLS = cfg.TLS.Clone()
		clientTLS.NextProtos = []string{ALPNPeer}
	}
	ctx, stop := context.WithCancel(context.Background())
	t := &Transport{
		writeTimeout: writeTimeout,
		clientTLS:    clientTLS,
		cfg:          cfg,
		log:          log.With("local", cfg.LocalID),
		ctx:          ctx,
		stop:         stop,
		peers:        make(map[uint64]*peer),
		inbound:      make(map[net.Conn]uint64),
		latest:       make(map[uint64]net.Conn),
	}
	t.dialProbe = t.probeDial
	return t
}

// SetPeer adds peer id at addr (host:port) or updates its address; an update
// closes the current connection and reconnects to the new address. The
// peer's writer goroutine starts here and dials right away.
func (t *Transport) SetPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p := t.peers[id]; p != nil {
		if *p.addr.Load() != addr {
			p.addr.Store(&addr)
			select {
			case p.update <- struct{}{}:
			default:
			}
		}
		return
	}
	ctx, cancel := context.WithCancel(t.ctx)
	p := &peer{
		t:      t,
		id:     id,
		log:    t.log.With("remote_id", id),
		ctx:    ctx,
		cancel: cancel,
		queue:  fifo.New[raftpb.Message](t.cfg.QueueSize),
		update: make(chan struct{}, 1),
	}
	p.addr.Store(&addr)
	p.interval.Store(int64(t.cfg.MinBackoff))
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
}

// RemovePeer forgets peer id: its writer stops and its queued messages are
// discarded. Inbound streams from id are left to end on their own.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.cancel()
	}
}

// SetFilter installs f as the fault-injection filter (nil removes it).
func (t *Transport) SetFilter(f Filter) {
	if f == nil {
		t.filter.Store(nil)
		return
	}
	t.filter.Store(&f)
}

// Stats returns the current counters, summed over every message type.
func (t *Transport) Stats() Stats {
	var s Stats
	for i := range numTypeSlots {
		s.Sent += t.sent[i].Load()
		s.Received += t.received[i].Load()
		s.Dropped += t.dropped[i].Load()
	}
	return s
}

// Refusals returns the counters of refused streams.
func (t *Transport) Refusals() Refusals {
	c := &t.refused
	return Refusals{
		BadHello:        c.badHello.Load(),
		WrongNode:       c.wrongNode.Load(),
		WrongCluster:    c.wrongCluster.Load(),
		Unauthenticated: c.unauthenticated.Load(),
		WrongIdentity:   c.wrongIdentity.Load(),
		FrameTooLarge:   c.frameTooLarge.Load(),
		BadSnapshot:     c.badSnapshot.Load(),
		Stalled:         c.stalled.Load(),
		BadMessage:      c.badMessage.Load(),
		DialFailed:      c.dialFailed.Load(),
	}
}

// StreamEnds returns the counters of how inbound streams ended and of the
// probes that followed.
func (t *Transport) StreamEnds() StreamEnds {
	c := &t.ends
	return StreamEnds{
		Goodbyes:       c.goodbyes.Load(),
		Resets:         c.resets.Load(),
		EOFs:           c.eofs.Load(),
		ProbesRefused:  c.probesRefused.Load(),
		ProbesAccepted: c.probesAccepted.Load(),
		ProbesFailed:   c.probesFailed.Load(),
	}
}

// OtherTypes stands, in [Transport.ForEachType], for every message type
// this build of raft does not know (sent by a newer peer, or garbage): they
// share one set of counters.
const OtherTypes raftpb.MessageType = -1

// ForEachType calls fn with the counters of each message type that has
// counted at least one message, in type order ([OtherTypes] last). It reads
// atomic counters and allocates nothing: metrics collectors call it at
// scrape time.
func (t *Transport) ForEachType(fn func(typ raftpb.MessageType, s Stats)) {
	for i := range numTypeSlots {
		s := Stats{Sent: t.sent[i].Load(), Received: t.received[i].Load(), Dropped: t.dropped[i].Load()}
		if s == (Stats{}) {
			continue
		}
		typ := raftpb.MessageType(i)
		if i == otherSlot {
			typ = OtherTypes
		}
		fn(typ, s)
	}
}

// maxKnownType is the highest raftpb.MessageType this build knows.
const maxKnownType = raftpb.MsgForgetLeader

// Counter slots: one per known message type, then one for all others.
const (
	otherSlot    = int(maxKnownType) + 1
	numTypeSlots = otherSlot + 1
)

// typeCounters counts messages by type: an array indexed by type, so
// counting one message is one atomic add with no lookup.
type typeCounters [numTypeSlots]atomic.Uint64

// slot returns typ's index in a typeCounters.
func slot(typ raftpb.MessageType) int {
	if uint32(typ) > uint32(maxKnownType) { // negative values too
		return otherSlot
	}
	return int(typ)
}

func (c *typeCounters) add(typ raftpb.MessageType, n uint64) { c[slot(typ)].Add(n) }

// batchCounts counts the messages of one write batch by type, before they
// are known to be sent or dropped.
type batchCounts [numTypeSlots]uint32

// addTo adds the batch to c.
func (b *batchCounts) addTo(c *typeCounters) {
	for i, n := range b {
		if n > 0 {
			c[i].Add(uint64(n))
		}
	}
}

// Down reports whether the stream to peer id is down: its connection
// failed or broke and has not been made again (Send drops what is sent to
// it meanwhile). A peer that closed (a goodbye) or whose process is gone
// is down within moments of it; one not yet connected, or unknown, is not.
func (t *Transport) Down(id uint64) bool {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	return p != nil && p.down.Load()
}

// Send queues msgs for their destinations (m.To) and never blocks. A message
// for an unknown peer, for a peer whose connection is down, or for a peer
// whose queue is full is dropped, and Unreachable is called (rate-limited
// for known peers). Messages sent after Close are dropped silently.
func (t *Transport) Send(msgs []raftpb.Message) {
	f := t.filter.Load()
	for i := range msgs {
		m := &msgs[i]
		if f != nil && !(*f)(*m, Outbound) {
			t.drop(m)
			continue
		}
		t.mu.RLock()
		p, closed := t.peers[m.To], t.closed
		t.mu.RUnlock()
		switch {
		case closed:
			t.drop(m)
		case p == nil:
			t.drop(m)
			if t.cfg.Unreachable != nil {
				t.cfg.Unreachable(m.To)
			}
		case p.down.Load():
			t.drop(m)
			p.reportUnreachable()
		default:
			if !p.queue.Push(*m) {
				t.drop(m)
				p.reportUnreachable()
			}
		}
	}
}

// drop counts m as dropped and, for a snapshot, reports its failure.
func (t *Transport) drop(m *raftpb.Message) {
	t.dropped.add(m.Type, 1)
	if m.Type == raftpb.MsgSnap {
		t.snapshotDone(m.To, false)
	}
}

// snapshotDone reports the outcome of a MsgSnap to Config.SnapshotStatus.
func (t *Transport) snapshotDone(to uint64, ok bool) {
	if t.cfg.SnapshotStatus != nil {
		t.cfg.SnapshotStatus(to, ok)
	}
}

// CloseInbound closes the newest inbound stream from node id, if any (the
// one its messages are arriving on): its owner found something wrong in
// them. The peer may connect again. It never blocks: the connection is
// closed on a goroutine of the Transport.
func (t *Transport) CloseInbound(id uint64) {
	t.mu.Lock()
	c := t.latest[id]
	if c == nil || t.closed {
		t.mu.Unlock()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		c.Close() // a TLS close_notify may wait for the network
	}()
}

// Close stops the Transport: it stops every writer, closes every outbound
// and inbound connection, and waits for all its goroutines and running
// HandleStream calls to return. After Close returns, Deliver is not called
// and Unreachable is called by no goroutine of the Transport (Send calls
// racing with Close are the caller's). Close is idempotent.
func (t *Transport) Close() error {
	t.closing.Store(true)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	conns := make([]net.Conn, 0, len(t.inbound))
	for c := range t.inbound {
		conns = append(conns, c)
	}
	t.mu.Unlock()

	t.stop()
	for _, c := range conns {
		c.Close()
	}
	t.wg.Wait()
	return nil
}

// HandleStream serves an inbound raft stream whose RaftPreamble has already
// been consumed (as by Mux.Handle(RaftPreamble, t.HandleStream)). It reads
// the hello, refuses streams meant for another node or cluster, and then
// delivers messages until the stream fails, sends an invalid frame, is
// replaced by a newer stream from the same peer, or the Transport closes.
// It closes conn before returning.
func (t *Transport) HandleStream(conn net.Conn) {
	if !t.addInbound(conn) {
		conn.Close()
		return
	}
	defer func() {
		conn.Close()
		t.removeInbound(conn)
		t.wg.Done()
	}()

	log := t.log.With("remote", conn.RemoteAddr())
	if err := conn.SetReadDeadline(time.Now().Add(helloTimeout)); err != nil {
		return
	}
	r := bufio.NewReaderSize(conn, readBufferSize)
	h, err := readHello(r)
	if err != nil {
		t.refused.badHello.Add(1)
		log.Warn("raft stream refused: bad hello", "err", err)
		return
	}
	log = log.With("remote_id", h.From)
	if h.To != t.cfg.LocalID {
		t.refused.wrongNode.Add(1)
		log.Warn("raft stream refused: meant for another node", "to", h.To)
		return
	}
	if h.ClusterName != t.cfg.ClusterName {
		t.refused.wrongCluster.Add(1)
		log.Warn("raft stream refused: other cluster", "cluster", h.ClusterName, "want", t.cfg.ClusterName)
		return
	}
	if err := t.authenticate(conn, h.From); err != nil {
		log.Warn("raft stream refused: "+err.Error(), "err", err)
		return
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return
	}
	if !t.bindInbound(conn, h.From) {
		return
	}

	fr := frameReader{r: r, conn: conn, limit: t.cfg.MaxFrameSize, timeout: t.cfg.FrameTimeout}
	sr := snapReceiver{from: h.From, to: t.cfg.LocalID, budget: &t.snapBytes,
		limit: int64(t.cfg.MaxSnapshotSize), timeout: t.cfg.FrameTimeout}
	defer sr.abort()
	for {
		fr.idleDeadline = time.Time{}
		if sr.busy() {
			fr.idleDeadline = sr.deadline
		}
		p, err := fr.next()
		if err != nil {
			switch {
			case errors.Is(err, errIdleDeadline):
				t.refused.badSnapshot.Add(1)
				log.Warn("raft stream closed: bad snapshot", "err", sr.stalled())
			case errors.Is(err, errFrameTooLarge):
				t.refused.frameTooLarge.Add(1)
				log.Warn("raft stream closed: oversized frame", "err", err)
			case errors.Is(err, errFrameStalled):
				t.refused.stalled.Add(1)
				log.Warn("raft stream closed: frame stalled", "err", err, "timeout", t.cfg.FrameTimeout)
			case t.closing.Load(), errors.Is(err, net.ErrClosed):
			case err == io.EOF:
				// A clean end at a frame boundary without a goodbye:
				// the peer's process may be gone.
				t.probe(h.From, conn, log)
			case errors.Is(err, syscall.ECONNRESET):
				t.ends.resets.Add(1)
				log.Debug("raft stream reset by peer")
			default:
				log.Debug("raft stream closed", "err", err)
			}
			return
		}
		if len(p) == 0 {
			// A goodbye: the peer closes the stream deliberately.
			t.ends.goodbyes.Add(1)
			log.Debug("raft stream closed by peer with a goodbye")
			return
		}
		var m raftpb.Message
		if isSnapFrame(p) {
			snap, done, err := sr.add(p, time.Now())
			if err != nil {
				t.refused.badSnapshot.Add(1)
				log.Warn("raft stream closed: bad snapshot", "err", err)
				return
			}
			fr.recycle(p)
			if !done {
				continue
			}
			m = snap
		} else {
			if sr.busy() && time.Now().After(sr.deadline) {
				// Other messages came, but not the snapshot's next frame.
				t.refused.badSnapshot.Add(1)
				log.Warn("raft stream closed: bad snapshot", "err", sr.stalled())
				return
			}
			if err := m.Unmarshal(p); err != nil {
				t.refused.badMessage.Add(1)
				log.Warn("raft stream closed: bad message", "err", err)
				return
			}
			if m.From != h.From || m.To != t.cfg.LocalID {
				t.refused.badMessage.Add(1)
				log.Warn("raft stream closed: misaddressed message", "from", m.From, "to", m.To)
				return
			}
			fr.recycle(p)
		}
		if f := t.filter.Load(); f != nil && !(*f)(m, Inbound) {
			t.dropped.add(m.Type, 1)
			continue
		}
		if t.closing.Load() {
			return
		}
		t.received.add(m.Type, 1)
		if !sr.busy() {
			t.cfg.Deliver(m)
			continue
		}
		// The time the consumer takes is not the snapshot's sender's.
		began := time.Now()
		t.cfg.Deliver(m)
		sr.deadline = sr.deadline.Add(time.Since(began))
	}
}

// probe follows the end without a goodbye of conn, the inbound stream from
// peer id: if conn is still id's newest stream, id is a peer with an
// address, and no probe of id is running, it dials id's address (plain
// TCP, DialTimeout each) on a goroutine of the Transport, and calls
// Config.PeerGone if and only if a connect is refused. A connect that is
// accepted (closed at once) or reset is made again after each of
// probePauses; any other failure ends the probe.
func (t *Transport) probe(id uint64, conn net.Conn, log *slog.Logger) {
	t.mu.Lock()
	t.ends.eofs.Add(1) // under mu: a probe, if any, has begun when this shows
	p := t.peers[id]
	if t.closed || p == nil || t.latest[id] != conn || !p.probing.CompareAndSwap(false, true) {
		t.mu.Unlock()
		log.Debug("raft stream ended without a goodbye; not probed")
		return
	}
	addr := *p.addr.Load()
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		defer p.probing.Store(false)
		began := time.Now()
		var err error
		var took time.Duration // the last connect's
	tries:
		for i := 0; ; i++ {
			t0 := time.Now()
			err = t.dialProbe(addr)
			took = time.Since(t0)
			// Accepted, or reset by a listener that closed meanwhile
			// (a dying one resets the connects in its backlog): again.
			again := err == nil || errors.Is(err, syscall.ECONNRESET)
			if !again || i == len(probePauses) {
				break
			}
			timer := time.NewTimer(probePauses[i])
			select {
			case <-t.ctx.Done():
				timer.Stop()
				err = t.ctx.Err()
				break tries
			case <-timer.C:
			}
		}
		switch {
		case err == nil:
			t.ends.probesAccepted.Add(1)
			log.Info("raft stream ended without a goodbye; the peer's port accepts", "addr", addr)
		case errors.Is(err, syscall.ECONNREFUSED):
			t.ends.probesRefused.Add(1)
			log.Info("raft stream ended without a goodbye and the peer's port refuses: its process is gone",
				"addr", addr, "probe", time.Since(began), "round_trip", took)
			if cb := t.cfg.PeerGone; cb != nil && !t.closing.Load() {
				cb(id, took)
			}
		default:
			t.ends.probesFailed.Add(1)
			log.Info("raft stream ended without a goodbye; probe failed", "addr", addr, "err", err)
		}
	}()
}

// probeDial makes one TCP connect to addr through Config.Dial, closed at
// once if accepted. It has DialTimeout, as any dial: the refusal that
// proves a process gone comes back after a round trip (a probe that gave
// up after 200ms, as it once did, missed half the proofs on a link with
// 100±50ms of delay each way).
func (t *Transport) probeDial(addr string) error {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	c, err := t.cfg.Dial(ctx, addr)
	if err == nil {
		c.Close()
	}
	return err
}

// authenticate checks that an inbound stream claiming to come from node
// from came over TLS (when the Transport requires it) from a peer whose
// certificate names an identifier of that node ID, and counts a refusal.
func (t *Transport) authenticate(conn net.Conn, from uint64) error {
	cs, isTLS := ConnState(conn)
	if !isTLS {
		if t.cfg.TLS != nil {
			t.refused.unauthenticated.Add(1)
			return errors.New("not TLS (this peer requires TLS)")
		}
		return nil
	}
	if t.cfg.NodeID == nil {
		return nil
	}
	id, err := (&pki.Verifier{Cluster: t.cfg.ClusterName}).Peer(cs)
	if err != nil {
		t.refused.unauthenticated.Add(1)
		return err
	}
	if err := t.checkIdentity(id.Identifier, from); err != nil {
		t.refused.wrongIdentity.Add(1)
		return fmt.Errorf("%w: hello claims node %d", err, from)
	}
	return nil
}

// checkIdentity checks that a certificate naming identifier belongs to
// node id: for a member (Config.Identifier knows id), the identifiers must
// be equal; for another node, identifier's NodeID must be id.
func (t *Transport) checkIdentity(identifier string, id uint64) error {
	if t.cfg.Identifier != nil {
		if want, ok := t.cfg.Identifier(id); ok {
			if identifier != want {
				return fmt.Errorf("%w: certificate names %q, node %d is member %q", pki.ErrIdentityMismatch, identifier, id, want)
			}
			return nil
		}
	}
	if got := t.cfg.NodeID(identifier); got != id {
		return fmt.Errorf("%w: certificate names %q (node %d), not node %d", pki.ErrIdentityMismatch, identifier, got, id)
	}
	return nil
}

// addInbound registers a running HandleStream; false if t is closed.
func (t *Transport) addInbound(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.inbound[c] = 0
	t.wg.Add(1)
	return true
}

// bindInbound records c as the newest stream from id and closes the previous
// one: a peer dials a new stream only after giving up on the old one, which
// may linger half-open. It reports false if c has meanwhile been closed by
// Close.
func (t *Transport) bindInbound(c net.Conn, id uint64) bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	old := t.latest[id]
	t.latest[id] = c
	t.inbound[c] = id
	if p := t.peers[id]; p != nil && p.down.Load() {
		// The peer is back (it dialed us): redial it now instead of at the
		// end of the backoff, so a restarted peer hears the leader at once.
		select {
		case p.update <- struct{}{}:
		default:
		}
	}
	t.mu.Unlock()
	if old != nil {
		t.log.Debug("raft stream replaced by a newer one", "remote_id", id)
		old.Close()
	}
	return true
}

func (t *Transport) removeInbound(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id := t.inbound[c]; id != 0 && t.latest[id] == c {
		delete(t.latest, id)
	}
	delete(t.inbound, c)
}

// sinceStart returns a monotonic timestamp (never 0).
func (t *Transport) sinceStart() int64 { return int64(t.cfg.Now()) }

// peer is the outbound side of one remote node.
type peer struct {
	t      *Transport
	id     uint64
	log    *slog.Logger
	ctx    context.Context // canceled by RemovePeer or Close
	cancel context.CancelFunc
	queue  *fifo.Queue[raftpb.Message]
	update chan struct{} // address changed (capacity 1)
	addr   atomic.Pointer[string]

	down       atomic.Bool  // connection failed; Send drops until reconnected
	interval   atomic.Int64 // current backoff: the Unreachable rate limit
	lastReport atomic.Int64 // sinceStart of the last Unreachable call; 0 = never

	handshakeWarned atomic.Bool // a failed TLS dial was logged as a warning; reset on success
	probing         atomic.Bool // a probe of this peer is running
}

// reportUnreachable calls Config.Unreachable at most once per backoff
// interval.
func (p *peer) reportUnreachable() {
	cb := p.t.cfg.Unreachable
	if cb == nil || p.t.closing.Load() {
		return
	}
	now := p.t.sinceStart()
	last := p.lastReport.Load()
	if last != 0 && now-last < p.interval.Load() {
		return
	}
	if p.lastReport.CompareAndSwap(last, now) {
		cb(p.id)
	}
}

// run is the peer's writer goroutine: connect, stream, back off, repeat.
func (p *peer) run() {
	defer p.t.wg.Done()
	defer p.drain() // removed or closed: what is queued is dropped
	minB, maxB := p.t.cfg.MinBackoff, p.t.cfg.MaxBackoff
	bo := backoff.New(minB, maxB)
	for p.ctx.Err() == nil {
		addr := *p.addr.Load()
		conn, err := p.dial(addr)
		if err == nil {
			p.handshakeWarned.Store(false)
			p.down.Store(false)
			p.interval.Store(int64(minB))
			up := time.Now()
			err = p.stream(conn)
			if p.ctx.Err() != nil {
				return
			}
			if err == nil { // address changed: reconnect at once
				bo.Reset()
				continue
			}
			if time.Since(up) >= maxB {
				bo.Reset()
			}
			p.log.Info("raft stream to peer broke", "addr", addr, "err", err)
		} else {
			if p.ctx.Err() != nil {
				return
			}
			p.log.Debug("dial peer failed", "addr", addr, "err", err, "retry_in", bo.Nominal())
		}

		// Down: drop what is queued and what Send offers until reconnected.
		p.interval.Store(int64(bo.Nominal()))
		p.down.Store(true)
		p.drain()
		p.reportUnreachable()

		timer := time.NewTimer(bo.Next())
		select {
		case <-p.ctx.Done():
			timer.Stop()
			return
		case <-p.update:
			timer.Stop()
			bo.Reset()
			continue
		case <-timer.C:
		}
	}
}

// dial connects to the peer and, with TLS, runs the handshake and checks
// that the server's certificate names this peer; DialTimeout bounds both.
func (p *peer) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.t.cfg.DialTimeout)
	defer cancel()
	conn, err := p.t.cfg.Dial(ctx, addr)
	if err != nil || p.t.clientTLS == nil {
		return conn, err
	}
	tc := tls.Client(conn, p.t.clientTLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		resetClose(conn)
		if p.ctx.Err() == nil {
			p.t.refused.dialFailed.Add(1)
			p.logHandshake("raft stream to peer refused: TLS handshake failed", "addr", addr, "err", err)
		}
		return nil, err
	}
	id, err := pki.PeerIdentity(tc.ConnectionState())
	if err == nil {
		if ierr := p.t.checkIdentity(id.Identifier, p.id); ierr != nil {
			err = fmt.Errorf("%s is at %s: %w", nodeName(p.id), addr, ierr)
		}
	}
	if err != nil {
		resetClose(conn)
		p.t.refused.dialFailed.Add(1)
		p.logHandshake("raft stream to peer refused: wrong peer certificate", "addr", addr, "err", err)
		return nil, err
	}
	return tc, nil
}

func nodeName(id uint64) string { return fmt.Sprintf("node %d", id) }

// logHandshake logs a failed outbound handshake: a warning the first time
// in a row, then at debug level, so a peer that keeps failing does not
// flood the log at every reconnect.
func (p *peer) logHandshake(msg string, args ...any) {
	if p.handshakeWarned.Swap(true) {
		p.log.Debug(msg, args...)
		return
	}
	p.log.Warn(msg, args...)
}

// drain discards every queued message.
func (p *peer) drain() {
	for {
		m, ok := p.queue.Pop()
		if !ok {
			return
		}
		p.t.drop(&m)
	}
}

var errPeerClosed = errors.New("connection closed by peer")

// stream writes the preamble, the hello and then queued messages to conn
// until the peer is stopped or its address changes (nil) or the connection
// fails (non-nil). It always closes conn: after a goodbye frame when it
// returns nil and the goodbye can be written within goodbyeTimeout, and
// with a reset otherwise, so the reader never sees a clean end of stream
// from a live writer.
func (p *peer) stream(conn net.Conn) (err error) {
	oc := &outConn{conn: conn, ctx: p.ctx, interrupted: make(chan struct{})}
	// Resetting conn is what unblocks a write stuck on a dead peer at
	// Close; an idle writer says goodbye instead.
	stopInterrupt := context.AfterFunc(p.ctx, oc.interrupt)
	// The receiver never writes: any read result means the stream is over
	// (refused, peer restarted, ...), which we learn without waiting for a
	// write to fail.
	// Under TLS, that read also reports the server's alert when it
	// refuses our certificate after the handshake (TLS 1.3 clients finish
	// first), so the log says why.
	broken := make(chan struct{})
	var readErr error // written before broken is closed
	p.t.wg.Add(1)
	go func() {
		defer p.t.wg.Done()
		defer close(broken)
		var b [1]byte
		_, readErr = conn.Read(b[:])
	}()
	defer func() {
		if !stopInterrupt() {
			<-oc.interrupted // no goroutine of the stream outlives it
		}
		if err != nil || !oc.goodbye() {
			resetClose(conn)
		}
		<-broken
	}()

	w := frameWriter{conn: conn, bw: bufio.NewWriterSize(conn, writeBufferSize), max: p.t.cfg.MaxFrameSize,
		chunk: p.t.cfg.SnapshotChunkSize, timeout: p.t.writeTimeout}
	if !oc.begin() {
		return errStopped // before the hello: nothing to say goodbye to
	}
	w.refreshDeadline()
	w.bw.WriteString(RaftPreamble)
	w.bw.Write(appendHelloFrame(w.bw.AvailableBuffer(), hello{
		Version: HelloVersion, From: p.t.cfg.LocalID, To: p.id, ClusterName: p.t.cfg.ClusterName,
	}))
	if err := w.bw.Flush(); err != nil {
		return err
	}
	oc.end()
	// cur is the snapshot being sent in chunks, one chunk per round
	// between the other messages; later ones wait their turn. Whatever is
	// left of them when the stream ends is dropped.
	var cur *snapSend
	var waiting []*snapSend
	defer func() {
		if cur != nil {
			p.t.drop(&cur.m)
		}
		for _, s := range waiting {
			p.t.drop(&s.m)
		}
	}()
	var batch batchCounts
	// snaps counts the batch's snapshots, whose outcome is reported once
	// the batch is flushed or has failed.
	snaps := 0
	fail := func() {
		batch.addTo(&p.t.dropped)
		for ; snaps > 0; snaps-- {
			p.t.snapshotDone(p.id, false)
		}
	}
	for {
		if cur == nil && len(waiting) > 0 {
			cur, waiting[0] = waiting[0], nil
			waiting = waiting[1:]
		}
		var m raftpb.Message
		more := false
		if cur == nil {
			// Idle: wait for a message.
			select {
			case <-p.ctx.Done():
				return nil
			case <-p.update:
				return nil
			case <-broken:
				return p.brokenErr(readErr)
			case <-p.queue.Ready():
				if m, more = p.queue.Pop(); !more {
					continue // taken already by the previous round
				}
			}
		} else {
			select {
			case <-p.ctx.Done():
				return nil
			case <-p.update:
				return nil
			case <-broken:
				return p.brokenErr(readErr)
			default:
			}
			m, more = p.queue.Pop()
		}
		if !oc.begin() {
			// Stopped meanwhile: m is dropped with the queue.
			if more {
				p.t.drop(&m)
			}
			return nil
		}
		// The round's messages by type: sent once flushed, dropped if the
		// connection fails first.
		batch = batchCounts{}
		snaps = 0
		dropped := 0
		if cur != nil {
			if err := w.writeChunk(cur); err != nil {
				return err
			}
		}
		// At most a queue's worth of messages per round, so that a queue
		// refilled as fast as it drains does not hold back the flush or
		// the snapshot's next chunk.
		for n := 1; more; n++ {
			if s, chunked := w.chunked(&m, p.t.cfg.MaxSnapshotSize); chunked {
				if s == nil {
					dropped++
					p.t.drop(&m)
					p.log.Warn("dropped oversized snapshot", "size", m.Size(), "limit", p.t.cfg.MaxSnapshotSize)
				} else {
					waiting = append(waiting, s)
				}
			} else {
				ok, err := w.write(&m)
				if ok || err != nil {
					batch[slot(m.Type)]++
					if m.Type == raftpb.MsgSnap {
						snaps++
					}
				}
				if err != nil {
					fail()
					return err
				}
				if !ok {
					dropped++
					p.t.drop(&m)
					p.log.Warn("dropped unencodable or oversized raft message", "type", m.Type, "size", m.Size())
				}
			}
			if n == p.queue.Limit() {
				p.queue.Notify() // the rest goes in the next round
				break
			}
			m, more = p.queue.Pop()
		}
		if dropped > 0 {
			p.reportUnreachable()
		}
		w.refreshDeadline()
		if err := w.bw.Flush(); err != nil {
			fail()
			return err
		}
		oc.end()
		batch.addTo(&p.t.sent)
		for ; snaps > 0; snaps-- {
			p.t.snapshotDone(p.id, true)
		}
		if cur != nil && cur.done() {
			p.t.sent.add(raftpb.MsgSnap, 1)
			p.t.snapshotDone(p.id, true)
			cur = nil
		}
	}
}

// errStopped ends a stream stopped before its hello was written.
var errStopped = errors.New("stopped")

// outConn is an outbound stream's connection as its writer and the
// interruption at Close or RemovePeer share it: a writer in a write round
// is cut short with a reset; an idle one says goodbye itself.
type outConn struct {
	conn    net.Conn
	ctx     context.Context // the peer's: canceled by Close or RemovePeer
	mu      sync.Mutex
	writing bool // in a write round, which may block on a stuck peer
	// interrupted is closed when interrupt has run.
	interrupted chan struct{}
}

// begin starts a write round; false if the peer is being stopped, when
// the writer should return (and say goodbye).
func (c *outConn) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return false
	}
	c.writing = true
	return true
}

// end ends a write round.
func (c *outConn) end() {
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
}

// interrupt runs once the peer's context is canceled: it resets the
// connection if a write round is under way (begin, which checks the
// context under the same lock, starts no new one).
func (c *outConn) interrupt() {
	defer close(c.interrupted)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing {
		resetClose(c.conn)
	}
}

// goodbye writes a goodbye frame (an empty frame) within goodbyeTimeout
// and closes the connection; false, with the connection still open, if
// the goodbye could not be written.
func (c *outConn) goodbye() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing {
		return false // interrupted or failed in a round: reset
	}
	if c.conn.SetWriteDeadline(time.Now().Add(goodbyeTimeout)) != nil {
		return false
	}
	var frame [frameHeaderSize]byte // length 0
	if _, err := c.conn.Write(frame[:]); err != nil {
		return false
	}
	// The reader stops at the goodbye: under TLS, no close_notify (which
	// could wait on a full buffer), just the TCP close.
	if tc, ok := tcpOf(c.conn); ok {
		tc.Close()
	} else {
		c.conn.Close()
	}
	return true
}

// resetClose closes c with a TCP reset (SO_LINGER 0, on the TCP
// connection under TLS, without a close_notify), so that its reader sees
// ECONNRESET rather than a clean end of stream: every close of an outbound
// stream that does not follow a goodbye. A connection that is not TCP
// underneath is just closed.
func resetClose(c net.Conn) {
	if tc, ok := tcpOf(c); ok {
		tc.SetLinger(0)
		tc.Close()
		return
	}
	c.Close()
}

// tcpOf returns the TCP connection under c's wrappers (TLS, ...), if any.
func tcpOf(c net.Conn) (*net.TCPConn, bool) {
	for {
		if tc, ok := c.(*net.TCPConn); ok {
			return tc, true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = u.NetConn()
	}
}

// brokenErr is the error of a stream whose connection the peer closed.
func (p *peer) brokenErr(readErr error) error {
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		return fmt.Errorf("%w: %w", errPeerClosed, readErr)
	}
	return errPeerClosed
}

// frameWriter encodes messages as frames into a buffered connection,
// keeping a write deadline ahead of every write.
type frameWriter struct {
	conn    net.Conn
	bw      *bufio.Writer
	max     int // payload limit
	chunk   int // a MsgSnap whose encoding is larger is sent in chunks of this size
	scratch []byte
	setAt   time.Time
	timeout time.Duration // writeTimeout
}

// refreshDeadline pushes the write deadline to writeTimeout from now unless
// it was set recently, so the deadline only expires when the connection makes
// no progress for (at least 3/4 of) writeTimeout.
func (w *frameWriter) refreshDeadline() {
	now := time.Now()
	if now.Sub(w.setAt) < w.timeout/4 {
		return
	}
	w.setAt = now
	w.conn.SetWriteDeadline(now.Add(w.timeout))
}

// write buffers m as one frame. It reports false (and no error) if m was
// skipped because it is larger than the frame limit or fails to encode; an
// error is a write error on the connection.
func (w *frameWriter) write(m *raftpb.Message) (bool, error) {
	size := m.Size()
	if size > w.max {
		return false, nil
	}
	need := frameHeaderSize + size
	b := w.bw.AvailableBuffer()
	if cap(b) < need {
		if cap(w.scratch) < need {
			w.scratch = make([]byte, need)
		}
		b = w.scratch
	}
	b = b[:need]
	binary.BigEndian.PutUint32(b, uint32(size))
	// MarshalTo would compute the size again; the buffer has it exactly.
	if _, err := m.MarshalToSizedBuffer(b[frameHeaderSize:]); err != nil {
		return false, nil
	}
	var err error
	for len(b) > 0 && err == nil {
		n := min(len(b), writeChunk)
		w.refreshDeadline()
		_, err = w.bw.Write(b[:n])
		b = b[n:]
	}
	if cap(w.scratch) > maxRetainedBuffer {
		w.scratch = nil
	}
	return true, err
}

// chunked reports whether m is a snapshot to send in chunks, and returns
// its frames, or nil if it cannot be sent: more data than limit, or a
// first frame above the frame limit.
func (w *frameWriter) chunked(m *raftpb.Message, limit int) (*snapSend, bool) {
	if m.Type != raftpb.MsgSnap || m.Snapshot == nil || len(m.Snapshot.Data) == 0 || m.Size() <= w.chunk {
		return nil, false
	}
	if len(m.Snapshot.Data) > limit {
		return nil, true
	}
	return newSnapSend(*m, w.max), true
}

// writeChunk buffers s's next frame: frame 0, or up to a chunk's worth
// of data.
func (w *frameWriter) writeChunk(s *snapSend) error {
	w.refreshDeadline()
	if s.seq == 0 {
		w.bw.Write(binary.BigEndian.AppendUint32(w.bw.AvailableBuffer(), uint32(len(s.start))))
		_, err := w.bw.Write(s.start)
		s.seq++
		return err
	}
	n := min(len(s.data)-s.off, w.chunk-snapFrameHeader)
	var hdr [frameHeaderSize + snapFrameHeader]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(snapFrameHeader+n))
	hdr[frameHeaderSize] = snapFrameKind
	binary.BigEndian.PutUint32(hdr[frameHeaderSize+1:], s.seq)
	w.bw.Write(hdr[:])
	data := s.data[s.off : s.off+n]
	var err error
	for len(data) > 0 && err == nil {
		k := min(len(data), writeChunk)
		w.refreshDeadline()
		_, err = w.bw.Write(data[:k])
		data = data[k:]
	}
	s.off += n
	s.seq++
	return err
}
