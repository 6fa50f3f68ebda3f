package qcluster

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/peerrun"
	"github.com/qcluster/qcluster/internal/raftguard"
	"github.com/qcluster/qcluster/internal/security"
	"github.com/qcluster/qcluster/internal/storage"
	"github.com/qcluster/qcluster/internal/transport"
)

// running returns what Start built (nil before Start).
func (c *Cluster) running() *peerrun.Running { return c.run.Load() }

// certNotAfter is when this peer's TLS certificate expires (false: no TLS,
// or before Start).
func (c *Cluster) certNotAfter() (time.Time, bool) {
	if r := c.run.Load(); r == nil {
		return time.Time{}, false
	}
	return c.sec.CertNotAfter()
}

// node returns the running election node (nil before Start, and in
// masterless mode).
func (c *Cluster) node() *consensus.Node {
	if r := c.run.Load(); r != nil {
		return r.Node
	}
	return nil
}

// transport returns the raft transport (nil before Start, and in
// masterless mode).
func (c *Cluster) transport() *transport.Transport {
	if r := c.run.Load(); r != nil {
		return r.Transport
	}
	return nil
}

// gossip returns the gossip membership (nil before Start).
func (c *Cluster) gossip() *membership.Membership {
	if r := c.run.Load(); r != nil {
		return r.Gossip
	}
	return nil
}

// Start binds the listen port (or uses Config.Listener), starts gossip and
// the HTTP API on it and, in leader mode, opens the durable state in
// DataDir and joins the election. A peer with no durable state whose
// configured peers already run a cluster that does not list it joins that
// cluster (self-registration, in the background: see Config); otherwise it
// founds the cluster with its configured peers. Start returns once the peer
// is running; use WaitForLeader to wait for an elected leader.
// In leader mode Start first creates DataDir with mode 0700 if it is
// missing, and refuses one another user owns (ErrInvalidConfig).
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
	if err := c.mode.prepare(); err != nil {
		return err
	}
	sec, err := security.New(c.cfg.Identifier, c.cfg.ClusterName, []string{c.cfg.ListenHost, c.self.Host},
		c.cfg.TLS, c.cfg.ClusterKey, c.cfg.GossipKey, c.cfg.ExtraGossipKeys)
	if err != nil {
		return fmt.Errorf("qcluster: %w", err)
	}
	c.sec = sec
	if err := c.metrics.Register(c.cfg.Identifier); err != nil {
		return err
	}
	r, err := c.bind()
	if err != nil {
		c.metrics.Unregister()
		return err
	}
	c.run.Store(r)
	for _, p := range c.cfg.RemotePeers() {
		c.gossipSeed(p.Addr())
	}
	if err := c.mode.start(ctx, r); err != nil {
		_ = c.stop()
		c.run.Store(nil)
		c.metrics.Unregister()
		return err
	}
	c.started = true
	return nil
}

// bind builds the serving part of a running peer, not serving yet: the
// port, gossip on it and the HTTP API.
func (c *Cluster) bind() (*peerrun.Running, error) {
	ln, err := peerrun.Listen(c.cfg.Listener, c.cfg.Addr())
	if err != nil {
		return nil, err
	}
	mux := transport.NewMux(ln, transport.MuxOptions{
		TLS:                        c.sec.ServerTLS,
		AllowHTTPWithoutClientCert: c.cfg.APIClientCerts == "optional",
		MaxConnsPerIP:              c.cfg.MaxConnsPerIP,
		Logger:                     c.log.With("component", "mux"),
	})
	g, err := c.newGossip(mux)
	if err != nil {
		ln.Close()
		return nil, err
	}
	srv := peerrun.NewHTTPServer(api.NewHandlerWithOptions(newAPIBackend(c), api.Options{
		Token:        c.cfg.APIToken,
		ProtectReads: c.cfg.APIProtectReads,
		Metrics:      c.metrics.Handler(),
		OnRequest:    c.metrics.ObserveRequest,
	}), c.log)
	return peerrun.NewRunning(mux, g, srv), nil
}

// serve starts answering on r's port: at once for a new peer (peers that
// start at the same time ask each other whether a cluster runs already:
// see join.Protocol.ExistingCluster), after its durable state is loaded
// for a restarted one (so it never answers with a term older than the one
// it had). Start calls it once.
func (c *Cluster) serve(r *peerrun.Running) {
	peerrun.Serve(r.Ctx, &c.wg, r.Mux, r.HTTP, func(ctx context.Context) { c.seeds.Run(ctx, r.Gossip) })
}

