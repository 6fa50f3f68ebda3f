package membership

import (
	"bytes"
	"time"
)

// State is a member's health as this member sees it.
type State int

// Member states.
const (
	// StateAlive: the member answers probes (or nobody has suspected it).
	StateAlive State = iota
	// StateSuspect: a probe of the member failed; unless it refutes the
	// suspicion it is declared dead after the suspicion timeout. A suspect
	// member still counts as a member (and as an owner, see Owner).
	StateSuspect
	// StateDead: the member failed — the suspicion timed out.
	StateDead
	// StateLeft: the member left gracefully (Leave).
	StateLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Live reports whether s is alive or suspect: a member that has not been
// declared dead or left.
func (s State) Live() bool { return s == StateAlive || s == StateSuspect }

// Check is the state of a member's application health check, which it
// gossips with its metadata (QCluster: a failing member is no candidate
// for leadership).
type Check uint8

// Check states.
const (
	CheckNone    Check = iota // the member has no health check
	CheckPassing              // its check passes
	CheckFailing              // its check fails
)

// String returns "none", "passing" or "failing".
func (c Check) String() string {
	switch c {
	case CheckPassing:
		return "passing"
	case CheckFailing:
		return "failing"
	}
	return "none"
}

// Member is one member of the cluster as this member sees it. Values
// returned by this package are copies; the caller may keep and modify
// them.
type Member struct {
	// Name is the member's unique identifier.
	Name string
	// Host is the member's advertised IP address, and Port its port: TCP
	// (API, raft, gossip streams) and UDP (gossip packets) alike.
	Host string
	Port int
	// Meta is the member's most recent complete metadata (nil if none is
	// known yet).
	Meta []byte
	// MetaPending is true while newer metadata (larger than
	// InlineMetaSize) has been announced but not yet fetched; Meta then
	// still holds the previous metadata, and an EventUpdated follows once
	// the new one arrives.
	MetaPending bool
	// Check is the state of the member's application health check as it
	// last gossiped it (SetCheck).
	Check Check
	// State is the member's health.
	State State
	// Incarnation is the member's memberlist incarnation number as last
	// seen in gossip (0 until some gossip about the member has been
	// seen). It grows whenever the member refutes a suspicion or changes
	// its metadata.
	Incarnation uint32
	// Since is when this member last saw State change.
	Since time.Time
}

// Addr returns Host:Port.
func (m Member) Addr() string { return hostPort(m.Host, m.Port) }

// clone returns a deep copy of m.
func (m Member) clone() Member {
	m.Meta = bytes.Clone(m.Meta)
	return m
}

// EventType says what happened to a member.
type EventType int

// Event types.
const (
	// EventJoined: a member joined, or came back after failing or leaving.
	// If its metadata is still being fetched (Member.MetaPending), an
	// EventUpdated follows when it arrives.
	EventJoined EventType = iota + 1
	// EventUpdated: a member's metadata changed.
	EventUpdated
	// EventSuspect: a member stopped answering probes and is suspected.
	EventSuspect
	// EventRecovered: a suspect member refuted the suspicion and is alive.
	EventRecovered
	// EventFailed: a member was declared dead.
	EventFailed
	// EventLeft: a member left gracefully. It may follow an EventFailed
	// for the same member when the leave notice arrived late (through a
	// push/pull exchange rather than gossip).
	EventLeft
)

// String returns the event type's name.
func (t EventType) String() string {
	switch t {
	case EventJoined:
		return "joined"
	case EventUpdated:
		return "updated"
	case EventSuspect:
		return "suspect"
	case EventRecovered:
		return "recovered"
	case EventFailed:
		return "failed"
	case EventLeft:
		return "left"
	}
	return "unknown"
}

// Event is a change to one member, with the member as it was right after
// the change (a copy).
type Event struct {
	Type   EventType
	Member Member
}
