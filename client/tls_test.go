package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/testpeers"
)

// startTLSPeers starts n peers secured by a fresh cluster key, with the
// given api_client_certs, and returns them and the key.
func startTLSPeers(t *testing.T, n int, clientCerts string) (*testPeers, []byte) {
	t.Helper()
	key := pki.NewClusterKey()
	kb, err := pki.ParseClusterKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := startPeersWith(t, n, func(c *qcluster.Config) {
		c.ClusterKey = key
		c.APIClientCerts = clientCerts
	})
	return p, kb
}

func startPeersWith(t *testing.T, n int, opt func(*qcluster.Config)) *testPeers {
	t.Helper()
	p := testpeers.Start(t, n, opt)
	return &testPeers{Peers: p, t: t, cfgs: p.Configs, peers: p.Peers}
}

// clientTLS returns a client configuration with a certificate derived from
// the cluster key (the cluster has no name).
func clientTLS(t *testing.T, key []byte) *tls.Config {
	t.Helper()
	creds, err := pki.Derive(key, pki.Identity{Identifier: "client-test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return creds.ClientTLS()
}

func TestNewWithTLS(t *testing.T) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	c, err := NewWithOptions(Options{TLS: cfg}, "127.0.0.1:7001", "https://db2:7002", "db3")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.Addrs(), " "), "https://127.0.0.1:7001 https://db2:7002 https://db3:7001"; got != want {
		t.Errorf("Addrs() = %s, want %s", got, want)
	}
	tr, ok := c.hc.Transport.(*http.Transport)
	if !ok || tr.TLSClientConfig == nil || tr.TLSClientConfig == cfg || tr.TLSClientConfig.MinVersion != tls.VersionTLS13 {
		t.Errorf("the default transport does not use a clone of Options.TLS: %+v", c.hc.Transport)
	}
	if _, err := NewWithOptions(Options{TLS: cfg}, "127.0.0.1:7001", "http://127.0.0.1:7002"); err == nil || !strings.Contains(err.Error(), "http:// with TLS") {
		t.Errorf("an http:// address with TLS: %v, want an error", err)
	}
	if c, err := New("127.0.0.1:7001"); err != nil || c.Addr() != "http://127.0.0.1:7001" {
		t.Errorf("without TLS: %v, %v; want http://", c.Addrs(), err)
	}
}

// TestTLSClusterKey talks to a cluster secured with a cluster key, with a
// client certificate derived from the key.
func TestTLSClusterKey(t *testing.T) {
	tp, key := startTLSPeers(t, 3, "")
	li := tp.waitLeader()
	fi := (li + 1) % 3
	ctx := ctxTimeout(t, 20*time.Second)

	c := newClient(t, Options{TLS: clientTLS(t, key)}, tp.addr(fi), tp.addr(li))
	if want := "https://" + tp.addr(fi); c.Addr() != want {
		t.Fatalf("Addr() = %s, want %s", c.Addr(), want)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Identifier != tp.cfgs[fi].Identifier || st.Leader == nil || st.Leader.Identifier != tp.cfgs[li].Identifier {
		t.Fatalf("Status over TLS: %+v, %v", st, err)
	}
	peers, err := c.Peers(ctx)
	if err != nil || len(peers) != 3 {
		t.Fatalf("Peers over TLS: %+v, %v", peers, err)
	}
	watch, err := c.WatchLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ls := <-watch; !ls.HasLeader() || ls.Leader.Identifier != tp.cfgs[li].Identifier {
		t.Fatalf("WatchLeader over TLS: first value %+v", ls)
	}
	events, err := c.WatchEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Status == nil || ev.Status.Leader == nil || !strings.HasPrefix(ev.Addr, "https://") {
		t.Fatalf("WatchEvents over TLS: first event %+v", ev)
	}
	// Asked of a follower, Transfer follows its answer to the leader, over
	// HTTPS too.
	to := tp.cfgs[(li+2)%3].Identifier
	res, err := c.Transfer(ctx, to)
	if err != nil || res.Leader == nil || res.Leader.Identifier != to {
		t.Fatalf("Transfer over TLS (asked of a follower): %+v, %v", res, err)
	}
}

// TestTLSRefusals checks what a TLS cluster answers a client without the
// right configuration.
func TestTLSRefusals(t *testing.T) {
	tp, key := startTLSPeers(t, 1, "")
	tp.waitLeader()
	ctx := ctxTimeout(t, 10*time.Second)

	// Plain HTTP: the peer answers 400 and says it requires TLS.
	_, err := newClient(t, Options{}, tp.addr(0)).Status(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "requires TLS") {
		t.Errorf("plain HTTP to a TLS peer: %v, want a 400 saying it requires TLS", err)
	}

	// The CA but no client certificate: the handshake fails.
	caOnly := caOnlyTLS(t, key)
	_, err = newClient(t, Options{TLS: caOnly}, tp.addr(0)).Status(ctx)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("no client certificate: %v, want the handshake to fail for want of one", err)
	}

	// Another cluster key: the server certificate is not trusted.
	other, err := pki.ParseClusterKey(pki.NewClusterKey())
	if err != nil {
		t.Fatal(err)
	}
	_, err = newClient(t, Options{TLS: clientTLS(t, other)}, tp.addr(0)).Status(ctx)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, pki.ErrUntrusted) {
		t.Errorf("another cluster key: %v, want an untrusted server certificate", err)
	}
}

// TestTLSOptionalClientCerts talks HTTPS without a client certificate to
// a peer with "api_client_certs": "optional", trusting its CA only.
func TestTLSOptionalClientCerts(t *testing.T) {
	tp, key := startTLSPeers(t, 1, "optional")
	tp.waitLeader()
	ctx := ctxTimeout(t, 10*time.Second)
	st, err := newClient(t, Options{TLS: caOnlyTLS(t, key)}, tp.addr(0)).Status(ctx)
	if err != nil || st.Identifier != tp.cfgs[0].Identifier || !st.IsLeader {
		t.Fatalf("Status without a client certificate: %+v, %v", st, err)
	}
}

// TestTLSStandardConfig talks to a cluster-key peer with a tls.Config
// built from the standard library alone, as a program outside this module
// does with the files 'qcluster tls issue' writes: the CA as RootCAs (the
// peer's certificate names its listen_host, so the host name verifies)
// and a client certificate.
func TestTLSStandardConfig(t *testing.T) {
	tp, key := startTLSPeers(t, 1, "")
	tp.waitLeader()
	ca, err := pki.DeriveCA(key)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(pki.Identity{Identifier: "admin"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := is.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	cert, err := tls.X509KeyPair(is.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	st, err := newClient(t, Options{TLS: cfg}, tp.addr(0)).Status(ctxTimeout(t, 10*time.Second))
	if err != nil || !st.IsLeader {
		t.Fatalf("Status with a standard tls.Config: %+v, %v", st, err)
	}
}

// caOnlyTLS returns pki.NewClientTLS's configuration for the CA the
// cluster key derives, without a client certificate.
func caOnlyTLS(t *testing.T, key []byte) *tls.Config {
	t.Helper()
	ca, err := pki.DeriveCA(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.NewClientTLS(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
