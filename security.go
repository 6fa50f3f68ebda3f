package qcluster

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/internal/pki"
)

// security is what Start needs to secure a peer, built by newSecurity.
type security struct {
	// creds is the peer's TLS identity; nil when TLS is off.
	creds *pki.Credentials
	// serverTLS is for the Mux (transport.MuxOptions.TLS); nil when TLS is
	// off.
	serverTLS *tls.Config
	// clientTLS is for every connection this peer opens to another: the
	// raft transport (transport.Config.TLS), the gossip
	// (membership.Config.TLS) and HTTP requests to other peers
	// (http.Transport.TLSClientConfig, with https:// URLs). The transport
	// and the gossip set their ALPN protocol on a clone. Nil when TLS is
	// off.
	clientTLS *tls.Config
	// gossipKeys is the gossip keyring (membership.Config.GossipKeys):
	// first gossip_key if set, else the key derived from cluster_key, then
	// extra_gossip_keys; nil when gossip is not encrypted.
	gossipKeys [][]byte
}

// tlsOn reports whether TLS is on.
func (s *security) tlsOn() bool { return s != nil && s.creds != nil }

// certNotAfter returns when the peer's certificate expires (a certificate
// derived from a cluster key is renewed before then), and false when TLS
// is off.
func (s *security) certNotAfter() (time.Time, bool) {
	if !s.tlsOn() {
		return time.Time{}, false
	}
	return s.creds.NotAfter(), true
}

// newSecurity builds a peer's TLS configurations and gossip keyring from
// its config fields: tls (t, may be nil), cluster_key, gossip_key and
// extra_gossip_keys (keys accepted besides the primary one, during a key
// rotation). hosts are the host names and addresses the peer is reached at
// (listen_host, advertise_host), put in the certificate a cluster key
// derives, so that HTTPS clients can verify it by host name. It expects a
// config that config.SecurityProblems accepted (Validate runs it, and New calls
// Validate); an error here means the files changed since.
func newSecurity(identifier, clusterName string, hosts []string, t *TLSConfig, clusterKey, gossipKey string, extraGossipKeys []string) (*security, error) {
	id := pki.Identity{Cluster: clusterName, Identifier: identifier}
	s := &security{}
	var err error
	switch {
	case t != nil:
		if s.creds, err = pki.LoadFiles(t.CAFile, t.CertFile, t.KeyFile, id); err != nil {
			return nil, fmt.Errorf("%w: tls: %w", ErrInvalidConfig, err)
		}
	case clusterKey != "":
		key, err := pki.ParseClusterKey(clusterKey)
		if err != nil {
			return nil, fmt.Errorf("%w: cluster_key: %w", ErrInvalidConfig, err)
		}
		if s.creds, err = pki.Derive(key, id, hosts); err != nil {
			return nil, fmt.Errorf("qcluster: cluster_key: %w", err)
		}
		s.gossipKeys = [][]byte{pki.DeriveGossipKey(key)}
	}
	if gossipKey != "" {
		k, err := pki.ParseGossipKey(gossipKey)
		if err != nil {
			return nil, fmt.Errorf("%w: gossip_key: %w", ErrInvalidConfig, err)
		}
		s.gossipKeys = [][]byte{k}
	}
	for _, e := range extraGossipKeys {
		k, err := pki.ParseGossipKey(e)
		if err != nil {
			return nil, fmt.Errorf("%w: extra_gossip_keys: %w", ErrInvalidConfig, err)
		}
		s.gossipKeys = append(s.gossipKeys, k)
	}
	if s.creds != nil {
		s.serverTLS = s.creds.ServerTLS()
		s.clientTLS = s.creds.ClientTLS()
	}
	return s, nil
}
