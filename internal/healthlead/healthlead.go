// Package healthlead is health-tied leadership: it applies this peer's
// application health check (internal/health) to the election and to
// gossip, and reads the other members' checks from gossip.
//
// While the check fails, the election core makes the peer no candidate
// (Deps.SetCandidate), a leader hands leadership over at once to a voter
// whose check does not fail (Deps.Transfer, each voter in turn), and gossip
// carries the state to the others (Deps.SetGossipCheck). The others'
// states come from gossip (Deps.Members): a follower names no leader whose
// check fails (LeaderFailing), and NoLeaderReason says why no leader is
// known when the checks explain it.
//
// The package holds no pointer to the peer: everything it reads or changes
// comes through Deps. Its errors are the SDK's (internal/sdkerr).
package healthlead

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/qcluster/qcluster/internal/health"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// Deps is what health-tied leadership needs from the peer it runs in.
// Every func must be set.
type Deps struct {
	// Identifier and ID are this peer's (ID is its node ID).
	Identifier string
	ID         uint64
	// ElectionTimeout and HeartbeatInterval are from the config.
	ElectionTimeout   time.Duration
	HeartbeatInterval time.Duration
	Log               *slog.Logger
	// Check is this peer's health check.
	Check *health.Check

	// Leading reports whether raft makes this peer the leader (with or
	// without a lease).
	Leading func() bool
	// SetCandidate makes the election core take this peer as a candidate
	// for leadership or not; an error means the peer is stopping (nil
	// when there is no node yet).
	SetCandidate func(ctx context.Context, candidate bool) error
	// SetGossipCheck publishes the check's state in this peer's gossip
	// envelope (nothing when there is no gossip yet).
	SetGossipCheck func(ctx context.Context, check membership.Check)
	// Members returns gossip's members sorted by name (nil before start).
	Members func() []membership.Member
	// Touch counts a change of what Peers shows.
	Touch func()
	// Transfer starts one hand-over to the best voter not in tried, and
	// whose check does not fail, and waits for its outcome; it returns the
	// target it chose (0: none).
	Transfer func(ctx context.Context, tried map[uint64]bool) (uint64, error)
	// PeerName returns the identifier of the member with node ID id.
	PeerName func(id uint64) string
}

// Leadership applies this peer's health check to the election and keeps
// the other members' checks as gossip reports them.
type Leadership struct {
	d Deps
	// failing holds the node IDs of the other members whose health check
	// fails as gossip says: a follower does not name a leader whose check
	// fails, since that leader holds no lease and hands over. Nil: none.
	failing atomic.Pointer[map[uint64]bool]
}

// New returns the health-tied leadership d describes.
func New(d Deps) *Leadership { return &Leadership{d: d} }

// Run applies the check's state: to the election core (candidacy), to
// gossip (what the others see), and, while it fails on the leader, by
// handing leadership over. It runs until ctx ends.
func (l *Leadership) Run(ctx context.Context) {
	applied := ""
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		status, output := l.d.Check.State(time.Now())
		if status != applied {
			l.apply(ctx, status, output)
			applied = status
		}
		wait := time.Hour
		if exp := l.d.Check.Expiry(); !exp.IsZero() {
			wait = max(time.Until(exp)+time.Millisecond, time.Millisecond)
		}
		if status == health.Failing && l.d.Leading() {
			l.resign(ctx)
			// Try again (another voter may pass meanwhile) while this peer
			// still leads.
			wait = min(wait, l.d.ElectionTimeout)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-l.d.Check.Changed():
		case <-timer.C:
		}
	}
}

