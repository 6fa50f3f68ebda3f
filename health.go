package qcluster

import (
	"context"
	"errors"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/health"
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

// healthLoop applies the check's state: to the election core (candidacy),
// to gossip (what the others see), and, while it fails on the leader, by
// handing leadership over. It runs until ctx ends.
func (c *Cluster) healthLoop(ctx context.Context) {
	applied := ""
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		status, output := c.health.State(time.Now())
		if status != applied {
			c.applyCheck(ctx, status, output)
			applied = status
		}
		wait := time.Hour
		if exp := c.health.Expiry(); !exp.IsZero() {
			wait = max(time.Until(exp)+time.Millisecond, time.Millisecond)
		}
		if status == CheckFailing && c.leading() {
			c.resignUnhealthy(ctx)
			// Try again (another voter may pass meanwhile) while this peer
			// still leads.
			wait = min(wait, time.Duration(c.cfg.ElectionTimeout))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-c.health.Changed():
		case <-timer.C:
		}
	}
}

// leading reports whether raft makes this peer the leader (with or without
// a lease).
func (c *Cluster) leading() bool { return c.snap.Load().view.Role == consensus.Leader }

// applyCheck makes the election core and gossip follow the check's state.
func (c *Cluster) applyCheck(ctx context.Context, status, output string) {
	passing := status != CheckFailing
	if node := c.node(); node != nil {
		if err := node.Do(ctx, func(core *consensus.Core) error {
			core.SetCandidate(passing)
			return nil
		}); err != nil {
			return // stopping
		}
	}
	if passing {
		c.log.Info("health check passes: a candidate for leadership", "check", status, "output", output)
	} else {
		c.log.Warn("health check fails: no candidate for leadership", "output", output)
	}
	if status == CheckFailing && c.leading() {
		c.resignUnhealthy(ctx) // before telling gossip: hand over at once
	}
	if g := c.gossip(); g != nil {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = g.SetCheck(gctx, gossipCheck(status)) // spreads even unconfirmed
		cancel()
	}
	c.events.touch() // Peers shows it
}

// resignUnhealthy hands leadership to the best voter whose check does not
// fail, trying each in turn, each for up to two election timeouts.
func (c *Cluster) resignUnhealthy(ctx context.Context) {
	tried := map[uint64]bool{}
	for c.leading() && ctx.Err() == nil {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Duration(c.cfg.ElectionTimeout)+time.Duration(c.cfg.HeartbeatInterval))
		target, err := c.transfer(tctx, 0, tried)
		cancel()
		if err == nil {
			c.log.Info("handed leadership over: health check fails", "to", c.peer(target).Identifier)
			return
		}
		if target == 0 || errors.Is(err, ErrUnknownPeer) || errors.Is(err, ErrNotLeader) || errors.Is(err, ErrClosed) {
			c.log.Debug("no voter to hand leadership to", "err", err)
			return
		}
		tried[target] = true
	}
}

// gossipCheck converts a check state for gossip.
func gossipCheck(status string) membership.Check {
	switch status {
	case CheckPassing:
		return membership.CheckPassing
	case CheckFailing:
		return membership.CheckFailing
	}
	return membership.CheckNone
}

// checkOf converts gossip's check state.
func checkOf(ch membership.Check) string { return ch.String() }

// failingMembers returns the node IDs of the members whose check fails, as
// gossip says (this peer's own from its own state).
func (c *Cluster) failingMembers() map[uint64]bool {
	out := c.gossipFailing()
	if out == nil {
		out = map[uint64]bool{}
	}
	if st, _ := c.Health(); st == CheckFailing {
		out[c.selfID] = true
	}
	return out
}

// gossipFailing returns the node IDs of the other members whose check
// fails as gossip says, or nil when none does.
func (c *Cluster) gossipFailing() map[uint64]bool {
	var set map[uint64]bool
	for _, gm := range c.gossipMembers() {
		if gm.Check == membership.CheckFailing && gm.Name != c.cfg.Identifier {
			if set == nil {
				set = map[uint64]bool{}
			}
			set[NodeID(gm.Name)] = true
		}
	}
	return set
}

// noteFailing refreshes the set behind leaderFailing from gossip (on every
// gossip event, leader mode).
func (c *Cluster) noteFailing() {
	if set := c.gossipFailing(); set != nil {
		c.leadFailing.Store(&set)
		return
	}
	c.leadFailing.Store(nil)
}

// leaderFailing reports whether gossip says that id, another member, fails
// its health check. A follower then names no leader: that leader holds no
// lease (it is no candidate) and is handing over, or, when every voter
// fails, there is no leader to name (the leader itself says so). It takes
// no lock and does not allocate.
func (c *Cluster) leaderFailing(id uint64) bool {
	set := c.leadFailing.Load()
	return set != nil && (*set)[id]
}

// allFailing reports whether there are voters and every one fails.
func allFailing(voters []uint64, failing map[uint64]bool) bool {
	for _, id := range voters {
		if !failing[id] {
			return false
		}
	}
	return len(voters) > 0
}

// startHealth starts the health-check goroutines (Start holds c.mu).
func (c *Cluster) startHealth(ctx context.Context) {
	if c.health.Config() == nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.healthLoop(ctx)
	}()
	if c.health.Config().HTTP != "" {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.health.RunHTTP(ctx)
		}()
	}
}

// noLeaderReason says why there is no leader, when health checks explain
// it: every voter's check fails, or the raft leader's (this peer or lead)
// does. It returns "" otherwise.
func (c *Cluster) noLeaderReason(voters []uint64, lead uint64, leading bool) string {
	failing := c.failingMembers()
	switch {
	case allFailing(voters, failing):
		return "every voter's health check fails (health_check): no voter is a candidate for leadership"
	case leading && failing[c.selfID]:
		return "this peer's health check fails: it holds no leader lease and hands leadership to a voter whose check does not fail"
	case lead != 0 && lead != c.selfID && failing[lead]:
		return "the leader's health check fails: it holds no leader lease and hands leadership to a voter whose check does not fail"
	}
	return ""
}
