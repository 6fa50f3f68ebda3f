package qcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/loglimit"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/transport"
)

// newGossip creates this peer's gossip membership on mux (before it
// serves). Gossip runs in both modes: it is the whole membership in
// masterless mode, and the health view of the registry in leader mode.
func (c *Cluster) newGossip(mux *transport.Mux) (*membership.Membership, error) {
	meta, err := encodeMetadata(c.selfMetadata())
	if err != nil {
		return nil, err
	}
	mc := membership.DefaultConfig()
	mc.Name = c.cfg.Identifier
	mc.Mux = mux
	mc.ClusterName = c.cfg.ClusterName
	mc.Meta = meta
	mc.Check = gossipCheck(CheckNone)
	if c.cfg.HealthCheck != nil {
		mc.Check = gossipCheck(CheckFailing) // until it passes
	}
	mc.Profile = c.cfg.GossipProfile
	mc.AdvertiseHost = c.self.Host
	mc.AdvertisePort = c.self.Port
	mc.Logger = c.log.With("component", "gossip")
	mc.Events = c.onGossipEvent
	mc.TLS = c.sec.clientTLS
	mc.GossipKeys = c.sec.gossipKeys
	if c.gossipTweak != nil {
		c.gossipTweak(&mc)
	}
	g, err := membership.New(mc)
	if err != nil {
		return nil, fmt.Errorf("qcluster: gossip on %s: %w", c.cfg.Addr(), err)
	}
	return g, nil
}

// gossipSeed queues addr for the gossip to join (and to rejoin
// periodically, should the two sides of a partition both declare the other
// dead). It never blocks.
func (c *Cluster) gossipSeed(addr string) {
	c.seedMu.Lock()
	if !slices.Contains(c.seeds, addr) {
		c.seeds = append(c.seeds, addr)
	}
	c.seedMu.Unlock()
	select {
	case c.seedCh <- struct{}{}:
	default:
	}
}

// queuedSeeds moves the queued gossip seeds to pending.
func (c *Cluster) queuedSeeds(pending []string) []string {
	c.seedMu.Lock()
	defer c.seedMu.Unlock()
	for _, a := range c.seeds {
		if !slices.Contains(pending, a) {
			pending = append(pending, a)
		}
	}
	c.seeds = nil
	return pending
}

// joinSeeds asks g to join each seed, one at a time, until ctx ends.
func joinSeeds(ctx context.Context, g *membership.Membership, seeds []string) (reached, failed []string, errs []error) {
	for _, a := range seeds {
		if ctx.Err() != nil {
			return
		}
		if n, err := g.Join(ctx, []string{a}); err != nil {
			failed = append(failed, a)
			errs = append(errs, err)
		} else if n > 0 {
			reached = append(reached, a)
		}
	}
	return
}

// Timings of the seed loop: see seedLoop.
const (
	// seedBackoffMin and seedBackoffMax bound the wait between two rounds
	// of joining the seeds while this peer has joined no one. The maximum
	// is low: such a peer has nothing else to do, and a round costs one
	// TCP connection attempt per seed.
	seedBackoffMin = 200 * time.Millisecond
	seedBackoffMax = time.Second
	// seedLogEvery rate-limits the log of failed rounds after the first.
	seedLogEvery = 30 * time.Second
	// settleEvery is the pause between two exchanges with the seeds while
	// settling.
	settleEvery = 300 * time.Millisecond
	// settleQuietRounds exchanges in a row that teach nothing end it.
	settleQuietRounds = 2
	// settleMax bounds it.
	settleMax = 10 * time.Second
)

// seedLoop joins the queued gossip seeds until ctx ends.
//
// While this peer has joined no one yet (its gossip knows no other live
// member), the seeds it could not reach are tried again with a growing,
// jittered backoff (seedBackoffMin to seedBackoffMax), so peers started
// before their contacts find them within moments of their start, whatever
// the start order. Failed rounds are logged with the reason: the first at
// Warn, later ones at Info, at most once per seedLogEvery (with the count
// of attempts). Once this peer has joined someone, the seeds it could not
// reach are left to the gossip's periodic rejoin.
//
// A peer that had to wait for its seeds then settles: peers started before
// the same seed all join it within moments of its start, and those that
// join first would otherwise learn of the later ones only as gossip
// spreads (seconds with dozens of peers on a busy machine). So it
// exchanges its state with the seeds that answered again, every
// settleEvery (jittered), until settleQuietRounds exchanges in a row teach
// it no new member (or settleMax): a few TCP exchanges once, after a start
// in the wrong order.
func (c *Cluster) seedLoop(ctx context.Context) {
	bo := backoff.New(seedBackoffMin, seedBackoffMax)
	logEvery := loglimit.Limiter{Period: seedLogEvery}
	timer := time.NewTimer(time.Hour)
	timer.Stop() // armed only while retrying or settling (Go 1.23 timers: no stale tick after Stop)
	defer timer.Stop()
	var pending, settling []string
	var settleQuiet int
	var settleEnd time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.seedCh:
		case <-timer.C:
		}
		pending = c.queuedSeeds(pending)
		g := c.gossip()
		if len(pending) == 0 && len(settling) > 0 {
			before := c.liveMembers()
			_, _ = g.Join(ctx, settling)
			if c.liveMembers() > before {
				settleQuiet = 0
			} else {
				settleQuiet++
			}
			if settleQuiet >= settleQuietRounds || time.Now().After(settleEnd) {
				c.log.Debug("gossip: settled after a late join", "members", c.liveMembers())
				settling = nil
				continue
			}
			timer.Reset(backoff.New(settleEvery, settleEvery).Next())
			continue
		}
		reached, failed, errs := joinSeeds(ctx, g, pending)
		if ctx.Err() != nil {
			return
		}
		pending = nil
		if len(failed) == 0 || !c.gossipAlone() {
			if len(failed) > 0 {
				c.log.Debug("gossip: cannot reach some seeds now; the periodic rejoin retries them", "seeds", failed, "err", errors.Join(errs...))
			}
			switch {
			case bo.Attempts() > 0 && len(reached) > 0:
				c.log.Info("gossip: joined", "via", reached, "after_attempts", bo.Attempts()+1)
				settling, settleQuiet, settleEnd = reached, 0, time.Now().Add(settleMax)
				timer.Reset(backoff.New(settleEvery, settleEvery).Next())
			case len(settling) == 0:
				timer.Stop()
			} // else: a seed came while settling, whose timer still runs
			bo.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		pending = failed
		wait := bo.Next()
		level := slog.LevelInfo
		if bo.Attempts() == 1 {
			level = slog.LevelWarn
		}
		if allowed := logEvery.Allow(time.Now()); level == slog.LevelWarn || allowed {
			c.log.Log(ctx, level, "gossip: cannot reach any seed yet; retrying (are the configured peers up, with the same cluster_name and keys?)",
				"seeds", failed, "attempt", bo.Attempts(), "retry_in", wait.Round(time.Millisecond).String(), "err", errors.Join(errs...))
		}
		timer.Reset(wait)
	}
}

