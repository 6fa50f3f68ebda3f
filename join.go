package qcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/apibackend"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/join"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/metadata"
	"github.com/qcluster/qcluster/internal/peercall"
	"github.com/qcluster/qcluster/internal/peerrun"
	"github.com/qcluster/qcluster/internal/sdkerr"
	"github.com/qcluster/qcluster/internal/storage"
)

// ErrUnauthorized: a peer refused this peer's API token (Config.APIToken
// must be the same on every peer).
var ErrUnauthorized = sdkerr.ErrUnauthorized

// errNotPristine: the state holds more than the founding snapshot.
var errNotPristine = errors.New("it holds more than the founding snapshot")

// discardFounding stops the node and, if its durable state is still the
// bare founding snapshot (term 1, no vote, nothing beyond index 1), deletes
// it and starts a node that waits to be added to a cluster. Otherwise it
// starts the node again on its state and returns errNotPristine. It runs
// on the registry loop, the only place besides Start that swaps the node.
func (c *Cluster) discardFounding() error {
	run := c.run.Load()
	run.NodeRun.Stop()
	if run.Ctx.Err() != nil {
		return run.Ctx.Err() // closing
	}
	store := run.Store
	pristine, err := peerrun.IsPristine(store)
	if err != nil {
		return err
	}
	if pristine {
		opts := storage.Options{Logger: c.log, OnSave: c.metrics.ObserveFsync}
		if store, err = peerrun.Discard(store, c.cfg.DataDir, opts); err != nil {
			return err
		}
		// Close reads the store after waiting for this loop.
		c.run.Store(run.WithStore(store))
		c.setRegistry(c.foundingRegistry())
	}
	node, err := c.newNode(store, run.Transport, nil, nil)
	if err != nil {
		return err
	}
	c.runNode(c.useNode(run, store, node))
	if !pristine {
		return errNotPristine
	}
	return nil
}

// JoinErr returns why the last attempt of this peer to join a running
// cluster failed, or nil (it joined, or never had to).
func (c *Cluster) JoinErr() error { return c.joins.JoinErr() }

// AddPeer adds a member to the cluster, as a voter or as a non-voting
// learner, and waits until the change is committed: every peer then
// reports it with this host, port and metadata. Called on a follower, it
// asks the leader. A peer that is already a member at the same address is
// not added twice (no error). Errors: ErrInvalidMember, ErrConflict (the
// identifier or address belongs to another member), ErrNoLeader (none
// known within 10 election timeouts: an election is waited out),
// ErrMasterless, ctx's error.
//
// A peer normally registers itself: start it with a config that names
// itself and at least one running peer (see Config).
func (c *Cluster) AddPeer(ctx context.Context, p Peer, voter bool) error {
	_, err := c.join(ctx, api.JoinRequest{
		Identifier: p.Identifier, Host: p.Host, Port: p.Port, Metadata: p.Metadata,
		Voter: &voter, ClusterName: c.cfg.ClusterName,
	})
	return err
}

// join adds the member req describes, as the mode says.
func (c *Cluster) join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	return c.mode.join(ctx, req)
}

// join: a masterless cluster has no log to add members to.
func (masterlessMode) join(context.Context, api.JoinRequest) (api.JoinResult, error) {
	return api.JoinResult{}, fmt.Errorf("%w: members of a masterless cluster join by gossip: start the new peer with a config naming a running one", ErrMasterless)
}

// join adds the member req describes to the log, on the leader or through
// it (internal/join).
func (l leaderMode) join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	return l.c.joins.Join(ctx, req)
}

// RemovePeer removes the member named identifier from the cluster (from
// the voters or learners, and from the registry) and waits until the change
// is committed. Called on a follower, it asks the leader; removing the
// leader makes it hand leadership over first, so no election timeout is
// lost. The removed peer keeps running, but no longer takes part in
// elections (use Leave on the peer itself to also stop it).
//
// A voter is not removed when the voters that would remain could not
// elect a leader: when fewer than a majority of them are alive as gossip
// sees them now (suspect, dead or unknown members do not count). It
// returns ErrWouldLoseQuorum then (which matches ErrConflict too): bring
// the missing voters back, or remove the dead ones first.
//
// Errors: ErrUnknownPeer, ErrConflict (it is the last voter),
// ErrWouldLoseQuorum, ErrNoLeader (none known within 10 election
// timeouts: an election is waited out), ErrMasterless, ctx's error.
func (c *Cluster) RemovePeer(ctx context.Context, identifier string) error {
	return c.mode.removePeer(ctx, identifier)
}

// removePeer: a masterless cluster has no log to remove members from.
func (masterlessMode) removePeer(context.Context, string) error {
	return fmt.Errorf("%w: a masterless member leaves by gossip (Leave on the member itself)", ErrMasterless)
}

// removePeer removes a member through the log (see RemovePeer and
// internal/join).
func (l leaderMode) removePeer(ctx context.Context, identifier string) error {
	return l.c.joins.RemovePeer(ctx, identifier)
}

// inConf reports whether id is a voter or learner in the published view.
func (c *Cluster) inConf(id uint64) bool { return c.joins.InConf(id) }

