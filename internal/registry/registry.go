// Package registry is the member registry of a leader-mode cluster as a
// pure state machine on the Raft log: who the members are, where they
// listen and their metadata.
//
// It holds no lock, does no I/O and knows nothing of the peer that runs it:
// Apply takes a State and one committed entry and returns the next State
// and what changed; a State is immutable, so readers share it freely. The
// caller feeds it the entries the consensus core commits, in order, and
// publishes the changes.
//
// What the log carries:
//
//   - the snapshot that founds a cluster (index 1) carries the founding
//     members (Snapshot; peers with the same config write the same bytes);
//   - a configuration change that adds a member carries its record in the
//     change's context (EncodeMember);
//   - a configuration change that removes a member drops its record;
//   - a normal entry whose first byte is KindRegistry carries an Op
//     (EncodeOp): today only OpMetadata, which replaces one member's
//     metadata.
//
// Snapshots taken when the log is compacted carry the whole registry.
// Normal entries of another Kind belong to another state machine (the KV
// store sits beside this one): Apply leaves them alone.
//
// Every byte given to Restore, DecodeOp, DecodeMember and Apply may come
// from a hostile peer: bad input is an error (or, for Apply, no change),
// never a panic.
package registry

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"maps"
	"net"
	"reflect"
	"slices"
	"strconv"
)

// Errors of the decoders. They are wrapped with %w: test with errors.Is.
var (
	// ErrNotRegistry: a normal entry is not a registry entry (empty, or
	// another Kind).
	ErrNotRegistry = errors.New("registry: not a registry entry")
	// ErrMalformed: the bytes do not decode.
	ErrMalformed = errors.New("registry: malformed")
	// ErrUnknownOp: a registry entry names an operation this version does
	// not know.
	ErrUnknownOp = errors.New("registry: unknown operation")
	// ErrWrongNode: a member record does not belong to the node ID of the
	// configuration change that carries it.
	ErrWrongNode = errors.New("registry: record names another node")
)

// NodeID returns the Raft node ID of the member named identifier: the
// 64-bit FNV-1a hash of the identifier, except that a hash of 0 (which Raft
// reserves for "no node") becomes 1. It is stable across versions and
// processes (qcluster.NodeID is the same function).
func NodeID(identifier string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(identifier))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// Member is one member as the log carries it.
type Member struct {
	Identifier string         `json:"identifier"`
	Host       string         `json:"host"`
	Port       int            `json:"port"`
	Metadata   map[string]any `json:"metadata,omitempty"`
}

// Addr returns host:port.
func (m Member) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Same reports whether two records say the same.
func (m Member) Same(o Member) bool {
	return m.Identifier == o.Identifier && m.Host == o.Host && m.Port == o.Port && reflect.DeepEqual(m.Metadata, o.Metadata)
}

// State is one immutable version of the registry: members by node ID, and
// node IDs by identifier. The zero of *State is not usable: start from New
// or Restore.
type State struct {
	members map[uint64]*Member
	idents  map[string]uint64
}

// New returns the registry holding ms (a founding registry).
func New(ms []Member) *State {
	s := &State{members: make(map[uint64]*Member, len(ms)), idents: make(map[string]uint64, len(ms))}
	for _, m := range ms {
		s.put(m)
	}
	return s
}

// Get returns the member with node ID id. The Member is shared: do not
// modify it.
func (s *State) Get(id uint64) (*Member, bool) {
	m, ok := s.members[id]
	return m, ok
}

// ID returns the node ID of the member named identifier.
func (s *State) ID(identifier string) (uint64, bool) {
	id, ok := s.idents[identifier]
	return id, ok
}

// Len returns the number of members.
func (s *State) Len() int { return len(s.members) }

// All yields every member with its node ID, in no particular order.
func (s *State) All() iter.Seq2[uint64, *Member] { return maps.All(s.members) }

// Sorted returns the members sorted by identifier.
func (s *State) Sorted() []*Member {
	out := slices.Collect(maps.Values(s.members))
	slices.SortFunc(out, func(a, b *Member) int { return cmp.Compare(a.Identifier, b.Identifier) })
	return out
}

