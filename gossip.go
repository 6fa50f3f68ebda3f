package qcluster

import (
	"fmt"
	"time"

	"github.com/qcluster/qcluster/internal/healthlead"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/metadata"
	"github.com/qcluster/qcluster/internal/transport"
)

// newGossip creates this peer's gossip membership on mux (before it
// serves). Gossip runs in both modes: it is the whole membership in
// masterless mode, and the health view of the registry in leader mode.
func (c *Cluster) newGossip(mux *transport.Mux) (*membership.Membership, error) {
	meta, err := metadata.Encode(c.selfMetadata())
	if err != nil {
		return nil, err
	}
	mc := membership.DefaultConfig()
	mc.Name = c.cfg.Identifier
	mc.Mux = mux
	mc.ClusterName = c.cfg.ClusterName
	mc.Meta = meta
	mc.Check = healthlead.GossipCheck(CheckNone)
	if c.cfg.HealthCheck != nil {
		mc.Check = healthlead.GossipCheck(CheckFailing) // until it passes
	}
	mc.Profile = c.cfg.GossipProfile
	mc.AdvertiseHost = c.self.Host
	mc.AdvertisePort = c.self.Port
	mc.Logger = c.log.With("component", "gossip")
	mc.Events = c.onGossipEvent
	mc.TLS = c.sec.ClientTLS
	mc.GossipKeys = c.sec.GossipKeys
	if c.gossipTweak != nil {
		c.gossipTweak(&mc)
	}
	g, err := membership.New(mc)
	if err != nil {
		return nil, fmt.Errorf("qcluster: gossip on %s: %w", c.cfg.Addr(), err)
	}
	return g, nil
}

// gossipSeed queues addr for the gossip to join (internal/seeds; and to
// rejoin periodically, should the two sides of a partition both declare
// the other dead). It never blocks.
func (c *Cluster) gossipSeed(addr string) { c.seeds.Add(addr) }

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
	c.healthLead.NoteGossip()
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
	return Peer{Host: m.Host, Port: m.Port, Identifier: m.Name, Metadata: c.gossipMeta.Decode(m.Name, m.Meta)}, true
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