// stop tears down what Start built, in reverse (peerrun.Stop); the store
// is read last: the registry loop may have replaced it.
func (c *Cluster) stop() error {
	return c.run.Load().Stop(c.wg.Wait, func() storage.Storage { return c.run.Load().Store })
}

// Close stops the peer without leaving the cluster: it stays a member (a
// voter still counts toward the majority, and may start again with its
// data_dir), stops taking part in elections (a leader first hands
// leadership to the best other voter, as Resign does, within two election
// timeouts and at most 5 s, so the others need not wait out an election
// timeout; use Leave to leave the cluster for good, which then closes),
// stops gossip (the others see it fail, not leave), closes its port and its
// data, and waits for every goroutine it started, with one exception: a
// gossip probe that memberlist has under way ends on its own, within its
// probe timeout (about half a second with the lan profile, more under
// load). It is safe to call more than once.
func (c *Cluster) Close() error {
	c.handOverOnClose()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	defer close(c.done)
	c.publishClosed()
	var err error
	if c.started {
		err = c.stop()
	}
	c.watch.Close()
	c.events.closeAll()
	if c.started {
		c.metrics.Unregister()
		if c.client != nil {
			c.client.CloseIdleConnections()
		}
	}
	return err
}

// Addr returns the address the peer listens on (useful with port 0), or
// "" before Start.
func (c *Cluster) Addr() string {
	if r := c.run.Load(); r != nil {
		return r.Mux.Addr().String()
	}
	return ""
}

// newTransport creates the raft transport; what it receives goes to the
// node of the moment.
func (c *Cluster) newTransport() *transport.Transport {
	return transport.New(peerrun.RouteToNode(transport.Config{
		LocalID:     c.selfID,
		ClusterName: c.cfg.ClusterName,
		TLS:         c.sec.ClientTLS,
		NodeID:      NodeID,
		Identifier:  c.memberIdentifier,
		Logger:      c.log.With("component", "transport"),
	}, c.node))
}

// newNode creates the election node over store (voters and bootstrap found
// a new cluster; none: wait to be added, or restart from store).
func (c *Cluster) newNode(store storage.Storage, tr *transport.Transport, voters []uint64, bootstrap []byte) (*consensus.Node, error) {
	return consensus.NewNode(consensus.NodeConfig{
		Core: consensus.Config{
			ID:                c.selfID,
			Voters:            voters,
			BootstrapData:     bootstrap,
			Storage:           store,
			Now:               c.clock,
			HeartbeatInterval: time.Duration(c.cfg.HeartbeatInterval),
			ElectionTimeout:   time.Duration(c.cfg.ElectionTimeout),
			Logger:            c.log,
			Hooks:             c.metrics.Hooks(),
			AcceptProposal:    raftguard.New(raftguard.Deps{Member: c.memberIdentifier, MinSessionTTL: c.MinSessionTTL}).Accept,
			Vouch:             c.vouch,
			NotCandidate:      c.cfg.HealthCheck != nil, // until the check passes
		},
		Transport:    tr,
		OnView:       c.onView,
		OnApply:      c.applyCommitted,
		OnRefused:    func(m raftpb.Message, r consensus.Refusal, _ error) { onRaftRefused(tr, m, r) },
		SnapshotData: c.snapshotData,
	})
}

// useNode publishes node's durable view, then a copy of r in which node
// (over store) is the one every call and message goes to; runNode runs
// it. It returns the copy.
func (c *Cluster) useNode(r *peerrun.Running, store storage.Storage, node *consensus.Node) *peerrun.Running {
	c.onView(node.InitialView(), c.clock())
	next := r.WithNode(store, node)
	c.run.Store(next)
	return next
}

// runNode runs r's node until r's context ends (or its nodeRun is
// cancelled); a storage failure stops the peer.
func (c *Cluster) runNode(r *peerrun.Running) {
	r.NodeRun.Start(&c.wg, r.Node, func(err error) {
		c.runErr.Store(&err)
		c.publishClosed()
		c.watch.Close() // watchers learn the peer stopped; Err says why
		c.events.closeAll()
	})
}
