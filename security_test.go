package qcluster

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/security"
)

// secFiles writes a CA and a certificate for identity into a temp dir and
// returns the TLSConfig naming them.
func secFiles(t *testing.T, ca *pki.CA, id pki.Identity, notAfter time.Time) *TLSConfig {
	t.Helper()
	dir := t.TempDir()
	is, err := ca.IssueBetween(id, []string{"localhost"}, time.Now().Add(-2*time.Hour), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := is.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	tc := &TLSConfig{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "peer.pem"),
		KeyFile:  filepath.Join(dir, "peer-key.pem"),
	}
	for name, data := range map[string][]byte{tc.CAFile: ca.CertPEM(), tc.CertFile: is.CertPEM(), tc.KeyFile: kp} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

func TestSecuredBy(t *testing.T) {
	if (Config{TLS: nil, ClusterKey: ""}).Secured() {
		t.Error("nothing set is secured")
	}
	if !(Config{TLS: &TLSConfig{}, ClusterKey: ""}).Secured() || !(Config{TLS: nil, ClusterKey: pki.NewClusterKey()}).Secured() {
		t.Error("tls or cluster_key is secured")
	}
	var s *security.Settings
	if s.TLSOn() {
		t.Error("nil security has TLS on")
	}
	if _, ok := s.CertNotAfter(); ok {
		t.Error("nil security has a certificate")
	}
}

func TestSecurityProblems(t *testing.T) {
	ca, err := pki.NewCA("", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("", 0)
	me := pki.Identity{Cluster: "orders", Identifier: "server_a"}
	good := secFiles(t, ca, me, time.Now().Add(time.Hour))
	gossip := pki.NewGossipKey()
	key := pki.NewClusterKey()

	cases := []struct {
		name       string
		tls        *TLSConfig
		clusterKey string
		gossipKey  string
		want       []string // "<at>|<substring>" of each problem, in order
	}{
		{"nothing", nil, "", "", nil},
		{"files", good, "", gossip, nil},
		{"cluster key", nil, key, "", nil},
		{"cluster key and gossip key", nil, key, gossip, nil},
		{"gossip key alone", nil, "", gossip, nil},
		{"both", good, key, gossip, []string{"cluster_key|either tls"}},
		{"bad cluster key", nil, "nope!", "", []string{"cluster_key|not base64"}},
		{"short cluster key", nil, base64.StdEncoding.EncodeToString(make([]byte, 16)), "", []string{"cluster_key|16 bytes, want 32"}},
		{"bad gossip key", nil, "", "AAAA", []string{"gossip_key|want 16, 24 or 32"}},
		{"tls without gossip key", good, "", "", []string{"gossip_key|missing: with tls"}},
		{"missing fields", &TLSConfig{}, "", gossip, []string{"tls.ca_file|missing", "tls.cert_file|missing", "tls.key_file|missing"}},
		{"missing file", &TLSConfig{CAFile: good.CAFile, CertFile: good.CertFile + ".gone", KeyFile: good.KeyFile}, "", gossip, []string{"tls.cert_file|no such file"}},
		{"other identifier", secFiles(t, ca, pki.Identity{Cluster: "orders", Identifier: "server_b"}, time.Now().Add(time.Hour)), "", gossip,
			[]string{"tls.cert_file|names qcluster://orders/server_b, but this peer is qcluster://orders/server_a"}},
		{"other cluster", secFiles(t, ca, pki.Identity{Cluster: "billing", Identifier: "server_a"}, time.Now().Add(time.Hour)), "", gossip,
			[]string{"tls.cert_file|qcluster tls issue"}},
		{"expired", secFiles(t, ca, me, time.Now().Add(-time.Hour)), "", gossip, []string{"tls.cert_file|expired"}},
		{"other CA", &TLSConfig{CAFile: secFiles(t, other, me, time.Now().Add(time.Hour)).CAFile, CertFile: good.CertFile, KeyFile: good.KeyFile}, "", gossip,
			[]string{"tls.cert_file|unknown authority"}},
		{"key of another certificate", &TLSConfig{CAFile: good.CAFile, CertFile: good.CertFile, KeyFile: secFiles(t, ca, me, time.Now().Add(time.Hour)).KeyFile}, "", gossip,
			[]string{"tls|private key does not match"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := config.SecurityProblems(me.Identifier, me.Cluster, tc.tls, tc.clusterKey, tc.gossipKey, nil)
			if len(ps) != len(tc.want) {
				t.Fatalf("problems %+v; want %q", ps, tc.want)
			}
			for i, w := range tc.want {
				at, sub, _ := strings.Cut(w, "|")
				if ps[i].At != at || !strings.HasPrefix(ps[i].Text, at+": ") || !strings.Contains(ps[i].Text, sub) {
					t.Errorf("problem %d = %+v; want at %q containing %q", i, ps[i], at, sub)
				}
			}
			if len(ps) > 0 {
				return // Validate refuses the config; Start never gets here
			}
			s, err := security.New(me.Identifier, me.Cluster, []string{"localhost"}, tc.tls, tc.clusterKey, tc.gossipKey, nil)
			if err != nil {
				t.Fatalf("newSecurity of a valid config: %v", err)
			}
			if s.TLSOn() != (Config{TLS: tc.tls, ClusterKey: tc.clusterKey}).Secured() || (s.ServerTLS != nil) != s.TLSOn() || (s.ClientTLS != nil) != s.TLSOn() {
				t.Errorf("TLS on %v, server %v, client %v; securedBy %v", s.TLSOn(), s.ServerTLS != nil, s.ClientTLS != nil, (Config{TLS: tc.tls, ClusterKey: tc.clusterKey}).Secured())
			}
			wantGossip := tc.gossipKey != "" || tc.clusterKey != ""
			if (len(s.GossipKeys) == 1) != wantGossip {
				t.Errorf("gossip keys %d, want encryption %v", len(s.GossipKeys), wantGossip)
			}
			if na, ok := s.CertNotAfter(); ok != s.TLSOn() || (ok && !na.After(time.Now())) {
				t.Errorf("certNotAfter %v %v", na, ok)
			}
		})
	}
}

func TestSecurityGossipKeys(t *testing.T) {
	key := pki.NewClusterKey()
	kb, _ := pki.ParseClusterKey(key)
	a, err := security.New("a", "", nil, nil, key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.GossipKeys[0]) != string(pki.DeriveGossipKey(kb)) {
		t.Error("cluster_key does not derive the gossip key")
	}
	gk := pki.NewGossipKey()
	gb, _ := pki.ParseGossipKey(gk)
	b, err := security.New("a", "", nil, nil, key, gk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.GossipKeys) != 1 || string(b.GossipKeys[0]) != string(gb) {
		t.Error("gossip_key does not override the derived key")
	}
	// During a rotation: the primary key first, then the extra ones.
	old := pki.NewGossipKey()
	ob, _ := pki.ParseGossipKey(old)
	r, err := security.New("a", "", nil, nil, "", gk, []string{old})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.GossipKeys) != 2 || string(r.GossipKeys[0]) != string(gb) || string(r.GossipKeys[1]) != string(ob) {
		t.Errorf("keyring %x", r.GossipKeys)
	}
	if ps := config.SecurityProblems("a", "", nil, "", "", []string{old}); len(ps) != 1 || ps[0].At != "extra_gossip_keys[0]" {
		t.Errorf("extra keys without a primary: %+v", ps)
	}
	if ps := config.SecurityProblems("a", "", nil, "", gk, []string{old, "xx"}); len(ps) != 1 || ps[0].At != "extra_gossip_keys[1]" {
		t.Errorf("bad extra key: %+v", ps)
	}
	if _, err := security.New("a", "", nil, nil, "", gk, []string{"xx"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad extra key: %v", err)
	}
	c, err := security.New("a", "", nil, nil, "", "", nil)
	if err != nil || c.TLSOn() || c.GossipKeys != nil {
		t.Errorf("nothing configured: %+v, %v", c, err)
	}
}

// TestSecurityPeersTrustEachOther: two peers configured with one cluster
// key complete a mutual TLS handshake (client of one, server of the other)
// and see each other's identity; a peer of another cluster key or another
// cluster name is refused.
func TestSecurityPeersTrustEachOther(t *testing.T) {
	key := pki.NewClusterKey()
	mk := func(id, cluster, k string) *security.Settings {
		s, err := security.New(id, cluster, []string{"localhost", "127.0.0.1", ""}, nil, k, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := mk("a", "orders", key), mk("b", "orders", key)
	if err := pipeHandshake(t, a.ServerTLS, b.ClientTLS); err != nil {
		t.Fatalf("a and b: %v", err)
	}
	if err := pipeHandshake(t, a.ServerTLS, mk("c", "orders", pki.NewClusterKey()).ClientTLS); err == nil {
		t.Error("a peer of another cluster key was accepted")
	}
	if err := pipeHandshake(t, a.ServerTLS, mk("b", "billing", key).ClientTLS); err == nil {
		t.Error("a peer of another cluster name was accepted")
	}
	if err := a.Creds.Certificate().VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("derived certificate lacks the peer's hosts: %v", err)
	}
}

// pipeHandshake runs a handshake over a pipe and returns the server's
// error, or the client's.
func pipeHandshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	c1, c2 := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var serr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := tls.Server(c1, server)
		serr = s.HandshakeContext(ctx)
		if serr == nil {
			_, serr = s.Write([]byte("x")) // tell the client it was accepted
		}
		c1.Close()
	}()
	c := tls.Client(c2, client)
	cerr := c.HandshakeContext(ctx)
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	c2.Close()
	wg.Wait()
	if serr != nil {
		return serr
	}
	return cerr
}
