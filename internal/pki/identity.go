package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// URIScheme is the scheme of the URI SAN that names a peer.
const URIScheme = "qcluster"

// Sentinel errors. Functions wrap them with %w and add detail: test for them
// with errors.Is.
var (
	// ErrNoIdentity: a certificate has no qcluster:// URI SAN.
	ErrNoIdentity = errors.New("pki: certificate names no QCluster peer (no qcluster:// URI SAN)")
	// ErrIdentityMismatch: a certificate names another peer or cluster than
	// the expected one.
	ErrIdentityMismatch = errors.New("pki: certificate names another peer")
	// ErrUntrusted: a certificate does not chain to the cluster CA, has
	// expired, is not yet valid, or may not be used for TLS.
	ErrUntrusted = errors.New("pki: certificate not trusted")
	// ErrNoCertificate: the other side of a connection presented no
	// certificate.
	ErrNoCertificate = errors.New("pki: no certificate presented")
	// ErrInvalidKey: a cluster or gossip key, or a PEM file, is malformed.
	ErrInvalidKey = errors.New("pki: invalid key")
)

// Identity is what a peer certificate names: the cluster and the peer's
// identifier within it.
type Identity struct {
	// Cluster is the cluster name ("" for a cluster without a name).
	Cluster string
	// Identifier is the peer's identifier; never empty in a valid identity.
	Identifier string
}

// String returns the identity's URI.
func (id Identity) String() string { return id.URI().String() }

// URI returns the URI SAN that names id (see the package doc).
func (id Identity) URI() *url.URL {
	ident := url.PathEscape(id.Identifier)
	var s string
	switch {
	case id.Cluster == "":
		s = URIScheme + ":///" + ident
	case hostSafe(id.Cluster):
		s = URIScheme + "://" + id.Cluster + "/" + ident
	default:
		s = URIScheme + ":///" + url.PathEscape(id.Cluster) + "/" + ident
	}
	u, err := url.Parse(s)
	if err != nil {
		// Unreachable: every byte is either host-safe or percent-encoded.
		return &url.URL{Scheme: URIScheme, Opaque: s}
	}
	return u
}

// hostSafe reports whether a cluster name can be a URI host as it is.
func hostSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return s != ""
}

// ParseIdentityURI decodes a qcluster:// URI. It returns ErrNoIdentity
// (wrapped) for another scheme, and an error for a malformed URI.
func ParseIdentityURI(u *url.URL) (Identity, error) {
	if u == nil || !strings.EqualFold(u.Scheme, URIScheme) {
		return Identity{}, ErrNoIdentity
	}
	bad := func(why string) (Identity, error) {
		return Identity{}, fmt.Errorf("%w: malformed identity URI %q: %s", ErrNoIdentity, u.String(), why)
	}
	if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return bad("want qcluster://<cluster>/<identifier>")
	}
	p := u.EscapedPath()
	if !strings.HasPrefix(p, "/") {
		return bad("no identifier")
	}
	segs := strings.Split(p[1:], "/")
	var id Identity
	switch {
	case u.Host != "" && len(segs) == 1:
		id.Cluster = u.Host
	case u.Host == "" && len(segs) == 1:
	case u.Host == "" && len(segs) == 2:
		c, err := url.PathUnescape(segs[0])
		if err != nil || c == "" {
			return bad("bad cluster name")
		}
		id.Cluster = c
		segs = segs[1:]
	default:
		return bad("want qcluster://<cluster>/<identifier>")
	}
	ident, err := url.PathUnescape(segs[0])
	if err != nil || ident == "" {
		return bad("bad identifier")
	}
	id.Identifier = ident
	return id, nil
}

// IdentityOf returns the identity a certificate names. It does not verify
// the certificate. A certificate without a qcluster:// URI SAN returns
// ErrNoIdentity; one with several returns ErrNoIdentity too (it would be
// ambiguous).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, ErrNoCertificate
	}
	var (
		found Identity
		n     int
	)
	for _, u := range cert.URIs {
		if !strings.EqualFold(u.Scheme, URIScheme) {
			continue
		}
		id, err := ParseIdentityURI(u)
		if err != nil {
			return Identity{}, err
		}
		found = id
		n++
	}
	switch n {
	case 0:
		return Identity{}, fmt.Errorf("%w (subject %q)", ErrNoIdentity, cert.Subject.String())
	case 1:
		return found, nil
	}
	return Identity{}, fmt.Errorf("%w: certificate %q has %d qcluster:// URI SANs; it must have one", ErrNoIdentity, cert.Subject.String(), n)
}
