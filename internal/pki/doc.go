// Package pki gives QCluster peers their TLS identities: a cluster CA,
// per-peer certificates that name the peer, and the tls.Config values that
// make every connection between peers mutually authenticated.
//
// # Identities
//
// A peer certificate names its peer with one URI subject alternative name
// (an [Identity]):
//
//	qcluster://<cluster_name>/<identifier>   e.g. qcluster://orders/server_a
//	qcluster:///<identifier>                 when the cluster has no name
//	qcluster:///<cluster_name>/<identifier>  when the name cannot be a URI host
//	                                         (it has spaces, '/', ':', ...)
//
// Both parts are percent-encoded as URI path segments (a '/' in an
// identifier becomes %2F). The certificate's common name repeats the
// identifier for people reading it; only the URI counts. The host names
// and IP addresses a peer is reached at are DNS and IP SANs too, so that
// HTTP clients such as curl can verify the peer as a server by host name.
//
// Peers do not verify each other's host names: a connection between peers
// is accepted when the other side's certificate chains to the cluster CA,
// is valid now, and names an identity of the same cluster. Which identifier
// it must name is for the caller to check (the raft transport compares it
// with the node ID a stream claims).
//
// # Two ways to get credentials
//
//   - Files ([LoadFiles], [LoadPEM]): a CA certificate (or several, during a
//     CA rotation), and this peer's certificate and key, as made by
//     "qcluster tls init" or any other CA. Certificates may be ECDSA, RSA or
//     Ed25519.
//   - A cluster key ([Derive]): 32 random bytes shared by every peer. Each
//     peer derives from it, with HKDF-SHA256, the same Ed25519 CA key and
//     builds the same CA certificate (a fixed template), then issues itself
//     an ECDSA P-256 certificate for its identity, in memory, renewed before
//     it expires. The gossip encryption key is derived from the same secret
//     with another HKDF label ([DeriveGossipKey]). Anyone holding the cluster
//     key can mint a certificate for any identity: it is the cluster's root
//     secret.
//
// All TLS configurations require TLS 1.3.
package pki
