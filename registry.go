package qcluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
)

// The registry is the replicated list of members in leader mode: who they
// are, where they listen and their metadata. It changes only by applying the
// Raft log, so every peer reports every member the same way:
//
//   - the snapshot that founds a cluster (index 1) carries the founding
//     members, from the founding peer's config (peers with the same config
//     write the same bytes);
//   - a configuration change that adds a member carries its record in the
//     change's context (self-registration, POST /v1/join);
//   - a configuration change that removes a member drops its record;
//   - a normal entry {"op":"metadata",...} replaces one member's metadata
//     (SetMetadata).
//
// Snapshots taken when the log is compacted carry the whole registry.

// regRecord is one member as the log carries it.
type regRecord struct {
	Identifier string         `json:"identifier"`
	Host       string         `json:"host"`
	Port       int            `json:"port"`
	Metadata   map[string]any `json:"metadata,omitempty"`
}

func (r regRecord) peer() *Peer {
	return &Peer{Host: r.Host, Port: r.Port, Identifier: r.Identifier, Metadata: r.Metadata}
}

func recordOf(p *Peer) regRecord {
	return regRecord{Identifier: p.Identifier, Host: p.Host, Port: p.Port, Metadata: p.Metadata}
}

// regSnapshot is the registry's encoding in a Raft snapshot.
type regSnapshot struct {
	Members []regRecord `json:"members"`
}

// regEntry is a registry operation in a normal log entry.
type regEntry struct {
	Op         string         `json:"op"` // "metadata"
	Identifier string         `json:"identifier"`
	Metadata   map[string]any `json:"metadata"`
}

// regEntryPrefix marks registry entries in the log, so that other kinds of
// entries can be added later.
const regEntryPrefix = 'R'

// registry is an immutable version of the member list; a change makes a new
// one. It maps node IDs to members and identifiers to node IDs.
type registry struct {
	members map[uint64]*Peer
	idents  map[string]uint64
}

func newRegistry(ps []*Peer) *registry {
	r := &registry{members: make(map[uint64]*Peer, len(ps)), idents: make(map[string]uint64, len(ps))}
	for _, p := range ps {
		r.add(p)
	}
	return r
}

func (r *registry) clone() *registry {
	return &registry{members: maps.Clone(r.members), idents: maps.Clone(r.idents)}
}

func (r *registry) add(p *Peer) {
	id := NodeID(p.Identifier)
	if old, ok := r.members[id]; ok {
		delete(r.idents, old.Identifier)
	}
	r.members[id] = p
	r.idents[p.Identifier] = id
}

func (r *registry) remove(id uint64) {
	if p, ok := r.members[id]; ok {
		delete(r.idents, p.Identifier)
		delete(r.members, id)
	}
}

// sorted returns the members sorted by identifier.
func (r *registry) sorted() []*Peer {
	out := slices.Collect(maps.Values(r.members))
	slices.SortFunc(out, func(a, b *Peer) int { return cmp.Compare(a.Identifier, b.Identifier) })
	return out
}

func (r *registry) encode() []byte {
	var s regSnapshot
	for _, p := range r.sorted() {
		s.Members = append(s.Members, recordOf(p))
	}
	b, err := json.Marshal(s)
	if err != nil {
		// Metadata is checked to encode before it enters the registry.
		panic(fmt.Sprintf("qcluster: encode registry: %v", err))
	}
	return b
}

func decodeRegistry(data []byte) (*registry, error) {
	var s regSnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	r := newRegistry(nil)
	for _, rec := range s.Members {
		r.add(rec.peer())
	}
	return r, nil
}

func encodeRegEntry(e regEntry) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return append([]byte{regEntryPrefix}, b...), nil
}

// regChange is what applying committed entries changed, for events.
type regChange struct {
	typ  EventType
	peer *Peer
}

// foundingRegistry is the registry a new cluster starts with: this peer and
// the peers of its config.
func (c *Cluster) foundingRegistry() *registry {
	ps := []*Peer{c.self}
	for _, p := range c.cfg.RemotePeers() {
		ps = append(ps, &Peer{Host: p.Host, Port: p.Port, Identifier: p.Identifier, Metadata: p.Metadata})
	}
	return newRegistry(ps)
}

