package qcluster

import (
	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/transport"
)

// What the raft input path lets in, beyond what package consensus refuses
// by itself (see its package doc): the identity a member's certificate
// must name, and whom a peer vouches for. The proposals a leader appends
// for a follower are vetted by internal/raftguard.

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
