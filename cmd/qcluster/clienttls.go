package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/qcluster/qcluster/internal/pki"
)

// Environment variables of the client commands' TLS flags.
const (
	envCACert     = "QCLUSTER_CACERT"
	envCert       = "QCLUSTER_CERT"
	envKey        = "QCLUSTER_KEY"
	envClusterKey = "QCLUSTER_CLUSTER_KEY"
)

// clientTLSUsage is the part of every client command's help that
// describes the TLS flags.
const clientTLSUsage = `A cluster secured with TLS ("cluster_key" or "tls" in the peers' configs)
serves its API over HTTPS only; then give either --cacert (the cluster CA,
ca.pem) with --cert and --key (a client certificate made by 'qcluster tls
issue'; not needed when the peers have "api_client_certs": "optional"), or
--cluster-key (the peers' cluster_key: the command derives the CA and a
client certificate from it, as every peer does). Defaults: $` + envCACert + `,
$` + envCert + `, $` + envKey + `, $` + envClusterKey + `. Addresses then mean
https://.
`

// clientIdentifier is the identifier in the client certificate the client
// commands derive from a cluster key.
const clientIdentifier = "qcluster-cli"

// tlsFlags are the client commands' TLS flags.
type tlsFlags struct {
	cacert, cert, key string
	clusterKey        string
}

// register adds --cacert, --cert, --key and --cluster-key to fs.
func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cacert, "cacert", os.Getenv(envCACert), "the cluster CA certificate `file` (PEM): talk HTTPS (env "+envCACert+")")
	fs.StringVar(&f.cert, "cert", os.Getenv(envCert), "client certificate `file` (PEM), with --cacert (env "+envCert+")")
	fs.StringVar(&f.key, "key", os.Getenv(envKey), "the client certificate's private key `file` (PEM) (env "+envKey+")")
	// The key's default is read after parsing, so that help never prints
	// it.
	fs.StringVar(&f.clusterKey, "cluster-key", "", "the peers' cluster_key `key`: talk HTTPS with a client certificate derived from it (default $"+envClusterKey+")")
}

// config returns the TLS configuration the flags ask for, or nil when they
// ask for none (plain HTTP). Bad combinations are usage errors; files that
// cannot be read or parsed are runtime errors.
func (f *tlsFlags) config(cmd string) (*tls.Config, error) {
	if f.clusterKey == "" {
		f.clusterKey = os.Getenv(envClusterKey)
	}
	files := f.cacert != "" || f.cert != "" || f.key != ""
	switch {
	case f.clusterKey != "" && files:
		return nil, usageErrorf(cmd, "%s: give either --cluster-key or --cacert/--cert/--key, not both (check $%s, $%s, $%s and $%s)",
			cmd, envClusterKey, envCACert, envCert, envKey)
	case f.clusterKey != "":
		key, err := pki.ParseClusterKey(f.clusterKey)
		if err != nil {
			return nil, usageErrorf(cmd, "%s: --cluster-key: %s", cmd, strings.TrimPrefix(err.Error(), "pki: "))
		}
		return clusterKeyClientTLS(key)
	case !files:
		return nil, nil
	case f.cacert == "":
		return nil, usageErrorf(cmd, "%s: --cert and --key need --cacert, the cluster CA certificate", cmd)
	case (f.cert == "") != (f.key == ""):
		return nil, usageErrorf(cmd, "%s: give both --cert and --key, or neither (peers with \"api_client_certs\": \"optional\" need none)", cmd)
	}
	cfg, err := pki.NewClientTLS(f.cacert, f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", cmd, strings.TrimPrefix(err.Error(), "pki: "))
	}
	return cfg, nil
}

// clusterKeyClientTLS returns a client configuration for the peers of a
// cluster configured with "cluster_key": it trusts the CA the key derives
// (server host names are not checked: peers are known by identity) and
// presents a client certificate from that CA. A client certificate must
// name the peers' cluster (cluster_name), which the command does not know:
// it takes it from the certificate the server presents, which the TLS 1.3
// handshake verifies before the client sends its own.
func clusterKeyClientTLS(clusterKey []byte) (*tls.Config, error) {
	ca, err := pki.DeriveCA(clusterKey)
	if err != nil {
		return nil, err
	}
	k := &keyClient{ca: ca, roots: ca.Pool(), certs: map[string]*tls.Certificate{}}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		InsecureSkipVerify:   true, // verifyServer checks the chain and the identity instead of the host name
		VerifyConnection:     k.verifyServer,
		GetClientCertificate: k.clientCertificate,
	}, nil
}

// keyClient holds the state of clusterKeyClientTLS's configuration.
type keyClient struct {
	ca    *pki.CA
	roots *x509.CertPool

	mu sync.Mutex
	// cluster is the cluster name of the last server certificate
	// verified. The handshake that verified it asks for the client
	// certificate next; concurrent handshakes with peers of clusters of
	// different names that share one key could mix them up, which a
	// command talking to one cluster does not do.
	cluster string
	certs   map[string]*tls.Certificate // issued, by cluster name
}

// verifyServer checks that the server's certificate chains to the derived
// CA, is valid now for a server, and names a QCluster peer.
func (k *keyClient) verifyServer(cs tls.ConnectionState) error {
	id, err := (&pki.Verifier{Roots: k.roots, AnyCluster: true}).Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
	if errors.Is(err, pki.ErrUntrusted) {
		return fmt.Errorf("the server's certificate is not from this cluster key's CA: %w", err)
	}
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.cluster = id.Cluster
	k.mu.Unlock()
	return nil
}

// clientCertificate returns a certificate for clientIdentifier in the
// cluster of the server being talked to, issuing it on first use.
func (k *keyClient) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.certs[k.cluster]; ok {
		return c, nil
	}
	// Valid for a day (backdated for clock skew): a command runs for
	// minutes, a watch perhaps for hours; a new run issues a new one.
	is, err := k.ca.Issue(pki.Identity{Cluster: k.cluster, Identifier: clientIdentifier}, nil, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	c := is.TLSCertificate()
	k.certs[k.cluster] = &c
	return &c, nil
}

// tlsHint returns advice for an error that shows the TLS flags do not fit
// the peer ("" when there is none).
func tlsHint(err error, tlsOn bool) string {
	msg := err.Error()
	var cve *tls.CertificateVerificationError
	switch {
	case strings.Contains(msg, "this cluster key's CA"):
		return "--cluster-key (or $" + envClusterKey + ") is not the peers' cluster_key"
	case strings.Contains(msg, "requires TLS"):
		return "give --cluster-key (the peers' cluster_key), or --cacert with --cert and --key (see 'qcluster tls issue')"
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return "the peer does not use TLS: drop --cacert, --cert, --key and --cluster-key (and $" + envCACert + ", $" + envClusterKey + ")"
	case strings.Contains(msg, "certificate required"):
		return "the peer requires a client certificate: give --cert and --key (see 'qcluster tls issue'), or --cluster-key"
	case errors.Is(err, pki.ErrUntrusted), errors.As(err, &cve), strings.Contains(msg, "bad certificate"), strings.Contains(msg, "unknown certificate authority"):
		if tlsOn {
			return "the TLS credentials do not fit this cluster: check --cacert/--cert/--key or --cluster-key (and the peers' cluster_name)"
		}
		return "give the cluster CA with --cacert, or --cluster-key"
	}
	return ""
}
