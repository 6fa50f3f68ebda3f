package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/qcluster/qcluster/internal/pki"
)

func TestTLSKey(t *testing.T) {
	out, _, err := runMain(t.Context(), "tls", "key")
	if err != nil {
		t.Fatal(err)
	}
	k := strings.TrimSpace(out)
	if _, err := pki.ParseClusterKey(k); err != nil {
		t.Fatalf("tls key printed %q: %v", out, err)
	}
	if _, err := pki.ParseGossipKey(k); err != nil {
		t.Errorf("not usable as a gossip key: %v", err)
	}
	out2, _, _ := runMain(t.Context(), "tls", "keygen")
	if strings.TrimSpace(out2) == k {
		t.Error("two keys are equal")
	}
}

const tlsTestConfig = `{
  "identifier": "server_a", "listen_host": "localhost", "listen_port": 7001, "cluster_name": "orders",
  "tls": {"ca_file": "certs/ca.pem", "cert_file": "certs/server_a.pem", "key_file": "certs/server_a-key.pem"},
  "peers": [
    {"host": "localhost", "port": 7002, "identifier": "server_b"},
    {"host": "10.0.0.3", "port": 7003, "identifier": "server_c"}%s
  ]
}`

func TestTLSInit(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "a.json", strings.Replace(tlsTestConfig, "%s", "", 1))
	certs := filepath.Join(dir, "certs")
	out, _, err := runMain(t.Context(), "tls", "init", "--config", cfg, "--out", certs)
	if err != nil {
		t.Fatal(err)
	}
	ca := readCA(t, certs)
	gossip := readGossipKey(t, certs)
	for _, id := range []string{"server_a", "server_b", "server_c"} {
		c := loadPeer(t, certs, id)
		if c.Identity() != (pki.Identity{Cluster: "orders", Identifier: id}) {
			t.Errorf("%s: identity %+v", id, c.Identity())
		}
		snippet := `"cert_file": "` + filepath.Join(certs, id+".pem") + `"`
		if !strings.Contains(out, snippet) {
			t.Errorf("output lacks %s:\n%s", snippet, out)
		}
		for _, name := range []string{id + "-key.pem", "ca-key.pem", "gossip.key"} {
			if fi, err := os.Stat(filepath.Join(certs, name)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v, mode %v; want 0600", name, err, fi.Mode())
			}
		}
	}
	if !strings.Contains(out, `"gossip_key": "`+gossip+`"`) || !strings.Contains(out, "server_a ("+cfg+")") {
		t.Errorf("output:\n%s", out)
	}
	// Host names for curl: localhost also covers the loopback addresses.
	a := loadPeer(t, certs, "server_a").Certificate()
	if a.VerifyHostname("localhost") != nil || a.VerifyHostname("127.0.0.1") != nil {
		t.Errorf("server_a's certificate names %v %v", a.DNSNames, a.IPAddresses)
	}
	if c := loadPeer(t, certs, "server_c").Certificate(); c.VerifyHostname("10.0.0.3") != nil {
		t.Errorf("server_c's certificate names %v", c.IPAddresses)
	}

	// Again, with a fourth peer: the CA, gossip key and existing
	// certificates are kept; only the new peer gets one.
	before, _ := os.ReadFile(filepath.Join(certs, "server_b.pem"))
	cfg = writeFile(t, dir, "a.json", strings.Replace(tlsTestConfig, "%s", `,
    {"host": "db4.example.com", "port": 7004, "identifier": "server d/4"}`, 1))
	out, _, err = runMain(t.Context(), "tls", "init", "--config", cfg, "--out", certs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "using CA") || !regexp.MustCompile(`kept .*server_b\.pem`).MatchString(out) || !regexp.MustCompile(`created .*server_d_4\.pem`).MatchString(out) {
		t.Errorf("second run:\n%s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(certs, "server_b.pem")); string(after) != string(before) {
		t.Error("server_b's certificate was replaced")
	}
	if !readCA(t, certs).Cert.Equal(ca.Cert) || readGossipKey(t, certs) != gossip {
		t.Error("the CA or the gossip key changed")
	}
	d := loadPeer(t, certs, "server_d_4")
	if d.Identity().Identifier != "server d/4" || d.Certificate().VerifyHostname("db4.example.com") != nil {
		t.Errorf("server d/4: %+v %v", d.Identity(), d.Certificate().DNSNames)
	}
}

func TestTLSInitSeveralConfigs(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.json", `{"identifier": "a", "listen_host": "10.0.0.1", "listen_port": 7001, "peers": [{"host": "10.0.0.2", "port": 7002, "identifier": "b"}]}`)
	b := writeFile(t, dir, "b.json", `{"identifier": "b", "listen_host": "0.0.0.0", "advertise_host": "b.example.com", "listen_port": 7002, "peers": [{"host": "10.0.0.1", "port": 7001, "identifier": "a"}]}`)
	certs := filepath.Join(dir, "out")
	if _, _, err := runMain(t.Context(), "tls", "init", "--config", a, "--config", b, "--out", certs); err != nil {
		t.Fatal(err)
	}
	cb := loadPeerIn(t, certs, "b", "")
	for _, h := range []string{"10.0.0.2", "b.example.com"} {
		if err := cb.Certificate().VerifyHostname(h); err != nil {
			t.Errorf("b's certificate: %v", err)
		}
	}
	if cb.Identity().String() != "qcluster:///b" {
		t.Errorf("b: %s", cb.Identity())
	}
	// Configs of two clusters cannot share a CA.
	c := writeFile(t, dir, "c.json", `{"identifier": "c", "listen_port": 7003, "cluster_name": "other"}`)
	_, _, err := runMain(t.Context(), "tls", "init", "--config", a, "--config", c, "--out", certs)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "one CA per cluster") {
		t.Errorf("two clusters: %v", err)
	}
}