// Leave leaves the cluster for good and closes the Cluster. In leader
// mode it first hands leadership over (when this peer leads), then has the
// leader remove it from the voters (or learners), and only then leaves
// gossip, so the others see it as "left" rather than failed and no
// election timeout is lost. In masterless mode it leaves gossip, and the
// others move its keys at once. The Cluster is closed when Leave returns,
// even on error. The last voter of a cluster cannot leave it (ErrConflict);
// Close it instead.
func (c *Cluster) Leave(ctx context.Context) error {
	err := c.leaveCluster(ctx)
	if cerr := c.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// leaveCluster does Leave's work but the closing.
func (c *Cluster) leaveCluster(ctx context.Context) error {
	c.mu.Lock()
	started, closed, g := c.started, c.closed, c.gossip()
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !started {
		return ErrNotStarted
	}
	if err := c.mode.leave(ctx); err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, gossipTimeout)
	defer cancel()
	if err := g.Leave(gctx); err != nil && !errors.Is(err, membership.ErrClosed) {
		return fmt.Errorf("qcluster: leave gossip: %w", err)
	}
	c.log.Info("left the cluster")
	return nil
}

// SetMetadata replaces this peer's metadata, at run time, and waits until
// every peer can see it: in leader mode, until the change is committed
// through the leader (then every peer reports it identically, and Leader
// returns it when this peer leads); in masterless mode, until gossip
// has sent it. The metadata must encode as JSON in at most MaxMetadataSize
// bytes (ErrInvalidMetadata otherwise). When no leader is known, the
// change is kept and committed once one is (the call returns ErrNoLeader,
// or ctx's error if ctx ends first). A restarted peer takes its metadata
// from its config again.
func (c *Cluster) SetMetadata(ctx context.Context, md map[string]any) error {
	md, err := metadata.Normalize(md)
	if err != nil {
		return err
	}
	c.mu.Lock()
	started, g := c.started, c.gossip()
	c.mu.Unlock()
	if !started {
		return ErrNotStarted
	}
	c.selfMeta.Store(&md)
	c.events.touch() // Peers shows it (masterless) before gossip confirms it
	raw, _ := metadata.Encode(md)
	gctx, cancel := context.WithTimeout(ctx, gossipTimeout)
	gerr := g.SetMeta(gctx, raw)
	cancel()
	return c.mode.commitMetadata(ctx, md, gerr)
}

// leave: a masterless member has only gossip to leave.
func (masterlessMode) leave(context.Context) error { return nil }

// leave removes this peer from the voters or learners first.
func (l leaderMode) leave(ctx context.Context) error { return l.c.joins.Leave(ctx) }

// commitMetadata: in masterless mode, gossip sending md (gerr) is all.
func (masterlessMode) commitMetadata(_ context.Context, _ map[string]any, gerr error) error {
	if gerr != nil && !errors.Is(gerr, membership.ErrNotConfirmed) {
		return gerr
	}
	return nil
}

// commitMetadata commits md to the log, through the leader, and waits
// until the registry holds it.
func (l leaderMode) commitMetadata(ctx context.Context, md map[string]any, _ error) error {
	return l.c.joins.CommitMetadata(ctx, md)
}

// ownMetadataSettled reports whether every peer reports this peer's current
// metadata (see join.Protocol.MetadataSettled).
func (c *Cluster) ownMetadataSettled() bool { return c.joins.MetadataSettled() }

// retryEvery is how long a membership change waits for its entry to be
// applied before proposing it again.
func (c *Cluster) retryEvery() time.Duration { return c.joins.RetryEvery() }

// joinDeps is what the join protocol needs from c.
func (c *Cluster) joinDeps() join.Deps {
	return join.Deps{
		Identifier:        c.cfg.Identifier,
		ID:                c.selfID,
		Host:              c.self.Host,
		Port:              c.self.Port,
		ClusterName:       c.cfg.ClusterName,
		DataDir:           c.cfg.DataDir,
		Voter:             c.cfg.IsVoter(),
		Seeds:             c.cfg.RemotePeers(),
		ElectionTimeout:   time.Duration(c.cfg.ElectionTimeout),
		DeadMemberTimeout: time.Duration(c.cfg.DeadMemberTimeout),
		MinVoters:         c.cfg.MinVoters,
		Log:               c.log,
		Metadata:          c.selfMetadata,
		MetadataLogged:    c.ownMetaLogged.Load,
		Normalize:         metadata.Normalize,
		Leader: func() (api.Peer, bool) {
			l, ok := c.Leader()
			if !ok {
				return api.Peer{}, false
			}
			return toAPIPeer(l), true
		},
		IsLeader: c.IsLeader,
		WaitForLeader: func(ctx context.Context) error {
			_, err := c.WaitForLeader(ctx)
			return err
		},
		Resign:          c.Resign,
		View:            func() consensus.View { return c.snap.Load().view },
		Registry:        c.reg.Load,
		RegistryChanged: c.registryChanged,
		Node:            c.node,
		Done:            c.done,
		Gossip:          c.gossipMembers,
		Members: func() []api.Member {
			ms := c.Peers()
			out := make([]api.Member, 0, len(ms))
			for _, m := range ms {
				out = append(out, toAPIMember(m))
			}
			return out
		},
		Name: func(id uint64) string { return c.peer(id).Identifier },
		Call: c.call,
		Learned: func(id uint64, addr string) {
			c.transport().SetPeer(id, addr)
			c.gossipSeed(addr)
		},
		DiscardFounding: c.discardFounding,
	}
}

// call sends one API request to the peer at addr, with this peer's API
// token, and decodes the JSON answer into out (when not nil). API errors
// come back as the SDK's errors.
func (c *Cluster) call(ctx context.Context, addr, method, path string, body, out any) error {
	return c.peerClient().Call(ctx, addr, method, path, body, out)
}

// peerClient is the client for requests to other peers (internal/peercall).
func (c *Cluster) peerClient() *peercall.Client {
	c.clientOnce.Do(func() {
		var tlsCfg *tls.Config
		if c.sec != nil {
			tlsCfg = c.sec.ClientTLS
		}
		c.client = peercall.New(c.cfg.APIToken, tlsCfg, apibackend.FromAPIError)
	})
	return c.client
}
