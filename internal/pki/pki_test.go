package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestIdentityURIRoundTrip(t *testing.T) {
	cases := []struct {
		id   Identity
		want string
	}{
		{Identity{"orders", "server_a"}, "qcluster://orders/server_a"},
		{Identity{"", "server_a"}, "qcluster:///server_a"},
		{Identity{"prod-eu.1", "a/b c"}, "qcluster://prod-eu.1/a%2Fb%20c"},
		{Identity{"Prod EU", "x"}, "qcluster:///Prod%20EU/x"},
		{Identity{"a:b", "ü"}, "qcluster:///a:b/%C3%BC"},
		{Identity{"p/q", "x"}, "qcluster:///p%2Fq/x"},
	}
	for _, tc := range cases {
		u := tc.id.URI()
		if got := u.String(); got != tc.want {
			t.Errorf("%+v: URI %q, want %q", tc.id, got, tc.want)
		}
		// Through the text form, as a certificate carries it.
		p, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("%+v: %v", tc.id, err)
		}
		back, err := ParseIdentityURI(p)
		if err != nil || back != tc.id {
			t.Errorf("%q parses to %+v, %v; want %+v", tc.want, back, err, tc.id)
		}
	}
	for _, bad := range []string{
		"https://orders/server_a", "qcluster://orders/", "qcluster://orders/a/b", "qcluster:opaque",
		"qcluster://orders/a?x=1", "qcluster://orders:1/a", "qcluster:///a/b/c", "qcluster://u@orders/a",
	} {
		u, err := url.Parse(bad)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := ParseIdentityURI(u); !errors.Is(err, ErrNoIdentity) {
			t.Errorf("%q parses to %+v, %v; want ErrNoIdentity", bad, id, err)
		}
	}
}

func TestIssuedCertificateNamesIdentityAndHosts(t *testing.T) {
	ca := newCA(t)
	id := Identity{"orders", "server_a"}
	is, err := ca.Issue(id, []string{"localhost", "127.0.0.1", "", "localhost", "db1.example.com", "::1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := IdentityOf(is.Cert)
	if err != nil || got != id {
		t.Fatalf("IdentityOf = %+v, %v", got, err)
	}
	if want := []string{"localhost", "db1.example.com"}; strings.Join(is.Cert.DNSNames, ",") != strings.Join(want, ",") {
		t.Errorf("DNS SANs %v, want %v", is.Cert.DNSNames, want)
	}
	if len(is.Cert.IPAddresses) != 2 {
		t.Errorf("IP SANs %v", is.Cert.IPAddresses)
	}
	if is.Cert.Subject.CommonName != "server_a" {
		t.Errorf("CN %q", is.Cert.Subject.CommonName)
	}
	if err := is.Cert.VerifyHostname("localhost"); err != nil {
		t.Errorf("curl-style host name check: %v", err)
	}
	if d := time.Until(is.Cert.NotAfter); d < DefaultCertValidity-time.Hour || d > DefaultCertValidity+time.Hour {
		t.Errorf("validity ends in %v", d)
	}

	// Certificates without, or with two, identities.
	plain, err := ca.Issue(id, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := *plain.Cert
	c.URIs = nil
	if _, err := IdentityOf(&c); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("no URI: %v", err)
	}
	c.URIs = []*url.URL{Identity{"", "a"}.URI(), Identity{"", "b"}.URI()}
	if _, err := IdentityOf(&c); !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), "2 qcluster:// URI SANs") {
		t.Errorf("two URIs: %v", err)
	}
	c.URIs = []*url.URL{{Scheme: "spiffe", Host: "x", Path: "/y"}, Identity{"", "a"}.URI()}
	if got, err := IdentityOf(&c); err != nil || got.Identifier != "a" {
		t.Errorf("other schemes are ignored: %+v %v", got, err)
	}
	if _, err := IdentityOf(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("nil: %v", err)
	}
}