func (s *State) clone() *State {
	return &State{members: maps.Clone(s.members), idents: maps.Clone(s.idents)}
}

// put adds or replaces a member; only on a State not yet published.
func (s *State) put(m Member) {
	id := NodeID(m.Identifier)
	if old, ok := s.members[id]; ok {
		delete(s.idents, old.Identifier)
	}
	s.members[id] = &m
	s.idents[m.Identifier] = id
}

// remove drops a member; only on a State not yet published.
func (s *State) remove(id uint64) {
	if m, ok := s.members[id]; ok {
		delete(s.idents, m.Identifier)
		delete(s.members, id)
	}
}

// snapshotData is the registry's encoding in a Raft snapshot.
type snapshotData struct {
	Members []Member `json:"members"`
}

// Snapshot encodes the whole registry for a Raft snapshot: the members
// sorted by identifier, so equal registries encode to equal bytes.
func (s *State) Snapshot() []byte {
	var d snapshotData
	for _, m := range s.Sorted() {
		d.Members = append(d.Members, *m)
	}
	b, err := json.Marshal(d)
	if err != nil {
		// Metadata is checked to encode before it enters the registry.
		panic(fmt.Sprintf("registry: encode snapshot: %v", err))
	}
	return b
}

// Restore decodes a registry that Snapshot encoded.
func Restore(data []byte) (*State, error) {
	var d snapshotData
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %w", ErrMalformed, err)
	}
	s := New(nil)
	for _, m := range d.Members {
		s.put(m)
	}
	return s, nil
}

// EncodeMember encodes m for the context of the configuration change that
// adds it.
func EncodeMember(m Member) ([]byte, error) { return json.Marshal(m) }

// DecodeMember decodes the context of a configuration change that adds
// node id; the record must name that node.
func DecodeMember(data []byte, id uint64) (Member, error) {
	var m Member
	if len(data) == 0 {
		return Member{}, fmt.Errorf("%w: no member record", ErrMalformed)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return Member{}, fmt.Errorf("%w: member record: %w", ErrMalformed, err)
	}
	if NodeID(m.Identifier) != id {
		return Member{}, fmt.Errorf("%w: %q is not node %x", ErrWrongNode, m.Identifier, id)
	}
	return m, nil
}

// Kind is the first byte of a normal log entry: which state machine the
// rest is for. New kinds take new bytes; a state machine ignores the kinds
// of the others.
type Kind byte

// KindRegistry marks registry entries (an Op in JSON follows).
const KindRegistry Kind = 'R'

// KindOf returns the kind of a normal entry's data (false: empty).
func KindOf(data []byte) (Kind, bool) {
	if len(data) == 0 {
		return 0, false
	}
	return Kind(data[0]), true
}

// OpMetadata replaces one member's metadata.
const OpMetadata = "metadata"

// Op is a registry operation in a normal log entry.
type Op struct {
	Op         string         `json:"op"` // OpMetadata
	Identifier string         `json:"identifier"`
	Metadata   map[string]any `json:"metadata"`
}

// EncodeOp encodes op as a normal entry's data: KindRegistry, then JSON.
func EncodeOp(op Op) ([]byte, error) {
	b, err := json.Marshal(op)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(KindRegistry)}, b...), nil
}

// DecodeOp decodes a normal entry's data as a registry operation this
// version knows.
func DecodeOp(data []byte) (Op, error) {
	if k, ok := KindOf(data); !ok || k != KindRegistry || len(data) < 2 {
		return Op{}, ErrNotRegistry
	}
	var op Op
	if err := json.Unmarshal(data[1:], &op); err != nil {
		return Op{}, fmt.Errorf("%w: registry entry: %w", ErrMalformed, err)
	}
	if op.Op != OpMetadata {
		return Op{}, fmt.Errorf("%w: registry operation %q", ErrUnknownOp, op.Op)
	}
	return op, nil
}