// liveMembers returns how many members (this one included) gossip reports
// live (alive or suspect).
func (c *Cluster) liveMembers() int {
	n := 0
	for _, m := range c.gossipMembers() {
		if m.State.Live() {
			n++
		}
	}
	return n
}

// gossipAlone reports whether gossip knows no other live (alive or
// suspect) member: this peer has joined no one yet, or lost everyone.
func (c *Cluster) gossipAlone() bool {
	for _, m := range c.gossipMembers() {
		if m.Name != c.cfg.Identifier && m.State.Live() {
			return false
		}
	}
	return true
}

// healthEvent is the SDK event for a change of a member's health that
// gossip saw (suspect, recovered, failed, left), the same in both modes.
func healthEvent(t membership.EventType) (EventType, bool) {
	switch t {
	case membership.EventSuspect:
		return EventSuspect, true
	case membership.EventRecovered:
		return EventAlive, true
	case membership.EventFailed:
		return EventFailed, true
	case membership.EventLeft:
		return EventLeft, true
	}
	return 0, false
}

// onGossipEvent turns gossip's events into SDK events, as the mode says.
func (c *Cluster) onGossipEvent(ev membership.Event) { c.mode.gossipEvent(ev) }

// gossipEvent: in masterless mode gossip is the whole membership.
func (m masterlessMode) gossipEvent(ev membership.Event) {
	c := m.c
	t, ok := healthEvent(ev.Type)
	switch ev.Type {
	case membership.EventJoined:
		t, ok = EventJoined, true
	case membership.EventUpdated:
		t, ok = EventUpdated, true
	}
	if ok {
		c.events.publish(Event{Type: t, Member: c.gossipMember(ev.Member)})
	}
}

// gossipEvent: in leader mode the registry owns joins, removals and
// metadata, so only the health of its members is reported from gossip.
func (l leaderMode) gossipEvent(ev membership.Event) {
	c := l.c
	c.noteFailing()
	p, ok := c.reg.Load().Get(NodeID(ev.Member.Name))
	if !ok || p.Identifier != ev.Member.Name {
		c.events.touch() // Peers lists it (role none) all the same
		return
	}
	if ev.Type == membership.EventUpdated {
		// Its gossip envelope changed: in leader mode only its health
		// check's state is read from there (Member.Check).
		c.events.touch()
		return
	}
	t, ok := healthEvent(ev.Type)
	if ev.Type == membership.EventJoined {
		t, ok = EventAlive, true // the registry announced the join
	}
	if ok {
		c.events.publish(Event{Type: t, Member: c.memberOf(peerOf(p))})
	}
}

// Owner returns the live member (alive or suspect, as gossip sees it) that
// owns key by rendezvous (highest-random-weight) hashing, and false when
// gossip knows no live member (before Start). Peers that agree on who is
// live agree on every key's owner, so they split work without talking to
// each other; when a member fails (once gossip declares it dead), only the
// keys it owned move, each to the next heaviest live member; a member that
// joins takes over only the keys it now weighs most for. Suspect members
// keep their keys, so a false suspicion moves nothing. Owner works in both
// modes; it is the way to split work in masterless mode.
func (c *Cluster) Owner(key string) (Peer, bool) {
	g := c.gossip()
	if g == nil {
		return Peer{}, false
	}
	m, ok := g.Owner(key)
	if !ok {
		return Peer{}, false
	}
	if m.Name == c.cfg.Identifier {
		return c.Self(), true
	}
	if p, ok := c.mode.registered(m.Name); ok {
		return p, true
	}
	return Peer{Host: m.Host, Port: m.Port, Identifier: m.Name, Metadata: c.decodeGossipMeta(m.Name, m.Meta)}, true
}

// gossipJoined reports, for readiness, whether gossip has found another
// live member (or the config names no other peer).
func (c *Cluster) gossipJoined() bool {
	if len(c.cfg.RemotePeers()) == 0 {
		return true
	}
	for _, m := range c.gossipMembers() {
		if m.Name != c.cfg.Identifier && m.State == membership.StateAlive {
			return true
		}
	}
	return false
}

// gossipTimeout bounds gossip operations (SetMeta, Leave) that wait for a
// broadcast.
const gossipTimeout = 5 * time.Second