func TestKeys(t *testing.T) {
	k := NewClusterKey()
	b, err := ParseClusterKey(k)
	if err != nil || len(b) != ClusterKeySize {
		t.Fatalf("ParseClusterKey(NewClusterKey()) = %d bytes, %v", len(b), err)
	}
	if k2 := NewClusterKey(); k2 == k {
		t.Fatal("two cluster keys are equal")
	}
	// Other base64 alphabets and padding are accepted.
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if got, err := ParseClusterKey(" " + enc.EncodeToString(b) + "\n"); err != nil || !bytes.Equal(got, b) {
			t.Errorf("alphabet: %v", err)
		}
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 16))} {
		if _, err := ParseClusterKey(bad); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "qcluster tls key") {
			t.Errorf("ParseClusterKey(%q) = %v", bad, err)
		}
	}
	for _, n := range []int{16, 24, 32} {
		if _, err := ParseGossipKey(base64.StdEncoding.EncodeToString(make([]byte, n))); err != nil {
			t.Errorf("gossip key of %d bytes: %v", n, err)
		}
	}
	for _, bad := range []string{"", "%%", base64.StdEncoding.EncodeToString(make([]byte, 20))} {
		if _, err := ParseGossipKey(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParseGossipKey(%q) = %v", bad, err)
		}
	}
	if g, err := ParseGossipKey(NewGossipKey()); err != nil || len(g) != 32 {
		t.Errorf("NewGossipKey: %d %v", len(g), err)
	}
	g1, g2 := DeriveGossipKey(b), DeriveGossipKey(b)
	if !bytes.Equal(g1, g2) || len(g1) != 32 || bytes.Equal(g1, b) {
		t.Error("DeriveGossipKey is not a deterministic 32-byte key distinct from the cluster key")
	}
	other, _ := ParseClusterKey(NewClusterKey())
	if bytes.Equal(DeriveGossipKey(other), g1) {
		t.Error("two cluster keys derive one gossip key")
	}
}

func TestDeriveCAIsDeterministic(t *testing.T) {
	key, _ := ParseClusterKey(NewClusterKey())
	a, err := DeriveCA(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DeriveCA(bytes.Clone(key))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Cert.Raw, b.Cert.Raw) {
		t.Error("one cluster key derived two different CA certificates")
	}
	if !a.Cert.IsCA || a.Cert.SerialNumber.Sign() <= 0 {
		t.Errorf("derived CA: IsCA %v serial %v", a.Cert.IsCA, a.Cert.SerialNumber)
	}
	other, _ := ParseClusterKey(NewClusterKey())
	c, err := DeriveCA(other)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Cert.Raw, c.Cert.Raw) {
		t.Error("two cluster keys derived the same CA")
	}
	if _, err := DeriveCA(key[:16]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short key: %v", err)
	}
	// The CA round-trips through PEM.
	kp, err := a.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(a.CertPEM(), kp)
	if err != nil || !bytes.Equal(back.Cert.Raw, a.Cert.Raw) {
		t.Fatalf("LoadCA: %v", err)
	}
}

func TestLoadCA(t *testing.T) {
	ca := newCA(t)
	kp, _ := ca.KeyPEM()
	if _, err := LoadCA(ca.CertPEM(), kp); err != nil {
		t.Fatal(err)
	}
	other := newCA(t)
	okp, _ := other.KeyPEM()
	if _, err := LoadCA(ca.CertPEM(), okp); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("mismatched key: %v", err)
	}
	leaf, _ := ca.Issue(Identity{"", "a"}, nil, 0)
	lkp, _ := leaf.KeyPEM()
	if _, err := LoadCA(leaf.CertPEM(), lkp); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf as CA: %v", err)
	}
}

