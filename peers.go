package qcluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/qcluster/qcluster/internal/membership"
)

// MemberRole is a member's place in the cluster as this peer sees it.
type MemberRole int

// Member roles.
const (
	// MemberNone: known to gossip but not a Raft member (it is joining, or
	// was removed).
	MemberNone MemberRole = iota
	// MemberFollower: a voter that does not lead.
	MemberFollower
	// MemberLearner: a non-voting member (Config.Voter false).
	MemberLearner
	// MemberLeader: the leader this peer knows.
	MemberLeader
	// MemberMasterless: a member of a masterless cluster.
	MemberMasterless
)

// String returns "none", "follower", "learner", "leader" or "member".
func (r MemberRole) String() string {
	switch r {
	case MemberFollower:
		return "follower"
	case MemberLearner:
		return "learner"
	case MemberLeader:
		return "leader"
	case MemberMasterless:
		return "member"
	}
	return "none"
}

// MarshalText encodes the role as its name.
func (r MemberRole) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Health is a member's health as gossip reports it.
type Health int

// Health states.
const (
	// HealthUnknown: no gossip about the member yet.
	HealthUnknown Health = iota
	// HealthAlive: the member answers probes.
	HealthAlive
	// HealthSuspect: a probe failed; unless the member refutes it, it is
	// declared dead after the suspicion timeout.
	HealthSuspect
	// HealthDead: the member stopped answering and was declared dead.
	HealthDead
	// HealthLeft: the member left gracefully.
	HealthLeft
)

// String returns "unknown", "alive", "suspect", "dead" or "left".
func (h Health) String() string {
	switch h {
	case HealthAlive:
		return "alive"
	case HealthSuspect:
		return "suspect"
	case HealthDead:
		return "dead"
	case HealthLeft:
		return "left"
	}
	return "unknown"
}

// MarshalText encodes the health as its name.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func healthOf(s membership.State) Health {
	switch s {
	case membership.StateAlive:
		return HealthAlive
	case membership.StateSuspect:
		return HealthSuspect
	case membership.StateDead:
		return HealthDead
	case membership.StateLeft:
		return HealthLeft
	}
	return HealthUnknown
}

// Member is a member of the cluster as this peer sees it: the Peer (where
// it is, its metadata), its role and its health.
type Member struct {
	Peer
	// Role is its place in the election (or MemberMasterless).
	Role MemberRole `json:"role"`
	// Health is what gossip says about it.
	Health Health `json:"state"`
	// Voter reports whether it votes in elections.
	Voter bool `json:"voter"`
	// IsSelf reports whether it is this peer.
	IsSelf bool `json:"is_self"`
	// Since is when this peer saw its health change (zero when unknown).
	Since time.Time `json:"since,omitzero"`
	// Check is the state of its application health check (health_check):
	// CheckPassing, CheckFailing (it is no candidate for leadership) or
	// CheckNone (no check, or gossip has not told yet).
	Check string `json:"check"`
}

// Peers returns every member this peer knows, itself included, sorted by
// identifier: in leader mode, the members of the replicated registry (the
// configured founders and every peer that joined since, identical on every
// peer), then peers that gossip knows but that are not (or no longer) Raft
// members, with MemberNone; in masterless mode, every member gossip knows,
// including those that failed or left in the last hour. The slice is new on
// every call; the Metadata maps are shared and must not be modified.
func (c *Cluster) Peers() []Member { return c.mode.peers(c.gossipMembers()) }

// peers: in masterless mode, what gossip knows.
func (m masterlessMode) peers(gossip []membership.Member) []Member {
	out := make([]Member, 0, len(gossip))
	for _, gm := range gossip {
		out = append(out, m.c.gossipMember(gm))
	}
	return out
}

// peers: in leader mode, the registry, then the others gossip knows.
func (l leaderMode) peers(gossip []membership.Member) []Member {
	c := l.c
	reg := c.reg.Load()
	s := c.snap.Load()
	leader, hasLeader := c.Leader()
	out := make([]Member, 0, reg.Len()+1)
	for _, p := range reg.Sorted() {
		out = append(out, c.memberIn(peerOf(p), s, leader.Identifier, hasLeader, gossip))
	}
	for _, gm := range gossip {
		if _, ok := reg.ID(gm.Name); ok {
			continue
		}
		m := c.gossipMember(gm)
		m.Role = MemberNone
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Identifier, b.Identifier) })
	return out
}

// gossipMembers returns gossip's members by name (none before Start).
func (c *Cluster) gossipMembers() []membership.Member {
	g := c.gossip()
	if g == nil {
		return nil
	}
	return g.Members()
}

