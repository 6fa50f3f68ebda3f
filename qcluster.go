// Package qcluster is a lightweight, embeddable clustering SDK: leader
// election and fail-over for a group of peers, with no external
// coordination server.
//
// Each peer links the package (or runs the qcluster agent), loads a JSON
// config that names itself and its peers, and asks IsLeader or Leader:
//
//	cfg, err := qcluster.LoadConfig("server_a.json")
//	if err != nil { ... }
//	c, err := qcluster.New(cfg)
//	if err != nil { ... }
//	if err := c.Start(ctx); err != nil { ... }
//	defer c.Close()
//	if c.IsLeader() {
//		// do the work only one peer may do
//	} else if leader, ok := c.Leader(); ok {
//		// leader.Host, leader.Port, leader.Identifier, leader.Metadata
//	}
//
// Election is Raft (go.etcd.io/raft/v3, with PreVote and CheckQuorum) over
// TCP on the peer's listen port, which also serves the HTTP API. IsLeader is
// backed by a leader lease judged at the moment of the call, against a clock
// that keeps counting while the machine is suspended (on Linux; see
// IsLeader), so two peers never both see IsLeader() == true, even across
// partitions, paused processes, suspended machines or stalled disks.
//
// In leader mode the same Raft log replicates a key-value store (KV: Get,
// List, Put, Delete with compare-and-swap, Watch, ephemeral keys bound to a
// member) and named locks with fencing tokens (Lock).
package qcluster

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qcluster/qcluster/internal/apibackend"
	"github.com/qcluster/qcluster/internal/clock"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/health"
	"github.com/qcluster/qcluster/internal/healthlead"
	"github.com/qcluster/qcluster/internal/join"
	"github.com/qcluster/qcluster/internal/kvnode"
	"github.com/qcluster/qcluster/internal/latest"
	"github.com/qcluster/qcluster/internal/leaderwork"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/metadata"
	"github.com/qcluster/qcluster/internal/peercall"
	"github.com/qcluster/qcluster/internal/peerrun"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
	"github.com/qcluster/qcluster/internal/security"
	"github.com/qcluster/qcluster/internal/seeds"
	"github.com/qcluster/qcluster/internal/storage"
	"github.com/qcluster/qcluster/internal/transfer"
)

// Errors returned by the SDK. They are wrapped with %w: test with errors.Is.
var (
	// ErrNoLeader: no leader is known (no majority reachable, or an
	// election is in progress).
	ErrNoLeader = sdkerr.ErrNoLeader
	// ErrClosed: the Cluster was closed.
	ErrClosed = sdkerr.ErrClosed
	// ErrNotStarted: the call needs a started Cluster.
	ErrNotStarted = sdkerr.ErrNotStarted
	// ErrAlreadyStarted: Start was called twice.
	ErrAlreadyStarted = errors.New("qcluster: already started")
	// ErrNotLeader: the call must be made on the leader.
	ErrNotLeader = sdkerr.ErrNotLeader
	// ErrUnknownPeer: no member has that identifier.
	ErrUnknownPeer = sdkerr.ErrUnknownPeer
	// ErrTransferFailed: the peer chosen to take over leadership did not
	// (it is down or far behind); this peer leads on.
	ErrTransferFailed = sdkerr.ErrTransferFailed
	// ErrConflict: a membership change conflicts with the members, such as
	// a join with an identifier or address another member uses, or a
	// removal that would leave no voter.
	ErrConflict = sdkerr.ErrConflict
	// ErrWrongCluster: a join request names another cluster.
	ErrWrongCluster = sdkerr.ErrWrongCluster
	// ErrInvalidMember: a join request has an invalid identifier, host or
	// port.
	ErrInvalidMember = sdkerr.ErrInvalidMember
	// ErrInvalidMetadata: metadata cannot be encoded as JSON or exceeds
	// MaxMetadataSize.
	ErrInvalidMetadata = sdkerr.ErrInvalidMetadata
	// ErrMasterless: the call needs leader mode.
	ErrMasterless = sdkerr.ErrMasterless
	// ErrWouldLoseQuorum: removing that voter would leave voters of which
	// fewer than a majority are alive, so the cluster could not elect a
	// leader (see RemovePeer). It matches ErrConflict too.
	ErrWouldLoseQuorum = sdkerr.ErrWouldLoseQuorum
)

