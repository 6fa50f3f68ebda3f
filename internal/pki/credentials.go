package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials are a peer's TLS identity: the cluster CA(s) it trusts and
// its own certificate. They make the tls.Config of both sides of a
// connection between peers ([Credentials.ServerTLS],
// [Credentials.ClientTLS]). Safe for concurrent use.
type Credentials struct {
	id    Identity
	roots *x509.CertPool
	now   func() time.Time

	cert atomic.Pointer[tls.Certificate]

	// Derived credentials renew their certificate; file-based ones do not.
	ca      *CA
	hosts   []string
	renewAt atomic.Int64 // unix nanoseconds; 0 = never
	renewMu sync.Mutex
}

// Option adjusts Credentials.
type Option func(*Credentials)

// WithClock makes the Credentials judge certificate validity (their own at
// load time, and peers' at handshake time) by now instead of time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *Credentials) { c.now = now }
}

func (c *Credentials) time() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// LoadFiles reads the CA certificate(s), this peer's certificate (optionally
// followed by intermediate CA certificates) and its private key from PEM
// files, and checks them as [LoadPEM] does. Errors name the file at fault.
func LoadFiles(caFile, certFile, keyFile string, want Identity, opts ...Option) (*Credentials, error) {
	read := func(what, name string) ([]byte, error) {
		if name == "" {
			return nil, fmt.Errorf("pki: %s: no file given", what)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", what, err)
		}
		return b, nil
	}
	caPEM, err := read("ca_file", caFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := read("cert_file", certFile)
	if err != nil {
		return nil, err
	}
	kPEM, err := read("key_file", keyFile)
	if err != nil {
		return nil, err
	}
	c, err := LoadPEM(caPEM, certPEM, kPEM, want, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w (ca_file %s, cert_file %s, key_file %s)", err, caFile, certFile, keyFile)
	}
	return c, nil
}

// LoadPEM builds Credentials from PEM: caPEM holds one or more CA
// certificates (several during a CA rotation: peers trust all of them),
// certPEM this peer's certificate, optionally followed by intermediates,
// and keyPEM its private key. It checks that the key matches the
// certificate, that the certificate chains to one of the CAs, is valid now
// for TLS servers and clients, and names want — so that a misconfigured
// peer fails at start with a clear error rather than at its first
// handshake.
func LoadPEM(caPEM, certPEM, keyPEM []byte, want Identity, opts ...Option) (*Credentials, error) {
	cas, err := parseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: ca_file %v", ErrInvalidKey, err)
	}
	roots := x509.NewCertPool()
	for i, ca := range cas {
		if !ca.IsCA {
			return nil, fmt.Errorf("%w: ca_file: certificate %d (%q) is not a CA certificate", ErrInvalidKey, i+1, ca.Subject.String())
		}
		roots.AddCert(ca)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: cert_file and key_file: %v", ErrInvalidKey, err)
	}
	chain := make([]*x509.Certificate, len(pair.Certificate))
	for i, der := range pair.Certificate {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("%w: cert_file: certificate %d: %v", ErrInvalidKey, i+1, err)
		}
	}
	pair.Leaf = chain[0]
	c := &Credentials{id: want, roots: roots}
	for _, o := range opts {
		o(c)
	}
	if err := c.checkOwn(chain); err != nil {
		return nil, err
	}
	c.cert.Store(&pair)
	return c, nil
}

// NewCredentials returns Credentials that trust roots and present cert as
// id, without the checks of LoadPEM: tests use it to make peers with
// expired, foreign or mislabelled certificates.
func NewCredentials(roots *x509.CertPool, cert tls.Certificate, id Identity, opts ...Option) *Credentials {
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	c := &Credentials{id: id, roots: roots}
	for _, o := range opts {
		o(c)
	}
	c.cert.Store(&cert)
	return c
}

// Derive builds Credentials from a cluster key: the CA of [DeriveCA], and a
// certificate for id issued now (see [DerivedCertValidity]), naming hosts
// too (see [CA.Issue]). The certificate lives in memory only and is
// renewed when half its validity has passed.
func Derive(clusterKey []byte, id Identity, hosts []string, opts ...Option) (*Credentials, error) {
	ca, err := DeriveCA(clusterKey)
	if err != nil {
		return nil, err
	}
	c := &Credentials{id: id, roots: ca.Pool(), ca: ca, hosts: append([]string(nil), hosts...)}
	for _, o := range opts {
		o(c)
	}
	if err := c.renew(); err != nil {
		return nil, err
	}
	return c, nil
}

// renew issues a fresh derived certificate.
func (c *Credentials) renew() error {
	now := c.time()
	is, err := c.ca.issueAt(c.id, c.hosts, now, DerivedCertValidity)
	if err != nil {
		return err
	}
	tc := is.TLSCertificate()
	c.cert.Store(&tc)
	c.renewAt.Store(now.Add(DerivedCertValidity / 2).UnixNano())
	return nil
}