// memberOf describes p as Peers would now.
func (c *Cluster) memberOf(p *Peer) Member {
	leader, hasLeader := c.Leader()
	return c.memberIn(p, c.snap.Load(), leader.Identifier, hasLeader, c.gossipMembers())
}

func (c *Cluster) memberIn(p *Peer, s *snapshot, leader string, hasLeader bool, gossip []membership.Member) Member {
	id := NodeID(p.Identifier)
	m := Member{Peer: *p, IsSelf: id == c.selfID}
	_, m.Voter = slices.BinarySearch(s.view.Voters, id)
	_, learner := slices.BinarySearch(s.view.Learners, id)
	switch {
	case hasLeader && leader == p.Identifier:
		m.Role = MemberLeader
	case m.Voter:
		m.Role = MemberFollower
	case learner:
		m.Role = MemberLearner
	}
	if i, ok := slices.BinarySearchFunc(gossip, p.Identifier, func(g membership.Member, name string) int {
		return cmp.Compare(g.Name, name)
	}); ok {
		m.Health, m.Since = healthOf(gossip[i].State), gossip[i].Since
		m.Check = checkOf(gossip[i].Check)
	} else if m.IsSelf {
		m.Health = HealthAlive
	}
	if m.IsSelf {
		m.Check, _ = c.Health()
	}
	if m.Check == "" {
		m.Check = CheckNone
	}
	return m
}

// gossipMember describes a member from gossip alone; its metadata is the
// JSON object it publishes.
func (c *Cluster) gossipMember(gm membership.Member) Member {
	m := Member{
		Peer:   Peer{Host: gm.Host, Port: gm.Port, Identifier: gm.Name, Metadata: c.gossipMeta.Decode(gm.Name, gm.Meta)},
		Role:   MemberMasterless,
		Health: healthOf(gm.State),
		Since:  gm.Since,
		IsSelf: gm.Name == c.cfg.Identifier,
		Check:  checkOf(gm.Check),
	}
	if m.IsSelf {
		m.Check, _ = c.Health()
		m.Metadata = c.selfMetadata()
	}
	return m
}

// EventType says what happened in an Event.
type EventType int

// Event types.
const (
	// EventJoined: a member joined (leader mode: it was added to the
	// registry; masterless: gossip saw it join or come back).
	EventJoined EventType = iota + 1
	// EventUpdated: a member's metadata changed.
	EventUpdated
	// EventSuspect: gossip suspects a member (a probe failed).
	EventSuspect
	// EventAlive: a suspect or failed member answers again (leader mode:
	// also a registry member first seen alive by gossip).
	EventAlive
	// EventFailed: gossip declared a member dead.
	EventFailed
	// EventLeft: a member left gracefully (gossip).
	EventLeft
	// EventRemoved: a member was removed from the registry (leader mode:
	// Leave, RemovePeer or the dead-member timeout).
	EventRemoved
	// EventLeaderChanged: this peer's view of leadership changed (role,
	// term, leader or lease); Event.State has it, as Watch reports it.
	EventLeaderChanged
)

// String returns the type's name: "joined", "updated", "suspect", "alive",
// "failed", "left", "removed" or "leader".
func (t EventType) String() string {
	switch t {
	case EventJoined:
		return "joined"
	case EventUpdated:
		return "updated"
	case EventSuspect:
		return "suspect"
	case EventAlive:
		return "alive"
	case EventFailed:
		return "failed"
	case EventLeft:
		return "left"
	case EventRemoved:
		return "removed"
	case EventLeaderChanged:
		return "leader"
	}
	return fmt.Sprintf("event(%d)", int(t))
}

// MarshalText encodes the type as its name.
func (t EventType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Event is a change in the cluster as this peer sees it.
type Event struct {
	// Type says what happened.
	Type EventType `json:"type"`
	// Member is the member concerned, right after the change (not set for
	// EventLeaderChanged).
	Member Member `json:"member"`
	// State is this peer's leadership view (EventLeaderChanged only).
	State State `json:"state"`
	// Time is when this peer saw the change.
	Time time.Time `json:"time"`
}

// EventBuffer is how many events an Events channel holds; a reader that
// falls this far behind loses the events that do not fit (Peers and State
// always have the current view).
const EventBuffer = 256

// Events returns a channel of membership and leadership changes as they
// happen, in the order this peer sees them: members joining, changing
// metadata, becoming suspect, failing, coming back, leaving or being
// removed, and leadership changes (EventLeaderChanged, carrying the same
// State as Watch). It complements Watch, which keeps only the latest State:
// Events keeps every event, up to EventBuffer unread ones. The channel is
// closed when ctx is done or the Cluster stops.
func (c *Cluster) Events(ctx context.Context) <-chan Event {
	return c.events.Subscribe(ctx, EventBuffer)
}
