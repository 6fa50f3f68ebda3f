package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// Verifier is the one check of the certificates that peers and clients
// present: a chain that leads to one of Roots, valid now, for a key usage,
// whose leaf names a QCluster peer of Cluster (of any cluster with
// AnyCluster). Credentials
// verify with one; so do the CLI's and the Go client's TLS configurations
// (NewClientTLS, the cluster-key client), and the acceptors that read the
// chain the TLS stack verified (Peer). Host names are never checked: peers
// are known by identity, whatever address they are reached at.
type Verifier struct {
	// Roots are the trusted CA certificates.
	Roots *x509.CertPool
	// Cluster is the only cluster whose peers are accepted
	// (ErrIdentityMismatch otherwise), unless AnyCluster.
	Cluster string
	// AnyCluster accepts a peer of any cluster (tools that talk to a
	// cluster whose name they do not know).
	AnyCluster bool
	// Now is the clock validity is judged by (nil: time.Now).
	Now func() time.Time
}

// Verify checks a certificate chain (leaf first) for usage and returns the
// identity the leaf names. Errors wrap ErrNoCertificate, ErrUntrusted
// (expired, unknown CA, wrong key usage), ErrNoIdentity or
// ErrIdentityMismatch (another cluster).
func (v *Verifier) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, ErrNoCertificate
	}
	if err := v.chain(chain, usage); err != nil {
		return Identity{}, fmt.Errorf("%w: %s: %v", ErrUntrusted, describe(chain[0]), err)
	}
	return v.identity(chain[0])
}

// VerifyServer is a tls.Config.VerifyConnection for a client that sets
// InsecureSkipVerify (host names are not checked): the server's chain
// must pass Verify for server authentication.
func (v *Verifier) VerifyServer(cs tls.ConnectionState) error {
	_, err := v.Verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
	return err
}

// Peer returns the identity of the other side of a completed handshake
// whose certificate chain the TLS stack verified (an acceptor with
// ClientCAs: tls.ConnectionState.VerifiedChains); it must name a peer of
// Cluster (unless AnyCluster). Roots are not used: the handshake checked the chain.
func (v *Verifier) Peer(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 {
		return Identity{}, fmt.Errorf("%w: no verified peer certificate", ErrNoCertificate)
	}
	if _, err := PeerIdentity(cs); err != nil {
		return Identity{}, err
	}
	return v.identity(cs.PeerCertificates[0])
}

// identity returns the identity cert names, if it is of Cluster (or
// AnyCluster).
func (v *Verifier) identity(cert *x509.Certificate) (Identity, error) {
	id, err := IdentityOf(cert)
	if err != nil {
		return Identity{}, err
	}
	if !v.AnyCluster && id.Cluster != v.Cluster {
		return Identity{}, fmt.Errorf("%w: %s is a peer of cluster %q, this is cluster %q", ErrIdentityMismatch, id, id.Cluster, v.Cluster)
	}
	return id, nil
}

// chain verifies chain (leaf first) to Roots for usage, at Now.
func (v *Verifier) chain(chain []*x509.Certificate, usage x509.ExtKeyUsage) error {
	var inter *x509.CertPool
	if len(chain) > 1 {
		inter = x509.NewCertPool()
		for _, ic := range chain[1:] {
			inter.AddCert(ic)
		}
	}
	opts := x509.VerifyOptions{Roots: v.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}
	if v.Now != nil {
		opts.CurrentTime = v.Now()
	}
	_, err := chain[0].Verify(opts)
	return err
}
