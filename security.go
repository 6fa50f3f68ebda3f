package qcluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/qcluster/qcluster/internal/pki"
)

// TLSConfig names the PEM files of a peer's TLS identity: the "tls" object
// of the config. "qcluster tls init" makes them for every peer of a config.
//
// The certificate must be signed by a CA of CAFile and name this peer with
// the URI SAN qcluster://<cluster_name>/<identifier> (qcluster:///<identifier>
// without a cluster name); see docs/security.md.
type TLSConfig struct {
	// CAFile is the cluster CA certificate (PEM). It may hold several CA
	// certificates, during a CA rotation: peers trust all of them.
	CAFile string `json:"ca_file"`
	// CertFile is this peer's certificate (PEM), optionally followed by
	// intermediate CA certificates.
	CertFile string `json:"cert_file"`
	// KeyFile is this peer's private key (PEM). Keep it private.
	KeyFile string `json:"key_file"`
}

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

// securedBy reports whether a config with these fields runs its peer
// connections and API over TLS.
func securedBy(t *TLSConfig, clusterKey string) bool {
	return t != nil || clusterKey != ""
}

// newSecurity builds a peer's TLS configurations and gossip keyring from
// its config fields: tls (t, may be nil), cluster_key, gossip_key and
// extra_gossip_keys (keys accepted besides the primary one, during a key
// rotation). hosts are the host names and addresses the peer is reached at
// (listen_host, advertise_host), put in the certificate a cluster key
// derives, so that HTTPS clients can verify it by host name. It expects a
// config that securityProblems accepted (Validate runs it, and New calls
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

// securityProblem is one problem with the security fields of a config: the
// JSON path of the field, and a message that starts with it and says how
// to fix it.
type securityProblem struct {
	at, text string
}

// securityProblems checks the security fields of a config: tls (t, may be
// nil), cluster_key, gossip_key and extra_gossip_keys, for the peer
// identifier of cluster clusterName. It reads the tls files and checks that
// the certificate chains to the CA, is valid now and names this peer.
func securityProblems(identifier, clusterName string, t *TLSConfig, clusterKey, gossipKey string, extraGossipKeys []string) []securityProblem {
	var ps []securityProblem
	add := func(at, format string, args ...any) {
		ps = append(ps, securityProblem{at: at, text: at + ": " + fmt.Sprintf(format, args...)})
	}
	if t != nil && clusterKey != "" {
		add("cluster_key", "set either tls (certificate files) or cluster_key (certificates derived from one secret), not both")
	}
	if clusterKey != "" {
		if _, err := pki.ParseClusterKey(clusterKey); err != nil {
			add("cluster_key", "%s", trimPKI(err))
		}
	}
	if gossipKey != "" {
		if _, err := pki.ParseGossipKey(gossipKey); err != nil {
			add("gossip_key", "%s", trimPKI(err))
		}
	} else if t != nil {
		add("gossip_key", "missing: with tls, set gossip_key too, or gossip packets (UDP, which TLS does not cover) travel unauthenticated; 'qcluster tls key' prints one (or use cluster_key alone, which derives both)")
	}
	for i, e := range extraGossipKeys {
		at := fmt.Sprintf("extra_gossip_keys[%d]", i)
		if gossipKey == "" && clusterKey == "" {
			add(at, "set gossip_key (or cluster_key) first: extra keys only decrypt, the primary key encrypts")
			break
		}
		if _, err := pki.ParseGossipKey(e); err != nil {
			add(at, "%s", trimPKI(err))
		}
	}
	if t == nil {
		return ps
	}
	files := []struct{ field, name, what string }{
		{"tls.ca_file", t.CAFile, "the cluster CA certificate"},
		{"tls.cert_file", t.CertFile, "this peer's certificate"},
		{"tls.key_file", t.KeyFile, "this peer's private key"},
	}
	missing := false
	for _, f := range files {
		if f.name == "" {
			add(f.field, "missing; give the PEM file of %s ('qcluster tls init' makes them)", f.what)
			missing = true
			continue
		}
		if _, err := os.Stat(f.name); err != nil {
			add(f.field, "%s", trimPKI(err))
			missing = true
		}
	}
	if missing || identifier == "" {
		return ps
	}
	id := pki.Identity{Cluster: clusterName, Identifier: identifier}
	if _, err := pki.LoadFiles(t.CAFile, t.CertFile, t.KeyFile, id); err != nil {
		at := "tls"
		switch {
		case errors.Is(err, pki.ErrIdentityMismatch), errors.Is(err, pki.ErrNoIdentity):
			at = "tls.cert_file"
			err = fmt.Errorf("%w; issue one for this peer with 'qcluster tls issue'", err)
		case errors.Is(err, pki.ErrUntrusted):
			at = "tls.cert_file"
		}
		add(at, "%s", trimPKI(err))
	}
	return ps
}

// trimPKI drops the package prefix of an error from pki.
func trimPKI(err error) string {
	return strings.TrimPrefix(err.Error(), "pki: ")
}