// applyCommitted runs on the node goroutine with what the core committed:
// it updates the registry and the transport's peer addresses and queues the
// events.
func (c *Cluster) applyCommitted(a consensus.Applied) {
	reg := c.reg.Load()
	next := reg
	var changes []regChange
	mutable := func() *registry {
		if next == reg {
			next = reg.clone()
		}
		return next
	}
	if a.Snapshot != nil {
		if len(a.Snapshot.Data) > 0 {
			r, err := decodeRegistry(a.Snapshot.Data)
			if err != nil {
				c.log.Error("registry: cannot decode the snapshot's member list; keeping the current one", "err", err)
			} else {
				next = r
				for id, p := range r.members {
					if old, ok := reg.members[id]; !ok || !samePeer(old, p) {
						changes = append(changes, regChange{EventJoined, p})
					}
				}
			}
		}
	}
	for _, e := range a.Entries {
		switch e.Type {
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				continue // the core decoded it already; cannot happen
			}
			switch cc.Type {
			case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
				var rec regRecord
				if len(cc.Context) == 0 || json.Unmarshal(cc.Context, &rec) != nil || NodeID(rec.Identifier) != cc.NodeID {
					continue
				}
				p := rec.peer()
				if cc.NodeID == c.selfID && rec.Identifier == c.cfg.Identifier {
					c.ownMetaLogged.Store(&rec.Metadata)
				}
				if old, ok := next.members[cc.NodeID]; ok && samePeer(old, p) {
					continue
				}
				mutable().add(p)
				changes = append(changes, regChange{EventJoined, p})
			case raftpb.ConfChangeRemoveNode:
				if p, ok := next.members[cc.NodeID]; ok {
					mutable().remove(cc.NodeID)
					changes = append(changes, regChange{EventRemoved, p})
				}
			}
		case raftpb.EntryNormal:
			if len(e.Data) < 2 || e.Data[0] != regEntryPrefix {
				continue
			}
			var re regEntry
			if err := json.Unmarshal(e.Data[1:], &re); err != nil || re.Op != "metadata" {
				continue
			}
			id := NodeID(re.Identifier)
			old, ok := next.members[id]
			if !ok || old.Identifier != re.Identifier {
				continue
			}
			if id == c.selfID && re.Identifier == c.cfg.Identifier {
				md := re.Metadata
				c.ownMetaLogged.Store(&md)
			}
			if reflect.DeepEqual(old.Metadata, re.Metadata) {
				continue
			}
			p := &Peer{Host: old.Host, Port: old.Port, Identifier: old.Identifier, Metadata: re.Metadata}
			mutable().add(p)
			changes = append(changes, regChange{EventUpdated, p})
		}
	}
	if next != reg {
		c.setRegistry(next)
		c.refreshLeader()
	}
	if c.tr != nil {
		for _, ch := range changes {
			id := NodeID(ch.peer.Identifier)
			switch {
			case id == c.selfID:
			case ch.typ == EventRemoved:
				c.tr.RemovePeer(id)
			default:
				c.tr.SetPeer(id, ch.peer.Addr())
			}
		}
	}
	for _, ch := range changes {
		if ch.typ == EventJoined && NodeID(ch.peer.Identifier) != c.selfID {
			c.gossipSeed(ch.peer.Addr())
		}
		c.events.publish(Event{Type: ch.typ, Member: c.memberOf(ch.peer)})
	}
}

// setRegistry publishes a new registry version and wakes those waiting for
// one.
func (c *Cluster) setRegistry(r *registry) {
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

// encodeMetadata checks that metadata can be shared: JSON-encodable and at
// most MaxMetadataSize bytes encoded.
func encodeMetadata(md map[string]any) ([]byte, error) {
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata cannot be encoded as JSON: %w", ErrInvalidMetadata, err)
	}
	if len(b) > MaxMetadataSize {
		return nil, fmt.Errorf("%w: metadata is %d bytes encoded as JSON; the limit is %d (64 KiB)", ErrInvalidMetadata, len(b), MaxMetadataSize)
	}
	return b, nil
}

// normalizeMetadata returns md as every peer decodes it from JSON (numbers
// as float64), so the local copy equals the replicated one.
func normalizeMetadata(md map[string]any) (map[string]any, error) {
	b, err := encodeMetadata(md)
	if err != nil {
		return nil, err
	}
	if md == nil {
		return nil, nil
	}
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
	}
	return out, nil
}

// eventHub fans membership and leadership events out to Events channels,
// and counts the changes of what Peers shows (the API's membership index):
// every event it publishes, and the changes that have none (touch).
type eventHub struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	closed  bool
	idx     uint64        // changes so far
	changed chan struct{} // closed at the next change (nil: nobody waits)
}

func (h *eventHub) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.bump()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default: // the reader is EventBuffer behind: it loses this one
		}
	}
}

// touch counts a change of what Peers shows that no Event reports (a
// member known only to gossip, this peer's own metadata in masterless
// mode).
func (h *eventHub) touch() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.bump()
	}
}

// bump counts a change and wakes wait; h.mu is held.
func (h *eventHub) bump() {
	h.idx++
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// index returns the number of changes counted so far.
func (h *eventHub) index() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.idx
}

// wait returns once the count differs from index: at once if it does,
// else at the next change. It returns ctx's error when ctx ends first,
// ErrClosed when the hub is closed. It costs no goroutine and never makes
// publish wait.
func (h *eventHub) wait(ctx context.Context, index uint64) error {
	h.mu.Lock()
	if h.idx != index {
		h.mu.Unlock()
		return nil
	}
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	ch := h.changed
	h.mu.Unlock()
	select {
	case <-ch:
		if h.index() == index {
			return ErrClosed // closeAll woke it, with no change
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *eventHub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	for ch := range h.subs {
		close(ch)
		delete(h.subs, ch)
	}
}