func TestLoadPEMChecks(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	id := Identity{"orders", "server_a"}
	good := issue(t, ca, id)
	keyPEM := func(is *Issued) []byte {
		b, err := is.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	c, err := LoadPEM(ca.CertPEM(), good.CertPEM(), keyPEM(good), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity() != id || !c.Certificate().Equal(good.Cert) || !c.NotAfter().Equal(good.Cert.NotAfter) {
		t.Error("Credentials do not hold the loaded certificate")
	}
	// Two CAs in ca_file (a CA rotation): either may sign.
	both := append(other.CertPEM(), ca.CertPEM()...)
	if _, err := LoadPEM(both, good.CertPEM(), keyPEM(good), id); err != nil {
		t.Errorf("two CAs: %v", err)
	}

	expired, err := ca.IssueBetween(id, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	foreign := issue(t, other, id)
	wrongID := issue(t, ca, Identity{"orders", "server_b"})
	wrongCluster := issue(t, ca, Identity{"billing", "server_a"})
	leafAsCA := issue(t, ca, Identity{"", "x"})
	cases := []struct {
		name     string
		ca, cert []byte
		key      []byte
		want     error
		msg      string
	}{
		{"expired", ca.CertPEM(), expired.CertPEM(), keyPEM(expired), ErrUntrusted, "expired"},
		{"other CA", ca.CertPEM(), foreign.CertPEM(), keyPEM(foreign), ErrUntrusted, "unknown authority"},
		{"other identifier", ca.CertPEM(), wrongID.CertPEM(), keyPEM(wrongID), ErrIdentityMismatch, "names qcluster://orders/server_b, but this peer is qcluster://orders/server_a"},
		{"other cluster", ca.CertPEM(), wrongCluster.CertPEM(), keyPEM(wrongCluster), ErrIdentityMismatch, "qcluster://billing/server_a"},
		{"key of another cert", ca.CertPEM(), good.CertPEM(), keyPEM(foreign), ErrInvalidKey, "cert_file and key_file"},
		{"ca_file holds a leaf", leafAsCA.CertPEM(), good.CertPEM(), keyPEM(good), ErrInvalidKey, "not a CA"},
		{"ca_file is not PEM", []byte("hello"), good.CertPEM(), keyPEM(good), ErrInvalidKey, "not PEM"},
		{"ca_file holds a key", keyPEM(good), good.CertPEM(), keyPEM(good), ErrInvalidKey, "PRIVATE KEY"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPEM(tc.ca, tc.cert, tc.key, id)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v; want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	id := Identity{"", "server_a"}
	is := issue(t, ca, id)
	kp, _ := is.KeyPEM()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caF, certF, keyF := write("ca.pem", ca.CertPEM()), write("a.pem", is.CertPEM()), write("a-key.pem", kp)
	if _, err := LoadFiles(caF, certF, keyF, id); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFiles(caF, filepath.Join(dir, "missing.pem"), keyF, id); err == nil || !strings.Contains(err.Error(), "cert_file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadFiles("", certF, keyF, id); err == nil || !strings.Contains(err.Error(), "ca_file: no file") {
		t.Errorf("no ca_file: %v", err)
	}
	if _, err := LoadFiles(caF, certF, keyF, Identity{"", "server_b"}); !errors.Is(err, ErrIdentityMismatch) || !strings.Contains(err.Error(), certF) {
		t.Errorf("wrong identity: %v", err)
	}

	// The CLI's client configuration, with and without a client cert.
	cl, err := NewClientTLS(caF, certF, keyF)
	if err != nil || len(cl.Certificates) != 1 {
		t.Fatalf("NewClientTLS: %v", err)
	}
	if cl, err = NewClientTLS(caF, "", ""); err != nil || len(cl.Certificates) != 0 {
		t.Fatalf("NewClientTLS without a cert: %v", err)
	}
	if _, err := NewClientTLS(caF, certF, ""); err == nil {
		t.Error("NewClientTLS with a cert and no key")
	}
	if _, err := NewClientTLS(filepath.Join(dir, "none"), "", ""); err == nil {
		t.Error("NewClientTLS with a missing CA")
	}
}

// handshake runs a TLS handshake between the two configs over a pipe and
// returns the server's and the client's errors and states. In TLS 1.3 the
// client finishes first; a client certificate the server refuses shows up
// as the client's first read failing, which is reported as its error.
func handshake(t *testing.T, server, client *tls.Config) (scs, ccs tls.ConnectionState, serr, cerr error) {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, c := tls.Server(a, server), tls.Client(b, client)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serr = s.HandshakeContext(ctx)
		scs = s.ConnectionState()
		a.Close()
	}()
	cerr = c.HandshakeContext(ctx)
	ccs = c.ConnectionState()
	if cerr == nil {
		// Wait for the server's verdict: an alert, or the pipe closing.
		var one [1]byte
		if _, err := c.Read(one[:]); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
			cerr = err
		}
	}
	b.Close()
	wg.Wait()
	return scs, ccs, serr, cerr
}

func TestMutualTLS(t *testing.T) {
	key, _ := ParseClusterKey(NewClusterKey())
	a, err := Derive(key, Identity{"orders", "a"}, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Derive(key, Identity{"orders", "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	scs, ccs, serr, cerr := handshake(t, a.ServerTLS(), b.ClientTLS())
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if id, err := PeerIdentity(scs); err != nil || id.Identifier != "b" || len(scs.VerifiedChains) == 0 {
		t.Errorf("server sees %+v, %v (verified chains %d)", id, err, len(scs.VerifiedChains))
	}
	if id, err := PeerIdentity(ccs); err != nil || id.Identifier != "a" {
		t.Errorf("client sees %+v, %v", id, err)
	}
	if scs.Version != tls.VersionTLS13 {
		t.Errorf("version %x", scs.Version)
	}
	if _, err := PeerIdentity(tls.ConnectionState{}); err == nil {
		t.Error("PeerIdentity before a handshake")
	}
	if _, err := PeerIdentity(tls.ConnectionState{HandshakeComplete: true}); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("PeerIdentity without a certificate: %v", err)
	}

	// Refused: another cluster key, another cluster name, an expired
	// certificate, no client certificate (accepted by the TLS layer; the
	// acceptor sees no verified chain), and TLS 1.2.
	otherKey, _ := ParseClusterKey(NewClusterKey())
	stranger, _ := Derive(otherKey, Identity{"orders", "c"}, nil)
	otherCluster, _ := Derive(key, Identity{"billing", "c"}, nil)
	ca, _ := DeriveCA(key)
	old, err := ca.IssueBetween(Identity{"orders", "c"}, nil, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired := NewCredentials(ca.Pool(), old.TLSCertificate(), Identity{"orders", "c"})

	for _, tc := range []struct {
		name   string
		client *Credentials
		msg    string
	}{
		{"other cluster key", stranger, "unknown authority"},
		{"other cluster name", otherCluster, `cluster "billing"`},
		{"expired", expired, "expired"},
	} {
		t.Run(tc.name+" as client", func(t *testing.T) {
			cl := tc.client.ClientTLS()
			cl.VerifyConnection = nil // it would refuse a first
			_, _, serr, _ := handshake(t, a.ServerTLS(), cl)
			if serr == nil || !strings.Contains(serr.Error(), tc.msg) {
				t.Errorf("server error %v; want one containing %q", serr, tc.msg)
			}
		})
		t.Run(tc.name+" as server", func(t *testing.T) {
			_, _, _, cerr := handshake(t, tc.client.ServerTLS(), a.ClientTLS())
			if cerr == nil || !strings.Contains(cerr.Error(), tc.msg) {
				t.Errorf("client error %v; want one containing %q", cerr, tc.msg)
			}
		})
	}
	noCert := b.ClientTLS()
	noCert.GetClientCertificate = nil
	scs, _, serr, cerr = handshake(t, a.ServerTLS(), noCert)
	if serr != nil || cerr != nil || len(scs.VerifiedChains) != 0 {
		t.Errorf("no client cert: server %v client %v chains %d", serr, cerr, len(scs.VerifiedChains))
	}
	old12 := b.ClientTLS()
	old12.MinVersion, old12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if _, _, serr, _ := handshake(t, a.ServerTLS(), old12); serr == nil {
		t.Error("TLS 1.2 accepted")
	}

	// Verify directly, for the error types.
	if _, err := a.Verify(nil, x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("Verify(nil): %v", err)
	}
	if _, err := a.Verify([]*x509.Certificate{stranger.Certificate()}, x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Verify(stranger): %v", err)
	}
	if _, err := a.Verify([]*x509.Certificate{otherCluster.Certificate()}, x509.ExtKeyUsageClientAuth); !errors.Is(err, ErrIdentityMismatch) {
		t.Errorf("Verify(other cluster): %v", err)
	}
	if id, err := a.Verify([]*x509.Certificate{b.Certificate()}, x509.ExtKeyUsageServerAuth); err != nil || id.Identifier != "b" {
		t.Errorf("Verify(b): %+v %v", id, err)
	}
}

func TestFileAndClientTLSInterop(t *testing.T) {
	// A peer with file credentials and the CLI's client configuration.
	ca := newCA(t)
	id := Identity{"", "a"}
	is := issue(t, ca, id)
	kp, _ := is.KeyPEM()
	peer, err := LoadPEM(ca.CertPEM(), is.CertPEM(), kp, id)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	admin := issue(t, ca, Identity{"", "admin"})
	akp, _ := admin.KeyPEM()
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM(), 0o600)
	os.WriteFile(filepath.Join(dir, "admin.pem"), admin.CertPEM(), 0o600)
	os.WriteFile(filepath.Join(dir, "admin-key.pem"), akp, 0o600)
	cl, err := NewClientTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	scs, _, serr, cerr := handshake(t, peer.ServerTLS(), cl)
	if serr != nil || cerr != nil || len(scs.VerifiedChains) == 0 {
		t.Fatalf("server %v client %v", serr, cerr)
	}
	// The CLI refuses a server of another CA.
	otherCA := newCA(t)
	ois := issue(t, otherCA, id)
	okp, _ := ois.KeyPEM()
	imposter, _ := LoadPEM(otherCA.CertPEM(), ois.CertPEM(), okp, id)
	if _, _, _, cerr := handshake(t, imposter.ServerTLS(), cl); !errors.Is(cerr, ErrUntrusted) {
		t.Errorf("client accepted another CA's server: %v", cerr)
	}
}

func TestDerivedCertificateRenews(t *testing.T) {
	key, _ := ParseClusterKey(NewClusterKey())
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	c, err := Derive(key, Identity{"", "a"}, nil, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	first := c.Certificate()
	if c.Certificate() != first {
		t.Fatal("renewed without cause")
	}
	now.Add(int64(DerivedCertValidity/2 + time.Minute))
	second := c.Certificate()
	if second == first || !second.NotAfter.After(first.NotAfter) {
		t.Fatal("not renewed after half its validity")
	}
	// The renewed certificate still verifies (at the advanced clock).
	other, _ := Derive(key, Identity{"", "b"}, nil, WithClock(clock))
	if _, err := other.Verify([]*x509.Certificate{second}, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("", 0)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *CA, id Identity) *Issued {
	t.Helper()
	is, err := ca.Issue(id, []string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return is
}