// MaxMetadataSize is the largest metadata a member may have, encoded as
// JSON (64 KiB). Larger values are refused with ErrInvalidMetadata. Gossip
// carries up to 509 bytes of it inside memberlist's node meta and fetches
// larger metadata from its owner; in leader mode the Raft log carries it.
const MaxMetadataSize = membership.MaxMetaSize

// Peer is a member of the cluster: where its QCluster port is, its unique
// identifier and the metadata the config gives for it.
type Peer struct {
	// Host and Port reach the peer's QCluster port (raft and HTTP API).
	Host string `json:"host"`
	Port int    `json:"port"`
	// Identifier is the peer's unique name.
	Identifier string `json:"identifier"`
	// Metadata is the peer's custom metadata. It is shared: do not modify it.
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Addr returns host:port.
func (p Peer) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Role is a peer's role in the election.
type Role int

// Roles.
const (
	RoleFollower Role = iota
	RolePreCandidate
	RoleCandidate
	RoleLeader
)

// RoleNone is the role of every peer of a masterless cluster: it takes no
// part in any election.
const RoleNone Role = -1

// String returns "follower", "pre-candidate", "candidate", "leader" or
// "none".
func (r Role) String() string {
	if r == RoleNone {
		return "none"
	}
	return consensus.Role(r).String()
}

// MarshalText encodes the role as its name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// State is a peer's view of the cluster at one instant, as Watch reports it.
type State struct {
	// Identifier names this peer.
	Identifier string `json:"identifier"`
	// Role is this peer's Raft role. A leader whose lease has lapsed keeps
	// RoleLeader until it steps down, with IsLeader false.
	Role Role `json:"role"`
	// Term is the current term. While IsLeader is true it is a fencing
	// token: strictly greater than any earlier leader's.
	Term uint64 `json:"term"`
	// Leader is the known leader; valid only when HasLeader is true.
	Leader Peer `json:"leader"`
	// HasLeader reports whether a leader is known.
	HasLeader bool `json:"has_leader"`
	// IsLeader reports whether this peer held the lease when the State was
	// taken.
	IsLeader bool `json:"is_leader"`
	// Index increases by one with every change an observer can see.
	Index uint64 `json:"index"`
}

// snapshot is the immutable state behind IsLeader and Leader.
type snapshot struct {
	view   consensus.View
	self   *Peer
	leader *Peer // resolved view.Lead, nil when unknown
	closed bool

	// at and atNode anchor the estimate of the node clock (nodeNow): at
	// is a reading of time.Now, atNode a reading of the node clock taken
	// right after it. The node loop publishes a new snapshot, with a new
	// anchor, at every tick.
	at     stamp
	atNode time.Duration
}

// stamp is one reading of time.Now as its two clocks: mono, the monotonic
// reading (since Cluster.base), which stops while the machine is suspended,
// and wall, the wall clock (Unix nanoseconds), which counts suspend but can
// be stepped.
type stamp struct {
	mono time.Duration
	wall int64
}

// nodeNow estimates the node clock at now, a stamp read after s was
// loaded, without reading it (clock.Anchor.NodeNow says why it never lags).
func (s *snapshot) nodeNow(now stamp) time.Duration {
	return clock.Anchor{Mono: s.at.mono, Wall: s.at.wall, Node: s.atNode}.NodeNow(now.mono, now.wall)
}

// Cluster is one QCluster peer. Create it with New, then Start it.
// Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	self   *Peer // from the config
	selfID uint64
	base   time.Time // origin of stamp.mono
	// clock is the node clock (consensus.NewClock), the one views are in.
	clock func() time.Duration

	// reg is the member registry (leader mode): the founders from the
	// config until the log says more. regChanged is closed and replaced at
	// every change (under regMu).
	reg        atomic.Pointer[registry.State]
	regMu      sync.Mutex
	regChanged chan struct{}

	// kv is the replicated key-value store (leader mode; see kvwire.go),
	// kvAPI its HTTP API adapter.
	kv    *kvnode.Node
	kvAPI *kvnode.API

	// selfMeta is this peer's current metadata (SetMetadata).
	selfMeta atomic.Pointer[map[string]any]
	// ownMetaLogged is this peer's metadata as the last committed log entry
	// about it carried it since Start (nil: none yet); see
	// ownMetadataSettled.
	ownMetaLogged atomic.Pointer[map[string]any]

	snap    atomic.Pointer[snapshot]
	watch   *latest.Fanout[State] // behind Watch (newWatchers)
	tenures *leaderwork.Tracker   // leader-scoped work (leaderwork.go), ended by onView
	events  eventHub
	metrics peerMetrics

	gossipMeta metadata.Cache // members' gossip metadata, decoded

	seeds *seeds.Queue   // gossip addresses waiting to be joined
	joins *join.Protocol // the join protocol (internal/join; leader mode)

	clientOnce sync.Once
	client     *peercall.Client   // requests to other peers (see call)
	sec        *security.Settings // TLS and gossip keys (set by Start)

	// health is the application's health check (Config.HealthCheck).
	health *health.Check
	// healthLead is health-tied leadership (internal/healthlead): it
	// applies health to the election and knows, from gossip, which members
	// fail theirs (a follower does not name such a leader: leaderIn).
	healthLead *healthlead.Leadership

	// gossipTweak, when set (tests), adjusts the gossip config.
	gossipTweak func(*membership.Config)

	// mode is leader mode or masterless mode (Config.Mode).
	mode mode

	mu      sync.Mutex // guards started and closed
	started bool
	closed  bool

	// run is what Start built (nil before). It is an atomic, not guarded
	// by mu: the goroutines Close waits for read it, and Close holds mu.
	run    atomic.Pointer[peerrun.Running]
	wg     sync.WaitGroup // every goroutine Start (and run) started
	runErr atomic.Pointer[error]
	done   chan struct{}
}