// apply makes the election core and gossip follow the check's state.
func (l *Leadership) apply(ctx context.Context, status, output string) {
	passing := status != health.Failing
	if err := l.d.SetCandidate(ctx, passing); err != nil {
		return // stopping
	}
	if passing {
		l.d.Log.Info("health check passes: a candidate for leadership", "check", status, "output", output)
	} else {
		l.d.Log.Warn("health check fails: no candidate for leadership", "output", output)
	}
	if status == health.Failing && l.d.Leading() {
		l.resign(ctx) // before telling gossip: hand over at once
	}
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	l.d.SetGossipCheck(gctx, GossipCheck(status)) // spreads even unconfirmed
	cancel()
	l.d.Touch() // Peers shows it
}

// resign hands leadership to the best voter whose check does not fail,
// trying each in turn, each for up to two election timeouts.
func (l *Leadership) resign(ctx context.Context) {
	tried := map[uint64]bool{}
	for l.d.Leading() && ctx.Err() == nil {
		tctx, cancel := context.WithTimeout(ctx, 2*l.d.ElectionTimeout+l.d.HeartbeatInterval)
		target, err := l.d.Transfer(tctx, tried)
		cancel()
		if err == nil {
			l.d.Log.Info("handed leadership over: health check fails", "to", l.d.PeerName(target))
			return
		}
		if target == 0 || errors.Is(err, sdkerr.ErrUnknownPeer) || errors.Is(err, sdkerr.ErrNotLeader) || errors.Is(err, sdkerr.ErrClosed) {
			l.d.Log.Debug("no voter to hand leadership to", "err", err)
			return
		}
		tried[target] = true
	}
}

// GossipCheck converts a check state for gossip.
func GossipCheck(status string) membership.Check {
	switch status {
	case health.Passing:
		return membership.CheckPassing
	case health.Failing:
		return membership.CheckFailing
	}
	return membership.CheckNone
}

// Failing returns the node IDs of the members whose check fails, as gossip
// says (this peer's own from its own state). The map is new on every call.
func (l *Leadership) Failing() map[uint64]bool {
	out := l.gossipFailing()
	if out == nil {
		out = map[uint64]bool{}
	}
	if st, _ := l.d.Check.State(time.Now()); st == health.Failing {
		out[l.d.ID] = true
	}
	return out
}

// gossipFailing returns the node IDs of the other members whose check
// fails as gossip says, or nil when none does.
func (l *Leadership) gossipFailing() map[uint64]bool {
	var set map[uint64]bool
	for _, gm := range l.d.Members() {
		if gm.Check == membership.CheckFailing && gm.Name != l.d.Identifier {
			if set == nil {
				set = map[uint64]bool{}
			}
			set[registry.NodeID(gm.Name)] = true
		}
	}
	return set
}

// NoteGossip refreshes the set behind LeaderFailing from gossip (on every
// gossip event, leader mode).
func (l *Leadership) NoteGossip() {
	if set := l.gossipFailing(); set != nil {
		l.failing.Store(&set)
		return
	}
	l.failing.Store(nil)
}

// LeaderFailing reports whether gossip says that id, another member, fails
// its health check. A follower then names no leader: that leader holds no
// lease (it is no candidate) and is handing over, or, when every voter
// fails, there is no leader to name (the leader itself says so). It takes
// no lock and does not allocate.
func (l *Leadership) LeaderFailing(id uint64) bool {
	set := l.failing.Load()
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

// NoLeaderReason says why there is no leader, when health checks explain
// it: every voter's check fails, or the raft leader's (this peer, when
// leading, or lead) does. It returns "" otherwise.
func (l *Leadership) NoLeaderReason(voters []uint64, lead uint64, leading bool) string {
	failing := l.Failing()
	switch {
	case allFailing(voters, failing):
		return "every voter's health check fails (health_check): no voter is a candidate for leadership"
	case leading && failing[l.d.ID]:
		return "this peer's health check fails: it holds no leader lease and hands leadership to a voter whose check does not fail"
	case lead != 0 && lead != l.d.ID && failing[lead]:
		return "the leader's health check fails: it holds no leader lease and hands leadership to a voter whose check does not fail"
	}
	return ""
}
