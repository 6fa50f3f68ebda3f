package qcluster

import (
	"reflect"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kvnode"
	"github.com/qcluster/qcluster/internal/registry"
)

// The member registry of leader mode is the pure state machine of package
// internal/registry. This file is the glue: it feeds it what the node
// commits, and publishes what changed (registry version, transport
// addresses, gossip seeds, events). The registry is held in Cluster.reg:
// the founders from the config until the log says more.

// peerOf returns the Peer a registry record describes.
func peerOf(m *registry.Member) *Peer {
	return &Peer{Host: m.Host, Port: m.Port, Identifier: m.Identifier, Metadata: m.Metadata}
}

// recordOf returns the registry record of p.
func recordOf(p *Peer) registry.Member {
	return registry.Member{Identifier: p.Identifier, Host: p.Host, Port: p.Port, Metadata: p.Metadata}
}

// registered returns the registry's member with node ID id.
func (c *Cluster) registered(id uint64) (*Peer, bool) {
	if m, ok := c.reg.Load().Get(id); ok {
		return peerOf(m), true
	}
	return nil, false
}

// foundingRegistry is the registry a new cluster starts with: this peer and
// the peers of its config.
func (c *Cluster) foundingRegistry() *registry.State {
	ms := []registry.Member{recordOf(c.self)}
	for _, p := range c.cfg.RemotePeers() {
		ms = append(ms, registry.Member{Host: p.Host, Port: p.Port, Identifier: p.Identifier, Metadata: p.Metadata})
	}
	return registry.New(ms)
}

// applyCommitted runs on the node goroutine with what the core committed:
// it applies it to the registry, then publishes the new version, the
// transport's peer addresses and the events.
func (c *Cluster) applyCommitted(a consensus.Applied) {
	reg := c.reg.Load()
	next := reg
	var changes []registry.Change
	var kvData []byte
	if a.Snapshot != nil && len(a.Snapshot.Data) > 0 {
		regData, kd, err := kvnode.SplitSnapshot(a.Snapshot.Data)
		if err == nil {
			kvData = kd
			var r *registry.State
			if r, err = registry.Restore(regData); err == nil {
				next, changes = r, registry.Diff(reg, r)
			}
		}
		if err != nil {
			c.log.Error("registry: cannot decode the snapshot's member list; keeping the current one", "err", err)
			a.Snapshot = nil // nor the KV store's
		}
	}
	next, applied := registry.ApplyAll(next, a.Entries)
	for _, ch := range changes {
		c.kv.RememberOwner(ch.ID, ch.Member.Identifier)
	}
	for _, ch := range applied {
		c.kv.RememberOwner(ch.ID, ch.Member.Identifier)
		// The log confirmed (or changed) this peer's own record: see
		// ownMetadataSettled.
		if ch.Type != registry.Removed && ch.ID == c.selfID && ch.Member.Identifier == c.cfg.Identifier {
			md := ch.Member.Metadata
			c.ownMetaLogged.Store(&md)
		}
		if ch.Type != registry.Restated {
			changes = append(changes, ch)
		}
	}
	if next != reg {
		c.setRegistry(next)
		c.refreshLeader()
	}
	c.kv.Apply(a, kvData)
	c.publishChanges(changes)
}

// publishChanges tells the transport, gossip and the Events subscribers
// what the registry changed.
func (c *Cluster) publishChanges(changes []registry.Change) {
	tr := c.transport()
	for _, ch := range changes {
		p := peerOf(ch.Member)
		typ := EventJoined
		switch ch.Type {
		case registry.Removed:
			typ = EventRemoved
		case registry.Updated:
			typ = EventUpdated
		}
		if ch.ID != c.selfID && tr != nil {
			if typ == EventRemoved {
				tr.RemovePeer(ch.ID)
			} else {
				c.transport().SetPeer(ch.ID, p.Addr())
			}
		}
		if typ == EventJoined && ch.ID != c.selfID {
			c.gossipSeed(p.Addr())
		}
		c.events.publish(Event{Type: typ, Member: c.memberOf(p)})
	}
}

// setRegistry publishes a new registry version and wakes those waiting for
// one.
func (c *Cluster) setRegistry(r *registry.State) {
	c.regMu.Lock()
	c.reg.Store(r)
	close(c.regChanged)
	c.regChanged = make(chan struct{})
	c.regMu.Unlock()
}

// registryChanged returns a channel closed at the next registry change.
func (c *Cluster) registryChanged() <-chan struct{} {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	return c.regChanged
}

// samePeer reports whether two records say the same.
func samePeer(a, b *Peer) bool {
	return a.Identifier == b.Identifier && a.Host == b.Host && a.Port == b.Port && reflect.DeepEqual(a.Metadata, b.Metadata)
}