// New checks cfg and returns an unstarted Cluster. The config is copied.
func New(cfg Config) (*Cluster, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("peer", cfg.Identifier)
	md, err := metadata.Normalize(cfg.Metadata)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrInvalidConfig, err)
	}
	cfg.Metadata = md
	for i := range cfg.Peers {
		if cfg.Peers[i].Metadata, err = metadata.Normalize(cfg.Peers[i].Metadata); err != nil {
			return nil, fmt.Errorf("%w: peers[%d].metadata: %w", ErrInvalidConfig, i, err)
		}
	}
	c := &Cluster{
		cfg:        cfg,
		log:        log,
		base:       time.Now(),
		clock:      consensus.NewClock(),
		regChanged: make(chan struct{}),
		seeds:      seeds.New(cfg.Identifier, log),
		done:       make(chan struct{}),
		health:     health.New(cfg.HealthCheck),
	}
	host, port := cfg.AdvertiseHostPort()
	c.self = &Peer{Host: host, Port: port, Identifier: cfg.Identifier, Metadata: cfg.Metadata}
	c.selfID = NodeID(cfg.Identifier)
	c.selfMeta.Store(&cfg.Metadata)
	c.reg.Store(c.foundingRegistry())
	s := &snapshot{self: c.self}
	s.at, s.atNode = c.anchor()
	c.snap.Store(s)
	c.watch = newWatchers()
	c.tenures = leaderwork.NewTracker(cfg.Identifier, tenureLease{c}, ErrClosed)
	c.joins = join.New(c.joinDeps())
	c.healthLead = healthlead.New(c.healthLeadDeps())
	c.mode = newMode(c)
	c.metrics = newPeerMetrics(c)
	c.kv = newKVNode(c)
	c.kvAPI = kvnode.NewAPI(c.kv, apibackend.ToAPIError)
	return c, nil
}

// isEmpty reports whether store holds no Raft state at all (a new peer).
func isEmpty(store storage.Storage) (bool, error) { return peerrun.IsEmpty(store) }

