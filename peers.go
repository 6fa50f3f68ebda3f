package qcluster

import (
	"cmp"
	"slices"
)

// Peers returns every configured member of the cluster, this peer
// included, sorted by identifier. The slice is new on every call; the
// Metadata maps are shared and must not be modified.
func (c *Cluster) Peers() []Peer {
	out := make([]Peer, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.Identifier, b.Identifier) })
	return out
}
