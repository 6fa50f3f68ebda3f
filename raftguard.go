package qcluster

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/metadata"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/transport"
)

// What the raft input path lets in, beyond what package consensus refuses
// by itself (see its package doc): the proposals a leader appends for a
// follower, and the identity a member's certificate must name.

// errForeignProposal: a follower forwarded a proposal it may not make.
var errForeignProposal = errors.New("a member may only propose its own metadata and valid KV operations")

// acceptProposal decides, on the leader, whether an entry that the member
// from forwarded may be appended to the log. A follower proposes its own
// metadata (SetMetadata, and the registry loop that reconciles it): a
// registry entry {"op":"metadata"} whose identifier is the sender's,
// within MaxMetadataSize; and KV operations (see acceptKVProposal).
// Membership changes are proposed on the leader only.
func (c *Cluster) acceptProposal(from uint64, data []byte) error {
	if k, ok := registry.KindOf(data); ok && byte(k) == kv.Kind {
		return acceptKVProposal(from, data)
	}
	re, err := registry.DecodeOp(data)
	if err != nil {
		return fmt.Errorf("%w: %w", errForeignProposal, err)
	}
	p, ok := c.reg.Load().Get(from)
	if !ok || p.Identifier != re.Identifier {
		return fmt.Errorf("%w: node %x proposed metadata for %q", errForeignProposal, from, re.Identifier)
	}
	if _, err := metadata.Encode(re.Metadata); err != nil {
		return err
	}
	return nil
}

// vouch is the node's consensus.Config.Vouch: whether a raft message from
// node id, which this peer's configuration does not list (it missed id's
// addition, or id is a stranger), comes from a peer of this cluster. With
// TLS, yes: the transport checked that the stream's certificate, issued by
// the cluster's CA, names node id, and that every message on it is from
// id. Without TLS, when gossip lists id as a live member (no more than an
// address book: without TLS any node ID can be claimed by anyone who can
// reach the port, a member's as well; see docs/security.md).
func (c *Cluster) vouch(id uint64) bool {
	if c.sec.TLSOn() {
		return true
	}
	for _, gm := range c.gossipMembers() {
		if gm.State == membership.StateAlive && NodeID(gm.Name) == id {
			return true
		}
	}
	return false
}

// acceptKVProposal accepts a KV operation that decodes (within the key
// and value sizes) and, when it binds a key to a member (Ephemeral, a
// lock), binds it to the sender: a member may bind keys only to itself,
// or it could plant keys that vanish with another member, or take a lock
// in another member's name. A quota change (kv.OpSetQuota) is never
// accepted from another member: only the leader proposes it, its own
// configured kv_quota_bytes.
func acceptKVProposal(from uint64, data []byte) error {
	op, err := kv.DecodeOp(data)
	if err != nil {
		return fmt.Errorf("%w: %w", errForeignProposal, err)
	}
	if op.Type == kv.OpSetQuota {
		return fmt.Errorf("%w: node %x proposed a quota change (only the leader sets the quota)", errForeignProposal, from)
	}
	if op.Owner != 0 && op.Owner != from {
		return fmt.Errorf("%w: node %x bound key %q to node %x", errForeignProposal, from, op.Key, op.Owner)
	}
	return nil
}

// onRaftRefused runs on the node goroutine for every raft message the core
// refused (counted there, exported as qcluster_raft_messages_refused_total).
// A message that made raft panic closes the stream it came on: a peer that
// sends such bytes is broken or hostile, and its later messages are suspect
// too (a genuine peer reconnects).
func onRaftRefused(tr *transport.Transport, m raftpb.Message, r consensus.Refusal) {
	if r == consensus.RefusedPanic && tr != nil {
		tr.CloseInbound(m.From)
	}
}

// memberIdentifier returns the identifier of the member with node ID id
// (for the transport: a member's certificate must name exactly it).
func (c *Cluster) memberIdentifier(id uint64) (string, bool) {
	p, ok := c.reg.Load().Get(id)
	if !ok {
		return "", false
	}
	return p.Identifier, true
}
