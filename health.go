package qcluster

import (
	"context"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/health"
	"github.com/qcluster/qcluster/internal/healthlead"
	"github.com/qcluster/qcluster/internal/membership"
)

// Health-tied leadership.
//
// With Config.HealthCheck, a peer is a candidate for leadership only while
// its application's check passes. While it fails, the election core drops
// the peer's vote requests and ignores transfers to it (consensus.Core.
// SetCandidate: it still votes, so the cluster keeps its majority), a
// leader holds no lease and hands over at once to a voter whose check does
// not fail, and every member sees the state in gossip (the check's state
// travels in the member's gossip envelope, membership.Check): the leader
// reads it to pick a transferee, and Peers reports it. Gossip and not the
// replicated log carries it because it is ephemeral, local to one process,
// changes without any agreement to reach, and must not cost a log entry
// (nor block on a leader) each time an application flaps. A stale view
// only costs a transfer that the unhealthy peer ignores; raft then gives
// it up and the next voter is tried.

// Health-check states (Member.Check, SetHealth).
const (
	CheckNone    = health.None    // the peer has no health_check
	CheckPassing = health.Passing // its application's check passes
	CheckFailing = health.Failing // it fails: the peer is no candidate for leadership
)

// Errors of SetHealth.
var (
	// ErrNoTTLCheck: SetHealth on a peer whose config has no
	// health_check.ttl.
	ErrNoTTLCheck = health.ErrNoTTLCheck
	// ErrInvalidHealth: a status other than "passing" or "failing", or an
	// output over MaxHealthOutput bytes or not UTF-8.
	ErrInvalidHealth = health.ErrInvalidHealth
)

// MaxHealthOutput bounds the output of a health report.
const MaxHealthOutput = health.MaxOutput

// SetHealth reports the application's health for a TTL health check
// (Config.HealthCheck.TTL): status "passing" or "failing", with a short
// output for humans (at most MaxHealthOutput bytes of UTF-8). The
// application must report "passing" within every TTL, or the check
// fails. It returns ErrNoTTLCheck without a TTL check, ErrInvalidHealth
// for a bad report, ErrClosed after Close.
func (c *Cluster) SetHealth(status, output string) error {
	if err := c.health.Validate(status, output); err != nil {
		return err
	}
	if c.snap.Load().closed {
		return ErrClosed
	}
	c.health.Set(status, output, time.Now())
	return nil
}

// Health returns this peer's health-check state ("none", "passing" or
// "failing") and the check's last output.
func (c *Cluster) Health() (status, output string) { return c.health.State(time.Now()) }

// healthLeadDeps is what health-tied leadership (internal/healthlead)
// reads and changes of c.
func (c *Cluster) healthLeadDeps() healthlead.Deps {
	return healthlead.Deps{
		Identifier:        c.cfg.Identifier,
		ID:                c.selfID,
		ElectionTimeout:   time.Duration(c.cfg.ElectionTimeout),
		HeartbeatInterval: time.Duration(c.cfg.HeartbeatInterval),
		Log:               c.log,
		Check:             c.health,
		Leading:           c.leading,
		SetCandidate: func(ctx context.Context, candidate bool) error {
			node := c.node()
			if node == nil {
				return nil
			}
			return node.Do(ctx, func(core *consensus.Core) error {
				core.SetCandidate(candidate)
				return nil
			})
		},
		SetGossipCheck: func(ctx context.Context, check membership.Check) {
			if g := c.gossip(); g != nil {
				_ = g.SetCheck(ctx, check)
			}
		},
		Members: c.gossipMembers,
		Touch:   c.events.touch,
		Transfer: func(ctx context.Context, tried map[uint64]bool) (uint64, error) {
			return c.transfer(ctx, 0, tried)
		},
		PeerName: func(id uint64) string { return c.peer(id).Identifier },
	}
}

// leading reports whether raft makes this peer the leader (with or without
// a lease).
func (c *Cluster) leading() bool { return c.snap.Load().view.Role == consensus.Leader }

// checkOf converts gossip's check state.
func checkOf(ch membership.Check) string { return ch.String() }

// startHealth starts the health-check goroutines (Start holds c.mu).
func (c *Cluster) startHealth(ctx context.Context) {
	if c.health.Config() == nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.healthLead.Run(ctx)
	}()
	if c.health.Config().HTTP != "" {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.health.RunHTTP(ctx)
		}()
	}
}
