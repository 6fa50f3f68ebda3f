// Package join is the membership protocol of a leader-mode peer: how a new
// peer finds out whether it must join a running cluster or found one, how
// it registers itself through a configured peer (and joins again when the
// cluster removed it while it was down), and how the leader adds and
// removes members, commits a member's metadata and removes members that
// stayed dead. Requests to other peers (a join, a request forwarded to the
// leader, a status probe) go through the one peer client (Deps.Call,
// internal/peercall over internal/httpclient); waits between retries come
// from internal/backoff.
//
// The protocol holds no pointer to the peer: everything it reads or
// changes comes through Deps. Its errors are the SDK's (internal/sdkerr).
package join

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// Timings of self-registration and membership changes.
const (
	// probeTimeout bounds the question a new peer asks its configured
	// peers at start: is a cluster already running?
	probeTimeout = 2 * time.Second
	// joinBackoffMin and joinBackoffMax bound the wait between join
	// attempts.
	joinBackoffMin = 200 * time.Millisecond
	joinBackoffMax = 5 * time.Second
	// maintainEvery is how often the registry loop reconciles this peer's
	// metadata and, on the leader, looks for dead members.
	maintainEvery = time.Second
	// registryPollEvery is how often the registry loop looks at what is
	// due while it waits on the cluster (no leader known, or this peer's
	// metadata not in the log yet): how soon it commits this peer's
	// metadata once a leader is known. Otherwise it sleeps until its next
	// check is due (maintainEvery, or a check's own backoff).
	registryPollEvery = 100 * time.Millisecond
)

// Deps is what the protocol needs from the peer it runs in: its config,
// its view of the cluster, its registry and node, and the peer client.
// Every func must be set (Learned and DiscardFounding are only called by
// Run).
type Deps struct {
	// Identifier, ID, Host and Port are this peer's (ID is
	// config.NodeID(Identifier)); ClusterName and DataDir are from its
	// config, Voter whether it joins as a voter.
	Identifier  string
	ID          uint64
	Host        string
	Port        int
	ClusterName string
	DataDir     string
	Voter       bool
	// Seeds are the configured peers other than this one.
	Seeds []config.PeerConfig
	// ElectionTimeout, DeadMemberTimeout (0: never remove dead members)
	// and MinVoters are from the config.
	ElectionTimeout   time.Duration
	DeadMemberTimeout time.Duration
	MinVoters         int
	Log               *slog.Logger

	// Metadata returns this peer's current metadata; MetadataLogged the
	// metadata the last committed log entry about this peer carried since
	// it started (nil: none yet). Normalize checks and normalizes
	// metadata (sdkerr.ErrInvalidMetadata).
	Metadata       func() map[string]any
	MetadataLogged func() *map[string]any
	Normalize      func(map[string]any) (map[string]any, error)

	// Leader returns the leader this peer reports; IsLeader whether this
	// peer holds the lease; WaitForLeader waits until a leader is known;
	// Resign hands leadership over.
	Leader        func() (api.Peer, bool)
	IsLeader      func() bool
	WaitForLeader func(ctx context.Context) error
	Resign        func(ctx context.Context) error
	// View returns the published view (voters and learners sorted).
	View func() consensus.View
	// Registry returns the registry now; RegistryChanged a channel closed
	// at its next change.
	Registry        func() *registry.State
	RegistryChanged func() <-chan struct{}
	// Node returns the running node (nil before Start).
	Node func() *consensus.Node
	// Done is closed when the peer closes.
	Done <-chan struct{}
	// Gossip returns gossip's members (none before Start).
	Gossip func() []membership.Member
	// Members lists the members as the API shows them (a join's answer).
	Members func() []api.Member
	// Name returns the identifier of a node ID (a placeholder when not a
	// member).
	Name func(id uint64) string
	// Call sends one API request to the peer at addr (the peer client),
	// answering with the SDK's errors.
	Call func(ctx context.Context, addr, method, path string, body, out any) error
	// Learned tells the peer where another member is (raft transport,
	// gossip seeds), from a join's answer.
	Learned func(id uint64, addr string)
	// DiscardFounding discards the bare founding state of a peer that
	// founded a cluster blind, and starts a node that waits to be added;
	// it returns an error, and keeps the state, when the state moved on.
	DiscardFounding func() error
}

// Protocol runs the join protocol of one peer. Its methods are safe for
// concurrent use.
type Protocol struct {
	d       Deps
	joinErr atomic.Pointer[error] // the last failed self-registration attempt
	kick    chan struct{}         // wakes the registry loop (kickLoop)
}

// New returns the protocol of the peer d describes.
func New(d Deps) *Protocol { return &Protocol{d: d, kick: make(chan struct{}, 1)} }

