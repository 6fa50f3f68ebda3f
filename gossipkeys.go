package qcluster

import (
	"fmt"

	"github.com/qcluster/qcluster/internal/pki"
)

// Gossip key rotation at run time, without restarting any peer (so without
// any leadership change):
//
//  1. InstallGossipKey(new) on every peer: each can now read messages
//     encrypted with the new key, and still sends with the old one.
//  2. UseGossipKey(new) on every peer: each sends with the new key.
//  3. RemoveGossipKey(old) on every peer, once none still sends with it
//     (qcluster_gossip_secondary_key_packets_total stops growing everywhere:
//     a few gossip intervals after step 2).
//
// Then make the new key the gossip_key in every peer's config for its next
// start. The calls need gossip encryption on (gossip_key or cluster_key);
// keys are base64 strings as in the config ("qcluster tls key" makes one).
// See docs/security.md.

// InstallGossipKey adds key to this peer's gossip keyring, for decryption
// only (step 1 of a rotation). Installing a key twice is a no-op.
func (c *Cluster) InstallGossipKey(key string) error {
	return c.withGossipKey(key, func(k []byte) error { return c.gossip().InstallKey(k) })
}

// UseGossipKey makes an installed key the one this peer encrypts gossip
// with (step 2).
func (c *Cluster) UseGossipKey(key string) error {
	return c.withGossipKey(key, func(k []byte) error { return c.gossip().UseKey(k) })
}

// RemoveGossipKey removes a key that is not the primary one (step 3).
func (c *Cluster) RemoveGossipKey(key string) error {
	return c.withGossipKey(key, func(k []byte) error { return c.gossip().RemoveKey(k) })
}

func (c *Cluster) withGossipKey(key string, fn func([]byte) error) error {
	k, err := pki.ParseGossipKey(key)
	if err != nil {
		return fmt.Errorf("qcluster: gossip key: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrClosed
	case !c.started:
		return ErrNotStarted
	}
	if err := fn(k); err != nil {
		return fmt.Errorf("qcluster: %w", err)
	}
	return nil
}
