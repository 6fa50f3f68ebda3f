// Package security builds what a peer needs to secure its connections
// from its config: its TLS identity and the server and client TLS configs
// (tls, or derived from cluster_key), and the gossip keyring (gossip_key,
// the key derived from cluster_key, extra_gossip_keys).
package security

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/pki"
)

// Settings is what Start needs to secure a peer, built by New.
type Settings struct {
	// Creds is the peer's TLS identity; nil when TLS is off.
	Creds *pki.Credentials
	// ServerTLS is for the Mux (transport.MuxOptions.TLS); nil when TLS is
	// off.
	ServerTLS *tls.Config
	// ClientTLS is for every connection this peer opens to another: the
	// raft transport (transport.Config.TLS), the gossip
	// (membership.Config.TLS) and HTTP requests to other peers
	// (http.Transport.TLSClientConfig, with https:// URLs). The transport
	// and the gossip set their ALPN protocol on a clone. Nil when TLS is
	// off.
	ClientTLS *tls.Config
	// GossipKeys is the gossip keyring (membership.Config.GossipKeys):
	// first gossip_key if set, else the key derived from cluster_key, then
	// extra_gossip_keys; nil when gossip is not encrypted.
	GossipKeys [][]byte
}

// TLSOn reports whether TLS is on.
func (s *Settings) TLSOn() bool { return s != nil && s.Creds != nil }

// CertNotAfter returns when the peer's certificate expires (a certificate
// derived from a cluster key is renewed before then), and false when TLS
// is off.
func (s *Settings) CertNotAfter() (time.Time, bool) {
	if !s.TLSOn() {
		return time.Time{}, false
	}
	return s.Creds.NotAfter(), true
}

// New builds a peer's TLS configurations and gossip keyring from
// its config fields: tls (t, may be nil), cluster_key, gossip_key and
// extra_gossip_keys (keys accepted besides the primary one, during a key
// rotation). hosts are the host names and addresses the peer is reached at
// (listen_host, advertise_host), put in the certificate a cluster key
// derives, so that HTTPS clients can verify it by host name. It expects a
// config that config.SecurityProblems accepted (Validate runs it, and qcluster.New
// calls Validate); an error here means the files changed since.
func New(identifier, clusterName string, hosts []string, t *config.TLSConfig, clusterKey, gossipKey string, extraGossipKeys []string) (*Settings, error) {
	id := pki.Identity{Cluster: clusterName, Identifier: identifier}
	s := &Settings{}
	var err error
	switch {
	case t != nil:
		if s.Creds, err = pki.LoadFiles(t.CAFile, t.CertFile, t.KeyFile, id); err != nil {
			return nil, fmt.Errorf("%w: tls: %w", config.ErrInvalidConfig, err)
		}
	case clusterKey != "":
		key, err := pki.ParseClusterKey(clusterKey)
		if err != nil {
			return nil, fmt.Errorf("%w: cluster_key: %w", config.ErrInvalidConfig, err)
		}
		if s.Creds, err = pki.Derive(key, id, hosts); err != nil {
			return nil, fmt.Errorf("qcluster: cluster_key: %w", err)
		}
		s.GossipKeys = [][]byte{pki.DeriveGossipKey(key)}
	}
	if gossipKey != "" {
		k, err := pki.ParseGossipKey(gossipKey)
		if err != nil {
			return nil, fmt.Errorf("%w: gossip_key: %w", config.ErrInvalidConfig, err)
		}
		s.GossipKeys = [][]byte{k}
	}
	for _, e := range extraGossipKeys {
		k, err := pki.ParseGossipKey(e)
		if err != nil {
			return nil, fmt.Errorf("%w: extra_gossip_keys: %w", config.ErrInvalidConfig, err)
		}
		s.GossipKeys = append(s.GossipKeys, k)
	}
	if s.Creds != nil {
		s.ServerTLS = s.Creds.ServerTLS()
		s.ClientTLS = s.Creds.ClientTLS()
	}
	return s, nil
}