// loadRegistry sets the registry and the KV store from the stored
// snapshot; the committed entries after it are applied again when the node
// starts.
func (c *Cluster) loadRegistry(store storage.Storage) error {
	r, kvData, err := peerrun.LoadSnapshot(store, c.cfg.DataDir)
	if err != nil || r == nil {
		return err // r == nil: a cluster founded before the registry was replicated
	}
	if kvData != nil {
		if err := c.kv.Store().Restore(kvData); err != nil {
			return fmt.Errorf("qcluster: data_dir %q: the stored key-value store cannot be decoded: %w", c.cfg.DataDir, err)
		}
	}
	c.reg.Store(r)
	return nil
}

// Done returns a channel that is closed when the Cluster has been closed
// (Close, or Leave).
func (c *Cluster) Done() <-chan struct{} { return c.done }

// Err returns the error that stopped the peer on its own (a storage
// failure), or nil.
func (c *Cluster) Err() error {
	if p := c.runErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Self returns this peer: its address and its current metadata (as the
// registry records it in leader mode, once this peer is a member).
func (c *Cluster) Self() Peer {
	if p, ok := c.mode.registered(c.cfg.Identifier); ok {
		return p
	}
	p := *c.self
	p.Metadata = c.selfMetadata()
	return p
}

// selfMetadata returns this peer's current metadata.
func (c *Cluster) selfMetadata() map[string]any { return *c.selfMeta.Load() }

// Config returns the effective configuration (defaults filled in).
func (c *Cluster) Config() Config { return c.cfg }

// IsLeader reports whether this peer is the leader and holds the leader
// lease right now. At most one peer of a cluster returns true at any
// instant. It takes no lock, does no I/O and does not allocate.
//
// The lease is judged by the node clock, which on Linux keeps counting
// while the machine is suspended (CLOCK_BOOTTIME): a leader whose machine
// slept, or whose process was stopped, for longer than its lease wakes up
// with IsLeader false. On other systems the node clock is Go's monotonic
// clock, which may stop while the machine sleeps: there, do not let a
// leader's machine sleep (see consensus.NewClock for the details).
func (c *Cluster) IsLeader() bool {
	s := c.snap.Load()
	return !s.closed && s.view.IsLeaderAt(s.nodeNow(c.stamp()))
}

// reportedLeader is the leader this peer reports at now, the one rule
// behind Leader, State and Watch: itself while it holds the lease, or the
// leader it heard from within an election timeout, unless gossip says that
// leader's health check fails (it holds no lease and is handing over). It
// takes no lock and does not allocate.
func (c *Cluster) reportedLeader(v *consensus.View, now time.Duration) (uint64, bool) {
	id, ok := v.LeaderAt(now, time.Duration(c.cfg.ElectionTimeout))
	return id, ok && !c.healthLead.LeaderFailing(id)
}

// leaderIn returns the leader s lets this peer report at now.
func (c *Cluster) leaderIn(s *snapshot, now time.Duration) (*Peer, bool) {
	if s.closed || s.leader == nil {
		return nil, false
	}
	if _, ok := c.reportedLeader(&s.view, now); !ok {
		return nil, false
	}
	return s.leader, true
}

// now estimates the node clock, which views are stamped with, at this
// instant (see snapshot.nodeNow).
func (c *Cluster) now() time.Duration { return c.snap.Load().nodeNow(c.stamp()) }

// stamp reads time.Now.
func (c *Cluster) stamp() stamp {
	t := time.Now()
	return stamp{mono: t.Sub(c.base), wall: t.UnixNano()}
}

// anchor reads time.Now and then the node clock, for a snapshot.
func (c *Cluster) anchor() (stamp, time.Duration) {
	at := c.stamp()
	return at, c.clock()
}

// Leader returns the current leader, or false when none is known: no
// majority is reachable, an election is in progress, or this peer has not
// heard from the leader within an election timeout. The returned Peer's
// Metadata is shared and must not be modified. It takes no lock and does not
// allocate.
func (c *Cluster) Leader() (Peer, bool) {
	s := c.snap.Load()
	if p, ok := c.leaderIn(s, s.nodeNow(c.stamp())); ok {
		return *p, true
	}
	return Peer{}, false
}

// Term returns the current term.
func (c *Cluster) Term() uint64 { return c.snap.Load().view.Term }

// State returns this peer's view of the cluster now, taken from one
// snapshot at one instant (as IsLeader and Leader would answer). Index is
// that of the last change published to watchers.
func (c *Cluster) State() State {
	st, _ := c.stateNow()
	return st
}

// stateNow evaluates one snapshot at one instant, and returns the snapshot
// too, for callers that show more of it.
func (c *Cluster) stateNow() (State, *snapshot) {
	idx := c.watch.Index()
	s := c.snap.Load()
	now := s.nodeNow(c.stamp())
	st := State{
		Identifier: c.cfg.Identifier,
		Role:       c.mode.role(s.view),
		Term:       s.view.Term,
		Index:      idx,
		IsLeader:   !s.closed && s.view.IsLeaderAt(now),
	}
	if p, ok := c.leaderIn(s, now); ok {
		st.Leader, st.HasLeader = *p, true
	}
	return st, s
}

// WaitForLeader blocks until a leader is known and returns it, or returns
// ctx's error, or ErrClosed.
func (c *Cluster) WaitForLeader(ctx context.Context) (Peer, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the Watch subscription
	for st := range c.Watch(wctx) {
		// Watch publishes on the peer's ticks; the leader it names must
		// still hold at this instant (a lease may have just run out).
		if p, ok := c.Leader(); st.HasLeader && ok {
			return p, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return Peer{}, fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	return Peer{}, ErrClosed
}

// Transfer hands leadership to the peer with the given identifier (or, when
// it is empty, to the best other voter: one that is replicating and
// up to date) and waits until it leads. This peer's lease ends at once.
// It must be called on the leader (ErrNotLeader). When the target does not
// take over (it is down or far behind), raft gives up after an election
// timeout, this peer earns its lease again and Transfer returns
// ErrTransferFailed; so it does when another peer takes over instead of
// the target named (a follower whose election timer ran out during the
// hand-over won an election).
func (c *Cluster) Transfer(ctx context.Context, identifier string) error {
	var target uint64
	if identifier != "" {
		id, ok := c.reg.Load().ID(identifier)
		if !ok || id == c.selfID {
			return fmt.Errorf("%w: %q is not another member", ErrUnknownPeer, identifier)
		}
		target = id
	}
	_, err := c.transfer(ctx, target, nil)
	return err
}

// Resign hands leadership to the best other voter without waiting for an
// election timeout, and waits until another peer leads. A voter that does
// not take over is given up for the next best. It must be called on the
// leader (ErrNotLeader); it returns ErrUnknownPeer when there is no other
// voter, ErrTransferFailed when none took over.
func (c *Cluster) Resign(ctx context.Context) error { return transfer.Resign(ctx, c.transferDeps()) }

// transfer starts one hand-over to target (0: the best voter not in tried)
// and waits for its outcome; it returns the target it chose
// (transfer.Start).
func (c *Cluster) transfer(ctx context.Context, target uint64, tried map[uint64]bool) (uint64, error) {
	return transfer.Start(ctx, c.transferDeps(), target, tried)
}

// transferDeps is what a hand-over needs from c.
func (c *Cluster) transferDeps() transfer.Deps {
	return transfer.Deps{
		Node:    c.node,
		Failing: c.healthLead.Failing,
		Name:    func(id uint64) string { return c.peer(id).Identifier },
		Unreachable: func(id uint64) bool {
			r := c.run.Load()
			return r != nil && r.Transport != nil && r.Transport.Down(id)
		},
		Watch: func(ctx context.Context) iter.Seq[transfer.Leadership] {
			return func(yield func(transfer.Leadership) bool) {
				for st := range c.Watch(ctx) {
					var other string
					if st.HasLeader && st.Leader.Identifier != c.cfg.Identifier {
						other = st.Leader.Identifier
					}
					if !yield(transfer.Leadership{Other: other, Self: st.IsLeader}) {
						return
					}
				}
			}
		},
	}
}

// onView runs on the node goroutine: it publishes the snapshot behind
// IsLeader/Leader and the events behind Watch.
func (c *Cluster) onView(v consensus.View, now time.Duration) {
	prev := c.snap.Load()
	if prev.closed {
		return
	}
	c.metrics.ObserveView(v)
	// A new snapshot at every call (every tick), changed or not: its
	// anchor keeps IsLeader's estimate of the node clock from
	// extrapolating far (snapshot.nodeNow).
	s := &snapshot{view: v, self: c.self, leader: prev.leader}
	if !prev.view.Equal(v) {
		s.leader = nil
		if v.Lead != 0 {
			s.leader = c.peer(v.Lead)
		}
	}
	s.at, s.atNode = c.anchor()
	if !c.snap.CompareAndSwap(prev, s) {
		return // closed meanwhile: publishClosed's snapshot stays
	}
	// Before the messages of this view leave (consensus.Loop.send): work
	// scoped to a lease this view no longer holds ends here.
	c.tenures.Check()
	st := State{Identifier: c.cfg.Identifier, Role: Role(v.Role), Term: v.Term, IsLeader: v.IsLeaderAt(now)}
	if id, ok := c.reportedLeader(&v, now); ok {
		st.Leader, st.HasLeader = *c.peer(id), true
	}
	if c.watch.Publish(st) {
		c.logChange(st)
		st.Index = c.watch.Index()
		c.events.publish(Event{Type: EventLeaderChanged, State: st})
	}
}

// refreshLeader re-resolves the published leader after a registry change
// (its metadata may have changed). It runs on the node goroutine.
func (c *Cluster) refreshLeader() {
	prev := c.snap.Load()
	if prev.closed || prev.view.Lead == 0 {
		return
	}
	if p := c.peer(prev.view.Lead); prev.leader == nil || !samePeer(prev.leader, p) {
		// Compare-and-swap: a snapshot closed meanwhile stays closed.
		c.snap.CompareAndSwap(prev, &snapshot{view: prev.view, self: c.self, leader: p, at: prev.at, atNode: prev.atNode})
	}
}

// LeadershipLogMessage is the message of the Info record a peer logs at
// every leadership change it observes (the changes Watch reports), with the
// attributes state ("leader", "follower" or "no leader"), leader and
// leader_addr (when one is known), term, role and is_leader. Tools may
// match on it.
const LeadershipLogMessage = "leadership changed"

func (c *Cluster) logChange(st State) {
	attrs := make([]slog.Attr, 0, 6)
	switch {
	case st.IsLeader:
		attrs = append(attrs, slog.String("state", "leader"))
	case st.HasLeader:
		attrs = append(attrs, slog.String("state", "follower"))
	default:
		attrs = append(attrs, slog.String("state", "no leader"))
	}
	if st.HasLeader {
		attrs = append(attrs, slog.String("leader", st.Leader.Identifier), slog.String("leader_addr", st.Leader.Addr()))
	}
	attrs = append(attrs, slog.Uint64("term", st.Term), slog.String("role", st.Role.String()), slog.Bool("is_leader", st.IsLeader))
	c.log.LogAttrs(context.Background(), slog.LevelInfo, LeadershipLogMessage, attrs...)
}

// peer resolves a node ID; an ID outside the registry gets a placeholder.
func (c *Cluster) peer(id uint64) *Peer {
	if p, ok := c.registered(id); ok {
		return p
	}
	return &Peer{Identifier: fmt.Sprintf("node-%016x", id)}
}

func (c *Cluster) publishClosed() {
	prev := c.snap.Load()
	c.snap.Store(&snapshot{view: prev.view, self: c.self, closed: true, at: prev.at, atNode: prev.atNode})
	c.tenures.Check()
	// A closed peer is a follower (none, masterless) of no leader.
	c.watch.Publish(State{Identifier: c.cfg.Identifier, Role: c.mode.role(consensus.View{}), Term: prev.view.Term})
}