// kickLoop wakes the registry loop now rather than at its next check due.
func (p *Protocol) kickLoop() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// JoinErr returns why the last attempt of this peer to join a running
// cluster failed, or nil (it joined, or never had to).
func (p *Protocol) JoinErr() error {
	if e := p.joinErr.Load(); e != nil {
		return *e
	}
	return nil
}

// RetryEvery is how long a membership change waits for its entry to be
// applied before proposing it again.
func (p *Protocol) RetryEvery() time.Duration {
	return max(time.Second, 5*p.d.ElectionTimeout)
}

// removedAfter is how long a voter (or learner) stays without a leader
// before it asks the other members whether they removed it.
func (p *Protocol) removedAfter() time.Duration {
	return max(time.Second, 4*p.d.ElectionTimeout)
}

// InConf reports whether id is a voter or learner in the published view.
func (p *Protocol) InConf(id uint64) bool { return inConf(p.d.View(), id) }

func inConf(v consensus.View, id uint64) bool {
	_, a := slices.BinarySearch(v.Voters, id)
	_, b := slices.BinarySearch(v.Learners, id)
	return a || b
}

// waitRegistry waits, for up to RetryEvery, until cond holds for the
// registry (checking at every change after changed); it reports whether
// cond holds.
func (p *Protocol) waitRegistry(ctx context.Context, changed <-chan struct{}, cond func(*registry.State) bool) (bool, error) {
	timer := time.NewTimer(p.RetryEvery())
	defer timer.Stop()
	// The view (voters, learners) is published just after the registry
	// changes; conditions on it are polled.
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		if cond(p.d.Registry()) {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-p.d.Done:
			return false, sdkerr.ErrClosed
		case <-timer.C:
			return cond(p.d.Registry()), nil
		case <-changed:
			changed = p.d.RegistryChanged()
		case <-poll.C:
		}
	}
}

// doLeader runs fn on the node goroutine if this peer leads
// (sdkerr.ErrNotLeader otherwise).
func (p *Protocol) doLeader(ctx context.Context, fn func(*consensus.Core) error) error {
	node := p.d.Node()
	if node == nil {
		return sdkerr.ErrNotStarted
	}
	err := node.Do(ctx, func(core *consensus.Core) error {
		if core.View().Role != consensus.Leader {
			return sdkerr.ErrNotLeader
		}
		return fn(core)
	})
	if errors.Is(err, consensus.ErrStopped) {
		return sdkerr.ErrClosed
	}
	return err
}

// NoLeaderHold is how long, in election timeouts, a membership change
// (Join, RemovePeer) waits in all for a leader while none is known, here
// or at the leader it asked, before it fails with sdkerr.ErrNoLeader: an
// election, or a leader whose lease renewal came late under load, is
// waited out (as Consul's servers hold RPCs during elections,
// rpc_hold_timeout), while a peer cut off from the majority still
// answers within it.
const NoLeaderHold = 10

// leaderHold is one membership change's allowance for waiting out a time
// without a leader (NoLeaderHold election timeouts from the first).
type leaderHold struct{ until time.Time }

// waitOutNoLeader is called when a membership change met no leader (err
// is sdkerr.ErrNoLeader, from this peer or from the peer it asked). Within
// the change's hold it waits until a leader is known here, after a third
// of an election timeout if one was known already (the leader that
// answered "no leader" may have its lease again a heartbeat later; a
// leader that becomes known here is asked at once), and reports true: try
// again. It reports false when the hold is used up, or ctx ends, or the
// peer closes.
func (p *Protocol) waitOutNoLeader(ctx context.Context, h *leaderHold) bool {
	if h.until.IsZero() {
		h.until = time.Now().Add(NoLeaderHold * p.d.ElectionTimeout)
	}
	hctx, cancel := context.WithDeadline(ctx, h.until)
	defer cancel()
	if _, known := p.d.Leader(); known {
		pause := time.NewTimer(p.d.ElectionTimeout / 3)
		defer pause.Stop()
		select {
		case <-pause.C:
		case <-hctx.Done():
			return false
		case <-p.d.Done:
			return false
		}
	}
	return p.d.WaitForLeader(hctx) == nil
}

// toLeader sends an API request to the current leader.
func (p *Protocol) toLeader(ctx context.Context, method, path string, body, out any) error {
	l, ok := p.d.Leader()
	if !ok {
		return sdkerr.ErrNoLeader
	}
	if l.Identifier == p.d.Identifier {
		return sdkerr.ErrNotLeader // our lease lapsed between the checks
	}
	return p.d.Call(ctx, net.JoinHostPort(l.Host, strconv.Itoa(l.Port)), method, path, body, out)
}

// status asks the peer at addr for its status.
func (p *Protocol) status(ctx context.Context, addr string) (api.Status, error) {
	var st api.Status
	err := p.d.Call(ctx, addr, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}