func TestTLSIssue(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "a.json", strings.Replace(tlsTestConfig, "%s", "", 1))
	certs := filepath.Join(dir, "certs")
	if _, _, err := runMain(t.Context(), "tls", "init", "--config", cfg, "--out", certs); err != nil {
		t.Fatal(err)
	}
	out, _, err := runMain(t.Context(), "tls", "issue", "--ca-dir", certs, "--identifier", "admin", "--cluster-name", "orders", "--host", "ops.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "curl --cacert") {
		t.Errorf("output:\n%s", out)
	}
	admin := loadPeerIn(t, certs, "admin", "orders")
	if admin.Certificate().VerifyHostname("ops.example.com") != nil {
		t.Error("host not in the certificate")
	}
	// The CLI's client configuration accepts the files.
	if _, err := pki.NewClientTLS(filepath.Join(certs, "ca.pem"), filepath.Join(certs, "admin.pem"), filepath.Join(certs, "admin-key.pem")); err != nil {
		t.Fatal(err)
	}

	// From a cluster key: ca.pem is the CA every peer derives.
	key := pki.NewClusterKey()
	kdir := filepath.Join(dir, "k")
	if _, _, err := runMain(t.Context(), "tls", "issue", "--cluster-key", key, "--identifier", "admin", "--out", kdir); err != nil {
		t.Fatal(err)
	}
	kb, _ := pki.ParseClusterKey(key)
	derived, _ := pki.DeriveCA(kb)
	caPEM, err := os.ReadFile(filepath.Join(kdir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseOneCert(caPEM); err != nil || !got.Equal(derived.Cert) {
		t.Error("ca.pem is not the derived CA")
	}
	peer, err := pki.Derive(kb, pki.Identity{Identifier: "server_a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ac := loadPeerIn(t, kdir, "admin", "")
	if _, err := peer.Verify([]*x509.Certificate{ac.Certificate()}, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("a peer of the cluster key does not trust the issued certificate: %v", err)
	}
	// The key from $QCLUSTER_CLUSTER_KEY (off the command line) issues from
	// the same CA.
	t.Setenv(envClusterKey, key)
	if _, _, err := runMain(t.Context(), "tls", "issue", "--identifier", "sdk", "--out", kdir); err != nil {
		t.Fatal(err)
	}
	sc := loadPeerIn(t, kdir, "sdk", "")
	if _, err := peer.Verify([]*x509.Certificate{sc.Certificate()}, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("a certificate issued with the key from the environment is not trusted: %v", err)
	}
	t.Setenv(envClusterKey, "")
	// Issuing again into the same directory with another key fails.
	if _, _, err := runMain(t.Context(), "tls", "issue", "--cluster-key", pki.NewClusterKey(), "--identifier", "x", "--out", kdir); err == nil || !strings.Contains(err.Error(), "another CA") {
		t.Errorf("other key into the same dir: %v", err)
	}
}

func TestTLSUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "a.json", `{"identifier": "a", "listen_port": 7001}`)
	noID := writeFile(t, dir, "n.json", `{"listen_port": 7001}`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tls"}, "no subcommand"},
		{[]string{"tls", "frob"}, `unknown subcommand "frob"`},
		{[]string{"tls", "init", "--out", dir}, "--config is required"},
		{[]string{"tls", "init", "--config", cfg}, "--out is required"},
		{[]string{"tls", "init", "--config", cfg, "--out", dir, "--days", "0"}, "must be positive"},
		{[]string{"tls", "init", "--config", filepath.Join(dir, "none.json"), "--out", dir}, "none.json"},
		{[]string{"tls", "init", "--config", noID, "--out", dir}, "no identifier"},
		{[]string{"tls", "issue", "--identifier", "x"}, "either --ca-dir or --cluster-key"},
		{[]string{"tls", "issue", "--ca-dir", dir}, "--identifier is required"},
		{[]string{"tls", "issue", "--cluster-key", "abc", "--identifier", "x", "--out", dir}, "cluster-key"},
		{[]string{"tls", "issue", "--cluster-key", "abc", "--identifier", "x"}, "--out is required"},
		{[]string{"tls", "key", "extra"}, `unexpected argument "extra"`},
	} {
		_, _, err := runMain(t.Context(), tc.args...)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want a usage error containing %q", tc.args, err, tc.want)
		}
	}
	if out, _, err := runMain(t.Context(), "tls", "-h"); err != nil || !strings.Contains(out, "qcluster tls init") {
		t.Errorf("help: %v\n%s", err, out)
	}
}

func readCA(t *testing.T, dir string) *pki.CA {
	t.Helper()
	c, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func readGossipKey(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	k := strings.TrimSpace(string(b))
	if _, err := pki.ParseGossipKey(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// loadPeer loads the credentials of a peer of cluster "orders".
func loadPeer(t *testing.T, dir, base string) *pki.Credentials {
	t.Helper()
	return loadPeerIn(t, dir, base, "orders")
}

// loadPeerIn loads dir/base.pem as the root package would, for the
// identifier the certificate names.
func loadPeerIn(t *testing.T, dir, base, cluster string) *pki.Credentials {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(dir, base+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseOneCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.IdentityOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	if id.Cluster != cluster {
		t.Fatalf("%s names cluster %q, want %q", base, id.Cluster, cluster)
	}
	c, err := pki.LoadFiles(filepath.Join(dir, "ca.pem"), filepath.Join(dir, base+".pem"), filepath.Join(dir, base+"-key.pem"), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parseOneCert(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}
