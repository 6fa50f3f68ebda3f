package qcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/peerrun"
	"github.com/qcluster/qcluster/internal/storage"
	"github.com/qcluster/qcluster/internal/transport"
)

// mode is what leader mode and masterless mode do differently. New picks
// one from Config.Mode, once; nothing else asks which mode runs.
type mode interface {
	// prepare checks what Start needs before it binds the port.
	prepare() error
	// start runs the mode's part of Start: r is bound, not serving yet.
	start(ctx context.Context, r *peerrun.Running) error
	// role is this peer's role in view.
	role(v consensus.View) Role
	// registered returns the member named name from the replicated
	// registry (none in masterless mode).
	registered(name string) (Peer, bool)
	// peers lists the members (Peers), given gossip's.
	peers(gossip []membership.Member) []Member
	// gossipEvent turns a gossip event into SDK events.
	gossipEvent(ev membership.Event)
	// joined reports whether this peer is a member yet (api.Status).
	joined(v consensus.View) bool
	// noLeaderReason says why no leader is known, when health checks
	// explain it ("" otherwise).
	noLeaderReason(v consensus.View, leading bool) string
	// join adds a member (AddPeer, POST /v1/join).
	join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error)
	// removePeer removes a member (RemovePeer).
	removePeer(ctx context.Context, identifier string) error
	// leave does Leave's work before gossip is left.
	leave(ctx context.Context) error
	// commitMetadata finishes SetMetadata once gossip sent md (gerr).
	commitMetadata(ctx context.Context, md map[string]any, gerr error) error
}

// leaderMode: an elected leader, members and metadata on the Raft log.
type leaderMode struct{ c *Cluster }

// masterlessMode: no election; gossip is the membership.
type masterlessMode struct{ c *Cluster }

func newMode(c *Cluster) mode {
	if c.cfg.Mode == ModeMasterless {
		return masterlessMode{c}
	}
	return leaderMode{c}
}

func (masterlessMode) prepare() error { return nil }

// prepare creates DataDir (0700) or checks the one there.
func (l leaderMode) prepare() error { return config.PrepareDataDir(l.c.cfg.DataDir, os.Getuid()) }

// start serves at once: there is nothing durable to load.
func (m masterlessMode) start(_ context.Context, r *peerrun.Running) error {
	c := m.c
	c.serve(r)
	c.startHealth(r.Ctx)
	c.watch.Publish(State{Identifier: c.cfg.Identifier, Role: RoleNone})
	c.log.Info("peer started", "mode", ModeMasterless, "addr", r.Mux.Addr().String(), "peers", len(c.cfg.RemotePeers()))
	return nil
}

// start opens the durable state, founds, joins or rejoins the cluster,
// and runs the node and the registry loop.
func (l leaderMode) start(ctx context.Context, r *peerrun.Running) error {
	c := l.c
	r.Mux.Handle(transport.RaftPreamble, func(conn net.Conn) {
		if tr := c.transport(); tr != nil && c.node() != nil {
			tr.HandleStream(conn)
		} else {
			conn.Close() // not ready yet; the peer dials again
		}
	})
	store, err := storage.Open(c.cfg.DataDir, storage.Options{Logger: c.log, OnSave: c.metrics.ObserveFsync})
	if err != nil {
		return fmt.Errorf("qcluster: open data_dir %q: %w", c.cfg.DataDir, err)
	}
	fresh, err := isEmpty(store)
	if err != nil {
		store.Close()
		return fmt.Errorf("qcluster: read data_dir %q: %w", c.cfg.DataDir, err)
	}
	var voters []uint64
	var bootstrap []byte
	joining, blind := false, false
	if fresh {
		c.serve(r)
		joining, blind = c.joins.ExistingCluster(ctx)
		if !joining {
			for id := range c.reg.Load().All() {
				voters = append(voters, id)
			}
			bootstrap = c.reg.Load().Snapshot()
		}
	} else if err := c.loadRegistry(store); err != nil {
		store.Close()
		return err
	}
	tr := c.newTransport()
	node, err := c.newNode(store, tr, voters, bootstrap)
	if err != nil {
		tr.Close()
		store.Close()
		return fmt.Errorf("qcluster: %w", err)
	}
	for id, p := range c.reg.Load().All() {
		if id != c.selfID {
			tr.SetPeer(id, p.Addr())
		}
	}
	r = c.useNode(r.WithTransport(tr), store, node)
	if !fresh {
		c.serve(r)
	}
	c.runNode(r)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.joins.Run(r.Ctx, joining, blind)
	}()
	c.kv.StartUpkeep(r.Ctx, &c.wg)
	c.startHealth(r.Ctx)
	c.log.Info("peer started", "addr", r.Mux.Addr().String(), "data_dir", c.cfg.DataDir,
		"members", c.reg.Load().Len(), "joining", joining, "heartbeat", c.cfg.HeartbeatInterval.String(),
		"election_timeout", c.cfg.ElectionTimeout.String())
	return nil
}

func (masterlessMode) role(consensus.View) Role { return RoleNone }

func (leaderMode) role(v consensus.View) Role { return Role(v.Role) }

func (masterlessMode) registered(string) (Peer, bool) { return Peer{}, false }

func (l leaderMode) registered(name string) (Peer, bool) {
	if p, ok := l.c.reg.Load().Get(NodeID(name)); ok && p.Identifier == name {
		return *peerOf(p), true
	}
	return Peer{}, false
}

// joined: gossip has joined another member (or there is none to join).
func (m masterlessMode) joined(consensus.View) bool { return m.c.gossipJoined() }

// joined: this peer is a voter or a learner.
func (l leaderMode) joined(v consensus.View) bool {
	_, a := slices.BinarySearch(v.Voters, l.c.selfID)
	_, b := slices.BinarySearch(v.Learners, l.c.selfID)
	return a || b
}

func (masterlessMode) noLeaderReason(consensus.View, bool) string { return "" }

func (l leaderMode) noLeaderReason(v consensus.View, leading bool) string {
	return l.c.healthLead.NoLeaderReason(v.Voters, v.Lead, leading)
}
