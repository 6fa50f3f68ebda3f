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
// backed by a leader lease judged against the monotonic clock at the moment
// of the call, so two peers never both see IsLeader() == true, even across
// partitions, paused processes or stalled disks.
package qcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/storage"
	"github.com/qcluster/qcluster/internal/transport"
)

// Errors returned by the SDK. They are wrapped with %w: test with errors.Is.
var (
	// ErrNoLeader: no leader is known (no majority reachable, or an
	// election is in progress).
	ErrNoLeader = errors.New("qcluster: no leader")
	// ErrClosed: the Cluster was closed.
	ErrClosed = errors.New("qcluster: closed")
	// ErrNotStarted: the call needs a started Cluster.
	ErrNotStarted = errors.New("qcluster: not started")
	// ErrAlreadyStarted: Start was called twice.
	ErrAlreadyStarted = errors.New("qcluster: already started")
	// ErrNotLeader: the call must be made on the leader.
	ErrNotLeader = errors.New("qcluster: not the leader")
	// ErrUnknownPeer: no member has that identifier.
	ErrUnknownPeer = errors.New("qcluster: unknown peer")
	// ErrTransferFailed: the peer chosen to take over leadership did not
	// (it is down or far behind); this peer leads on.
	ErrTransferFailed = errors.New("qcluster: leadership transfer failed")
)

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

// String returns "follower", "pre-candidate", "candidate" or "leader".
func (r Role) String() string { return consensus.Role(r).String() }

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
}

// Cluster is one QCluster peer. Create it with New, then Start it.
// Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	self   *Peer
	selfID uint64
	peers  map[uint64]*Peer // every configured member, self included
	idents map[string]uint64
	base   time.Time // origin of the monotonic clock

	snap    atomic.Pointer[snapshot]
	watch   watchers
	metrics *metrics

	mu      sync.Mutex // guards the lifecycle below
	started bool
	closed  bool
	node    *consensus.Node
	store   storage.Storage
	tr      *transport.Transport
	mux     *transport.Mux
	httpSrv *http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	runErr  atomic.Pointer[error]
}

// New checks cfg and returns an unstarted Cluster. The config is copied.
func New(cfg Config) (*Cluster, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("peer", cfg.Identifier)
	c := &Cluster{
		cfg:    cfg,
		log:    log,
		peers:  make(map[uint64]*Peer),
		idents: make(map[string]uint64),
		base:   time.Now(),
	}
	host, port := cfg.advertise()
	c.self = &Peer{Host: host, Port: port, Identifier: cfg.Identifier, Metadata: cfg.Metadata}
	c.selfID = NodeID(cfg.Identifier)
	c.peers[c.selfID] = c.self
	c.idents[cfg.Identifier] = c.selfID
	for _, p := range cfg.RemotePeers() {
		id := NodeID(p.Identifier)
		c.peers[id] = &Peer{Host: p.Host, Port: p.Port, Identifier: p.Identifier, Metadata: p.Metadata}
		c.idents[p.Identifier] = id
	}
	c.snap.Store(&snapshot{self: c.self})
	c.watch.init()
	c.metrics = newMetrics(c)
	return c, nil
}

// advertise returns the host and port other peers reach this one at.
func (cfg Config) advertise() (string, int) {
	host, portStr, err := net.SplitHostPort(cfg.AdvertiseAddr())
	if err != nil {
		return cfg.ListenHost, cfg.ListenPort
	}
	port, _ := strconv.Atoi(portStr)
	return host, port
}

