package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"time"
)

// Validity defaults.
const (
	// DefaultCAValidity is how long a CA made by NewCA is valid (10 years).
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity is how long a certificate from CA.Issue is valid
	// unless told otherwise (2 years).
	DefaultCertValidity = 2 * 365 * 24 * time.Hour
	// DerivedCertValidity is how long the in-memory certificate a peer
	// issues itself from a cluster key is valid; it is renewed when half of
	// that has passed.
	DerivedCertValidity = 30 * 24 * time.Hour
	// clockSkew backdates certificates, so that a peer whose clock is a
	// little behind accepts a certificate issued just now.
	clockSkew = time.Hour
)

// The derived CA's fixed validity: every peer must build the very same
// certificate, so it cannot depend on the clock.
var (
	derivedNotBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	derivedNotAfter  = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) // RFC 5280: no expiry
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key crypto.Signer
}

// NewCA makes a CA with a fresh ECDSA P-256 key, valid from now (backdated
// an hour for clock skew) for validity (DefaultCAValidity if zero). name is
// put in the subject's common name ("QCluster CA" if empty).
func NewCA(name string, validity time.Duration) (*CA, error) {
	if name == "" {
		name = "QCluster CA"
	}
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := caTemplate(name, randomSerial(), now.Add(-clockSkew), now.Add(validity))
	return selfSign(tmpl, key)
}

// DeriveCA returns the CA derived from a cluster key: an Ed25519 key from
// HKDF-SHA256 and a certificate from a fixed template, so that every peer
// holding the key builds byte-for-byte the same CA.
func DeriveCA(clusterKey []byte) (*CA, error) {
	if len(clusterKey) != ClusterKeySize {
		return nil, fmt.Errorf("%w: cluster key is %d bytes, want %d", ErrInvalidKey, len(clusterKey), ClusterKeySize)
	}
	key := ed25519.NewKeyFromSeed(derive(clusterKey, labelCASeed, ed25519.SeedSize))
	serial := new(big.Int).SetBytes(derive(clusterKey, labelCASerial, 16))
	serial.SetBit(serial, 127, 0) // positive, at most 16 bytes
	if serial.Sign() == 0 {
		serial.SetInt64(1)
	}
	tmpl := caTemplate("QCluster CA (cluster key)", serial, derivedNotBefore, derivedNotAfter)
	return selfSign(tmpl, key)
}

// caTemplate is the certificate template of a CA.
func caTemplate(name string, serial *big.Int, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"QCluster"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
}

// selfSign signs tmpl with key and returns the CA.
func selfSign(tmpl *x509.Certificate, key crypto.Signer) (*CA, error) {
	ski, err := keyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl.SubjectKeyId = ski
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// keyID is a subject key identifier: the first 20 bytes of the SHA-256 of
// the public key's DER encoding. It is set explicitly (not left to
// crypto/x509) so that it does not depend on the Go version.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

func randomSerial() *big.Int {
	b := randomBytes(16)
	b[0] &= 0x7f
	s := new(big.Int).SetBytes(b)
	if s.Sign() == 0 {
		s.SetInt64(1)
	}
	return s
}

// LoadCA parses a CA certificate and its private key from PEM (as written
// by CertPEM and KeyPEM), checking that they belong together and that the
// certificate is a CA.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: CA certificate and key: %v", ErrInvalidKey, err)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: CA certificate: %v", ErrInvalidKey, err)
		}
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: certificate %q is not a CA", ErrInvalidKey, cert.Subject.String())
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: CA key of type %T cannot sign", ErrInvalidKey, pair.PrivateKey)
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA private key in PEM (PKCS #8). Keep it secret.
func (ca *CA) KeyPEM() ([]byte, error) {
	return keyPEM(ca.Key)
}

// Pool returns a pool holding the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issued is a certificate issued by a CA, with its private key.
type Issued struct {
	// Cert is the certificate.
	Cert *x509.Certificate
	// Key is its private key (ECDSA P-256).
	Key crypto.Signer
}

// CertPEM returns the certificate in PEM.
func (is *Issued) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Cert.Raw})
}

// KeyPEM returns the private key in PEM (PKCS #8).
func (is *Issued) KeyPEM() ([]byte, error) { return keyPEM(is.Key) }

// TLSCertificate returns the certificate and key as a tls.Certificate.
func (is *Issued) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: is.Key, Leaf: is.Cert}
}

// Issue makes a certificate for id, usable by a TLS server and client,
// with a fresh ECDSA P-256 key, valid from now (backdated an hour for clock
// skew) for validity (DefaultCertValidity if zero) but never beyond the
// CA's own expiry. hosts (host names or IP addresses) become DNS and IP
// SANs, so that HTTP clients can verify the peer by host name; empty ones
// and duplicates are skipped.
func (ca *CA) Issue(id Identity, hosts []string, validity time.Duration) (*Issued, error) {
	return ca.issueAt(id, hosts, time.Now(), validity)
}

func (ca *CA) issueAt(id Identity, hosts []string, now time.Time, validity time.Duration) (*Issued, error) {
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	return ca.IssueBetween(id, hosts, now.Add(-clockSkew), now.Add(validity))
}

// IssueBetween is Issue with an explicit validity window (notAfter is
// capped at the CA's expiry). Tests use it to make expired certificates.
func (ca *CA) IssueBetween(id Identity, hosts []string, notBefore, notAfter time.Time) (*Issued, error) {
	if id.Identifier == "" {
		return nil, errors.New("pki: cannot issue a certificate for an empty identifier")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	ski, err := keyID(key.Public())
	if err != nil {
		return nil, err
	}
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: id.Identifier, Organization: []string{"QCluster"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
		SubjectKeyId: ski,
	}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign certificate for %s: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate: %w", err)
	}
	return &Issued{Cert: cert, Key: key}, nil
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCertsPEM returns every CERTIFICATE block of a PEM document. Other
// blocks are an error (a key pasted into a certificate file, say).
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("not PEM (want -----BEGIN CERTIFICATE-----)")
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q PEM block; want only CERTIFICATE blocks", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(out) == 0 {
		return nil, errors.New("holds no certificate")
	}
	return out, nil
}
