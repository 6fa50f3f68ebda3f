package registry

import (
	"reflect"

	"go.etcd.io/raft/v3/raftpb"
)

// ChangeType says what an applied entry did to one member.
type ChangeType int

// Change types.
const (
	// Joined: the member is new, or its address changed.
	Joined ChangeType = iota + 1
	// Updated: the member's metadata changed.
	Updated
	// Removed: the member was removed.
	Removed
	// Restated: a valid entry named the member as the registry already
	// had it (a repeated join, metadata set to what it was). The state
	// does not change; the caller may still want to know that the log
	// confirmed the record (its own metadata, for instance).
	Restated
)

// String returns "joined", "updated", "removed" or "restated".
func (t ChangeType) String() string {
	switch t {
	case Joined:
		return "joined"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	case Restated:
		return "restated"
	}
	return "unknown"
}

// Change is what applying an entry did to one member: the member as it is
// now (as it was, for Removed).
type Change struct {
	Type   ChangeType
	ID     uint64
	Member *Member
}

// Apply applies one committed log entry to s and returns the next state
// and what changed. s is never modified: when the entry changes nothing,
// the state returned is s itself. Entries that are not for the registry
// (other kinds, empty entries, configuration changes without a valid
// member record) change nothing.
func Apply(s *State, e raftpb.Entry) (*State, []Change) {
	return ApplyAll(s, []raftpb.Entry{e})
}

// ApplyAll applies committed entries in order, as repeated Apply would,
// copying s at most once.
func ApplyAll(s *State, es []raftpb.Entry) (*State, []Change) {
	a := applier{prev: s, next: s}
	for _, e := range es {
		a.apply(e)
	}
	return a.next, a.changes
}

// applier is one batch of entries being applied: next is copied from prev
// on the first change.
type applier struct {
	prev, next *State
	changes    []Change
}

func (a *applier) mutable() *State {
	if a.next == a.prev {
		a.next = a.prev.clone()
	}
	return a.next
}

func (a *applier) apply(e raftpb.Entry) {
	switch e.Type {
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if err := cc.Unmarshal(e.Data); err != nil {
			return
		}
		a.confChange(cc)
	case raftpb.EntryNormal:
		op, err := DecodeOp(e.Data)
		if err != nil {
			return
		}
		a.op(op)
	}
}

func (a *applier) confChange(cc raftpb.ConfChange) {
	switch cc.Type {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		m, err := DecodeMember(cc.Context, cc.NodeID)
		if err != nil {
			return
		}
		if old, ok := a.next.members[cc.NodeID]; ok && old.Same(m) {
			a.changes = append(a.changes, Change{Restated, cc.NodeID, old})
			return
		}
		a.mutable().put(m)
		a.changes = append(a.changes, Change{Joined, cc.NodeID, a.next.members[cc.NodeID]})
	case raftpb.ConfChangeRemoveNode:
		if old, ok := a.next.members[cc.NodeID]; ok {
			a.mutable().remove(cc.NodeID)
			a.changes = append(a.changes, Change{Removed, cc.NodeID, old})
		}
	}
}

func (a *applier) op(op Op) {
	// DecodeOp knows only OpMetadata.
	id := NodeID(op.Identifier)
	old, ok := a.next.members[id]
	if !ok || old.Identifier != op.Identifier {
		return
	}
	if reflect.DeepEqual(old.Metadata, op.Metadata) {
		a.changes = append(a.changes, Change{Restated, id, old})
		return
	}
	m := *old
	m.Metadata = op.Metadata
	a.mutable().put(m)
	a.changes = append(a.changes, Change{Updated, id, a.next.members[id]})
}

// Diff returns the changes from prev to next that a snapshot brings: a
// Joined change for each member of next that prev lacks or records
// otherwise. Members of prev that next lacks are not reported (a snapshot
// installs what the log says; removals were reported when applied).
func Diff(prev, next *State) []Change {
	var out []Change
	for _, m := range next.Sorted() {
		id := NodeID(m.Identifier)
		if old, ok := prev.members[id]; !ok || !old.Same(*m) {
			out = append(out, Change{Joined, id, m})
		}
	}
	return out
}
