// Package raftguard decides, on the leader, which proposals a follower
// forwarded inside raft may be appended to the log (the
// consensus.Config.AcceptProposal hook; the core counts every refusal as a
// refused raft message). A follower proposes its own metadata (SetMetadata,
// and the registry loop that reconciles it) and KV operations; membership
// changes and quota changes are proposed on the leader only.
package raftguard

import (
	"errors"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/internal/metadata"
	"github.com/qcluster/qcluster/internal/registry"
)

// ErrForeignProposal: a follower forwarded a proposal it may not make.
var ErrForeignProposal = errors.New("a member may only propose its own metadata and valid KV operations")

// Deps is what the guard reads from the peer.
type Deps struct {
	// Member returns the identifier of the member with node ID id as the
	// registry has it.
	Member func(id uint64) (identifier string, ok bool)
	// MinSessionTTL returns the shortest session TTL this peer grants
	// (kv.MinSessionTTL or two election timeouts, whichever is longer).
	MinSessionTTL func() time.Duration
}

// Guard vets forwarded proposals; see Accept.
type Guard struct{ d Deps }

// New returns a guard over d.
func New(d Deps) *Guard { return &Guard{d: d} }

// Accept decides whether an entry that the member from forwarded may be
// appended to the log: a registry entry {"op":"metadata"} whose
// identifier is the sender's, within MaxMetadataSize; or a KV operation
// (see acceptKV). Every refusal wraps ErrForeignProposal or the metadata
// error.
func (g *Guard) Accept(from uint64, data []byte) error {
	if k, ok := registry.KindOf(data); ok && byte(k) == kv.Kind {
		return g.acceptKV(from, data)
	}
	re, err := registry.DecodeOp(data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrForeignProposal, err)
	}
	id, ok := g.d.Member(from)
	if !ok || id != re.Identifier {
		return fmt.Errorf("%w: node %x proposed metadata for %q", ErrForeignProposal, from, re.Identifier)
	}
	if _, err := metadata.Encode(re.Metadata); err != nil {
		return err
	}
	return nil
}

// acceptKV accepts a KV operation that decodes (within the key and value
// sizes) and, when it binds a key to a member (Ephemeral, a lock, a
// session), binds it to the sender: a member may bind keys only to
// itself, or it could plant keys that vanish with another member, or take
// a lock in another member's name. A session grant's TTL must be at least
// the leader's MinSessionTTL, as the proposer checks (a session shorter
// than two election timeouts could expire across a fail-over). A quota
// change (kv.OpSetQuota) is never accepted from another member: only the
// leader proposes it, its own configured kv_quota_bytes.
func (g *Guard) acceptKV(from uint64, data []byte) error {
	op, err := kv.DecodeOp(data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrForeignProposal, err)
	}
	if op.Type == kv.OpSetQuota {
		return fmt.Errorf("%w: node %x proposed a quota change (only the leader sets the quota)", ErrForeignProposal, from)
	}
	if op.Owner != 0 && op.Owner != from {
		return fmt.Errorf("%w: node %x bound key %q to node %x", ErrForeignProposal, from, op.Key, op.Owner)
	}
	if op.Type == kv.OpGrant {
		if lo := g.d.MinSessionTTL(); op.TTL < lo {
			return fmt.Errorf("%w: node %x granted a session of %v (at least %v)", ErrForeignProposal, from, op.TTL, lo)
		}
	}
	return nil
}
