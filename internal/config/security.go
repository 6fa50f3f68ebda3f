package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

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

// SecurityProblems checks the security fields of a config: tls (t, may be
// nil), cluster_key, gossip_key and extra_gossip_keys, for the peer
// identifier of cluster clusterName. It reads the tls files and checks that
// the certificate chains to the CA, is valid now and names this peer.
// Each problem's Text starts with its field path (At) and says how to fix
// it; Validate reports them with the other problems.
func SecurityProblems(identifier, clusterName string, t *TLSConfig, clusterKey, gossipKey string, extraGossipKeys []string) []Problem {
	var ps []Problem
	add := func(at, format string, args ...any) {
		ps = append(ps, Problem{At: at, Text: at + ": " + fmt.Sprintf(format, args...)})
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
