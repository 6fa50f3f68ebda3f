package qcluster

import (
	"context"
	"fmt"
	"slices"
	"time"

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

// seedLoop joins the queued gossip seeds, one at a time, until ctx ends.
// Seeds that cannot be reached now are retried by the gossip's periodic
// rejoin.
func (c *Cluster) seedLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.seedCh:
		}
		c.seedMu.Lock()
		seeds := c.seeds
		c.seeds = nil
		c.seedMu.Unlock()
		g := c.gossipRef.Load()
		for _, a := range seeds {
			if ctx.Err() != nil {
				return
			}
			if _, err := g.Join(ctx, []string{a}); err != nil {
				c.log.Debug("gossip: cannot reach a seed now; it is retried periodically", "addr", a, "err", err)
			}
		}
	}
}

// onGossipEvent turns gossip's events into SDK events. In leader mode the
// registry owns joins, removals and metadata, so only the health of its
// members is reported from gossip.
func (c *Cluster) onGossipEvent(ev membership.Event) {
	if c.masterless() {
		var t EventType
		switch ev.Type {
		case membership.EventJoined:
			t = EventJoined
		case membership.EventUpdated:
			t = EventUpdated
		case membership.EventSuspect:
			t = EventSuspect
		case membership.EventRecovered:
			t = EventAlive
		case membership.EventFailed:
			t = EventFailed
		case membership.EventLeft:
			t = EventLeft
		default:
			return
		}
		c.events.publish(Event{Type: t, Member: c.gossipMember(ev.Member)})
		return
	}
	p, ok := c.reg.Load().members[NodeID(ev.Member.Name)]
	if !ok || p.Identifier != ev.Member.Name {
		c.events.touch() // Peers lists it (role none) all the same
		return
	}
	var t EventType
	switch ev.Type {
	case membership.EventJoined, membership.EventRecovered:
		t = EventAlive
	case membership.EventSuspect:
		t = EventSuspect
	case membership.EventFailed:
		t = EventFailed
	case membership.EventLeft:
		t = EventLeft
	default:
		return
	}
	c.events.publish(Event{Type: t, Member: c.memberOf(p)})
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
	g := c.gossipRef.Load()
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
	if !c.masterless() {
		if p, ok := c.reg.Load().members[NodeID(m.Name)]; ok && p.Identifier == m.Name {
			return *p, true
		}
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