// current returns the certificate to present, renewing a derived one that
// is due (keeping the old one if renewal fails; it is still valid).
func (c *Credentials) current() *tls.Certificate {
	if at := c.renewAt.Load(); at != 0 && c.time().UnixNano() >= at {
		c.renewMu.Lock()
		if c.time().UnixNano() >= c.renewAt.Load() {
			_ = c.renew()
		}
		c.renewMu.Unlock()
	}
	return c.cert.Load()
}

// checkOwn verifies this peer's own chain at load time.
func (c *Credentials) checkOwn(chain []*x509.Certificate) error {
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := c.verifier().chain(chain, u); err != nil {
			return fmt.Errorf("%w: cert_file: %v", ErrUntrusted, err)
		}
	}
	got, err := IdentityOf(chain[0])
	if err != nil {
		return fmt.Errorf("cert_file: %w; this peer needs a certificate with URI SAN %s", err, c.id)
	}
	if got != c.id {
		return fmt.Errorf("%w: cert_file names %s, but this peer is %s (identifier %q, cluster_name %q)",
			ErrIdentityMismatch, got, c.id, c.id.Identifier, c.id.Cluster)
	}
	return nil
}

// Identity returns this peer's identity.
func (c *Credentials) Identity() Identity { return c.id }

// Certificate returns the certificate this peer presents now.
func (c *Credentials) Certificate() *x509.Certificate { return c.current().Leaf }

// NotAfter returns when the certificate this peer presents now expires
// (a derived one is renewed before then).
func (c *Credentials) NotAfter() time.Time { return c.Certificate().NotAfter }

// verifier returns the Verifier of this peer: its roots, its cluster,
// its clock.
func (c *Credentials) verifier() *Verifier {
	return &Verifier{Roots: c.roots, Cluster: c.id.Cluster, Now: c.time}
}

// Verify checks a certificate chain a peer presented (leaf first): it must
// chain to a trusted CA, be valid now for usage, and name an identity of
// this peer's cluster, which it returns (see Verifier.Verify). Errors wrap
// ErrNoCertificate, ErrUntrusted (expired, unknown CA, wrong key usage),
// ErrNoIdentity or ErrIdentityMismatch (another cluster).
func (c *Credentials) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	return c.verifier().Verify(chain, usage)
}

// describe names a certificate in errors: its identity, else its subject.
func describe(cert *x509.Certificate) string {
	if id, err := IdentityOf(cert); err == nil {
		return "certificate of " + id.String()
	}
	return fmt.Sprintf("certificate %q", cert.Subject.String())
}

// ServerTLS returns the configuration for accepting connections: TLS 1.3,
// this peer's certificate, and client certificates verified against the
// cluster CA when presented (tls.VerifyClientCertIfGiven) and refused when
// they name another cluster. Whether a client certificate is required is
// the acceptor's decision (transport.Mux requires one from peers, and from
// HTTP clients unless told otherwise): a verified one shows up in
// tls.ConnectionState.VerifiedChains. The caller may set NextProtos.
func (c *Credentials) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  c.roots,
		Time:       c.now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, err := c.verifier().identity(cs.PeerCertificates[0])
			return err
		},
	}
}

// ClientTLS returns the configuration for dialling a peer: TLS 1.3, this
// peer's certificate, and the server's certificate verified by [Verify]
// (the cluster CA and cluster name, not the host name: peers are known by
// identity, whatever address they are reached at). Which identifier the
// server must name is the caller's check ([PeerIdentity] after the
// handshake). The caller may set NextProtos.
func (c *Credentials) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // VerifyConnection verifies the chain and identity instead of the host name
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.current(), nil
		},
		Time:             c.now,
		VerifyConnection: c.verifier().VerifyServer,
	}
}

// PeerIdentity returns the identity named by the certificate the other side
// of a completed handshake presented. The handshake verified it (with
// ServerTLS or ClientTLS); a connection without a certificate returns
// ErrNoCertificate.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if !cs.HandshakeComplete {
		return Identity{}, errors.New("pki: TLS handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoCertificate
	}
	return IdentityOf(cs.PeerCertificates[0])
}

// NewClientTLS returns a client configuration for tools that talk to a
// peer's HTTPS API (the CLI, the Go client): the server certificate must
// chain to a CA in caFile and name a QCluster peer (of any cluster; host
// names are not checked). certFile and keyFile, when both given, are the
// client certificate to present (peers require one unless configured
// otherwise); make one with 'qcluster tls issue'.
func NewClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: CA file: %w", err)
	}
	cas, err := parseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file %s %v", ErrInvalidKey, caFile, err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // VerifyConnection checks the chain and identity
		VerifyConnection:   (&Verifier{Roots: roots, AnyCluster: true}).VerifyServer,
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate %s / key %s: %v", ErrInvalidKey, certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case certFile != "" || keyFile != "":
		return nil, errors.New("pki: give both a client certificate and its key, or neither")
	}
	return cfg, nil
}