// Start opens the durable state in DataDir, binds the listen port (or uses
// Config.Listener) and joins the election. It returns once the peer is
// running; use WaitForLeader to wait for an elected leader.
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrClosed
	case c.started:
		return ErrAlreadyStarted
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.metrics.register(c.cfg.Identifier); err != nil {
		return err
	}
	store, err := storage.Open(c.cfg.DataDir, storage.Options{Logger: c.log, OnSave: c.metrics.observeFsync})
	if err != nil {
		c.metrics.unregister()
		return fmt.Errorf("qcluster: open data_dir %q: %w", c.cfg.DataDir, err)
	}
	ln := c.cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", c.cfg.Addr())
		if err != nil {
			store.Close()
			c.metrics.unregister()
			return fmt.Errorf("qcluster: listen on %s (listen_host/listen_port): %w", c.cfg.Addr(), err)
		}
	}
	voters := make([]uint64, 0, len(c.peers))
	for id := range c.peers {
		voters = append(voters, id)
	}
	var node *consensus.Node
	tr := transport.New(transport.Config{
		LocalID:     c.selfID,
		ClusterName: c.cfg.ClusterName,
		Deliver:     func(m raftpb.Message) { node.Deliver(m) },
		Unreachable: func(id uint64) { node.ReportUnreachable(id) },
		Logger:      c.log.With("component", "transport"),
	})
	node, err = consensus.NewNode(consensus.NodeConfig{
		Core: consensus.Config{
			ID:                c.selfID,
			Voters:            voters,
			Storage:           store,
			Now:               c.now,
			HeartbeatInterval: time.Duration(c.cfg.HeartbeatInterval),
			ElectionTimeout:   time.Duration(c.cfg.ElectionTimeout),
			Logger:            c.log,
			Hooks:             c.metrics.hooks(),
		},
		Transport: tr,
		OnView:    c.onView,
	})
	if err != nil {
		tr.Close()
		ln.Close()
		store.Close()
		c.metrics.unregister()
		return fmt.Errorf("qcluster: %w", err)
	}
	c.metrics.node.Store(node)
	c.metrics.tr.Store(tr)
	for id, p := range c.peers {
		if id != c.selfID {
			tr.SetPeer(id, p.Addr())
		}
	}
	mux := transport.NewMux(ln, transport.MuxOptions{Logger: c.log.With("component", "mux")})
	mux.Handle(transport.RaftPreamble, tr.HandleStream)
	c.httpSrv = &http.Server{
		Handler: api.NewHandlerWithOptions(newAPIBackend(c), api.Options{
			Token:     c.cfg.APIToken,
			Metrics:   c.metrics.handler(),
			OnRequest: c.metrics.observeRequest,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
	c.onView(node.InitialView(), c.now())
	runCtx, cancel := context.WithCancel(context.Background())
	c.node, c.store, c.tr, c.mux, c.cancel = node, store, tr, mux, cancel
	c.started = true
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		if err := node.Run(runCtx); err != nil {
			c.runErr.Store(&err)
			c.publishClosed()
			c.watch.closeAll() // watchers learn the peer stopped; Err says why
		}
	}()
	go func() {
		defer c.wg.Done()
		_ = mux.Serve()
	}()
	go func() {
		defer c.wg.Done()
		_ = c.httpSrv.Serve(mux.HTTPListener())
	}()
	c.log.Info("peer started", "addr", mux.Addr().String(), "data_dir", c.cfg.DataDir,
		"peers", len(c.peers)-1, "heartbeat", c.cfg.HeartbeatInterval.String(),
		"election_timeout", c.cfg.ElectionTimeout.String())
	return nil
}

// Close stops the peer: it leaves the election (a leader's lease simply
// runs out; use Transfer first for an immediate hand-over), closes its port
// and its data, and waits for every goroutine it started. It is safe to call
// more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.publishClosed()
	if !c.started {
		c.watch.closeAll()
		return nil
	}
	c.cancel()
	var errs []error
	if err := c.httpSrv.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := c.mux.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	if err := c.tr.Close(); err != nil {
		errs = append(errs, err)
	}
	c.wg.Wait()
	if err := c.store.Close(); err != nil {
		errs = append(errs, err)
	}
	c.watch.closeAll()
	c.metrics.unregister()
	return errors.Join(errs...)
}

// Addr returns the address the peer listens on (useful with port 0), or
// "" before Start.
func (c *Cluster) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mux == nil {
		return ""
	}
	return c.mux.Addr().String()
}

// Err returns the error that stopped the peer on its own (a storage
// failure), or nil.
func (c *Cluster) Err() error {
	if p := c.runErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Self returns this peer.
func (c *Cluster) Self() Peer { return *c.self }

// Config returns the effective configuration (defaults filled in).
func (c *Cluster) Config() Config { return c.cfg }

// IsLeader reports whether this peer is the leader and holds the leader
// lease right now. At most one peer of a cluster returns true at any
// instant. It takes no lock, does no I/O and does not allocate.
func (c *Cluster) IsLeader() bool {
	s := c.snap.Load()
	return !s.closed && s.view.IsLeaderAt(c.now())
}

// leaderIn returns the leader s lets this peer report at now.
func (c *Cluster) leaderIn(s *snapshot, now time.Duration) (*Peer, bool) {
	if s.closed || s.leader == nil {
		return nil, false
	}
	if _, ok := s.view.LeaderAt(now, time.Duration(c.cfg.ElectionTimeout)); !ok {
		return nil, false
	}
	return s.leader, true
}

// now reads the monotonic clock that views are stamped with.
func (c *Cluster) now() time.Duration { return time.Since(c.base) + time.Second }

// Leader returns the current leader, or false when none is known: no
// majority is reachable, an election is in progress, or this peer has not
// heard from the leader within an election timeout. The returned Peer's
// Metadata is shared and must not be modified. It takes no lock and does not
// allocate.
func (c *Cluster) Leader() (Peer, bool) {
	if p, ok := c.leaderIn(c.snap.Load(), c.now()); ok {
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
	idx := c.watch.index()
	s, now := c.snap.Load(), c.now()
	st := State{
		Identifier: c.cfg.Identifier,
		Role:       Role(s.view.Role),
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
	ch := c.Watch(ctx)
	for st := range ch {
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
// up to date) and waits until another peer leads. This peer's lease ends at
// once. It must be called on the leader (ErrNotLeader). When the target
// does not take over (it is down or far behind), raft gives up after an
// election timeout, this peer earns its lease again and Transfer returns
// ErrTransferFailed.
func (c *Cluster) Transfer(ctx context.Context, identifier string) error {
	var target uint64
	if identifier != "" {
		id, ok := c.idents[identifier]
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
func (c *Cluster) Resign(ctx context.Context) error {
	tried := map[uint64]bool{}
	for {
		target, err := c.transfer(ctx, 0, tried)
		if !errors.Is(err, ErrTransferFailed) {
			if len(tried) > 0 && errors.Is(err, ErrUnknownPeer) {
				return fmt.Errorf("%w: no other voter took over", ErrTransferFailed)
			}
			return err
		}
		tried[target] = true
	}
}

// transfer starts one hand-over to target (0: the best voter not in tried)
// and waits for its outcome; it returns the target it chose.
func (c *Cluster) transfer(ctx context.Context, target uint64, tried map[uint64]bool) (uint64, error) {
	c.mu.Lock()
	node := c.node
	c.mu.Unlock()
	if node == nil {
		return 0, ErrNotStarted
	}
	err := node.Do(ctx, func(core *consensus.Core) error {
		if core.View().Role != consensus.Leader {
			return ErrNotLeader
		}
		if target == 0 {
			target = core.BestTransferee(func(id uint64) bool { return tried[id] })
			if target == 0 {
				return fmt.Errorf("%w: no other voter to transfer to", ErrUnknownPeer)
			}
		}
		core.TransferLeadership(target)
		return nil
	})
	if err != nil {
		if errors.Is(err, consensus.ErrStopped) {
			return target, ErrClosed
		}
		return target, err
	}
	// Do returns once the dropped lease is published, so the first state
	// here no longer says IsLeader; seeing it again means raft gave up.
	for st := range c.Watch(ctx) {
		switch {
		case st.HasLeader && st.Leader.Identifier != c.cfg.Identifier:
			return target, nil
		case st.IsLeader:
			return target, fmt.Errorf("%w: %s did not take over", ErrTransferFailed, c.peer(target).Identifier)
		}
	}
	if ctx.Err() != nil {
		return target, ctx.Err()
	}
	return target, ErrClosed
}

// onView runs on the node goroutine: it publishes the snapshot behind
// IsLeader/Leader and the events behind Watch.
func (c *Cluster) onView(v consensus.View, now time.Duration) {
	prev := c.snap.Load()
	if prev.closed {
		return
	}
	c.metrics.observeView(v)
	if !prev.view.Equal(v) {
		s := &snapshot{view: v, self: c.self}
		if v.Lead != 0 {
			s.leader = c.peer(v.Lead)
		}
		c.snap.Store(s)
	}
	st := State{Identifier: c.cfg.Identifier, Role: Role(v.Role), Term: v.Term, IsLeader: v.IsLeaderAt(now)}
	if id, ok := v.LeaderAt(now, time.Duration(c.cfg.ElectionTimeout)); ok {
		st.Leader, st.HasLeader = *c.peer(id), true
	}
	if c.watch.publish(st) {
		c.logChange(st)
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

// peer resolves a node ID; an ID outside the config gets a placeholder.
func (c *Cluster) peer(id uint64) *Peer {
	if p, ok := c.peers[id]; ok {
		return p
	}
	return &Peer{Identifier: fmt.Sprintf("node-%016x", id)}
}

func (c *Cluster) publishClosed() {
	prev := c.snap.Load()
	c.snap.Store(&snapshot{view: prev.view, self: c.self, closed: true})
	c.watch.publish(State{Identifier: c.cfg.Identifier, Role: RoleFollower, Term: prev.view.Term})
}
