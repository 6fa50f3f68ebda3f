package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/testpeers"
)

// clearTLSEnv clears the client commands' environment, TLS variables
// included.
func clearTLSEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{envAddr, envToken, envCACert, envCert, envKey, envClusterKey} {
		t.Setenv(v, "")
	}
}

// tlsPeers starts n in-process peers of cluster "orders" secured by a
// fresh cluster key, with api_client_certs as given, and returns them and
// the key.
func tlsPeers(t *testing.T, n int, clientCerts string) ([]*qcluster.Cluster, string) {
	t.Helper()
	key := pki.NewClusterKey()
	p := testpeers.Start(t, n, func(c *qcluster.Config) {
		c.ClusterName = "orders"
		c.ClusterKey = key
		c.APIClientCerts = clientCerts
	})
	return p.Peers, key
}

// TestClientCommandsClusterKey runs the client commands against a cluster
// configured with a cluster key and a cluster name, with --cluster-key
// and $QCLUSTER_CLUSTER_KEY.
func TestClientCommandsClusterKey(t *testing.T) {
	clearTLSEnv(t)
	peers, key := tlsPeers(t, 3, "")
	li := agreedLeader(t, peers)
	fi := (li + 1) % 3
	faddr := peers[fi].Addr()

	stdout, _, err := runMain(t.Context(), "status", "--addr", faddr, "--cluster-key", key)
	if err != nil || !strings.Contains(stdout, fmt.Sprintf("Peer:       p%d (https://%s)", fi, faddr)) ||
		!strings.Contains(stdout, fmt.Sprintf("Leader:     p%d (%s)", li, peers[li].Addr())) {
		t.Fatalf("status --cluster-key: %v\n%s", err, stdout)
	}

	t.Setenv(envClusterKey, key)
	t.Setenv(envAddr, faddr)
	stdout, _, err = runMain(t.Context(), "leader")
	if want := fmt.Sprintf("p%d at %s,", li, peers[li].Addr()); err != nil || !strings.HasPrefix(stdout, want) {
		t.Errorf("leader with $%s: %v\n%q, want %q...", envClusterKey, err, stdout, want)
	}
	stdout, _, err = runMain(t.Context(), "peers", "-o", "json")
	if err != nil || strings.Count(stdout, `"identifier"`) != 3 {
		t.Errorf("peers with $%s: %v\n%s", envClusterKey, err, stdout)
	}
	// Asked of a follower, transfer follows it to the leader over HTTPS.
	to := 3 - li - fi
	stdout, _, err = runMain(t.Context(), "transfer", fmt.Sprintf("p%d", to))
	if err != nil || !strings.Contains(stdout, fmt.Sprintf("p%d", to)) {
		t.Fatalf("transfer with $%s: %v\n%s", envClusterKey, err, stdout)
	}
	// watch prints the leader over HTTPS, until it is stopped.
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- (&Main{Stdout: &out, Stderr: &out}).Run(ctx, []string{"watch"}) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), fmt.Sprintf("leader p%d at ", to)) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("watch with $%s printed no leader p%d:\n%s", envClusterKey, to, out.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch: %v", err)
	}

	// Help never shows the key from the environment.
	if stdout, _, _ := runMain(t.Context(), "status", "-h"); strings.Contains(stdout, key) || !strings.Contains(stdout, "-cluster-key") {
		t.Errorf("status -h prints the cluster key, or does not list --cluster-key:\n%s", stdout)
	}

	// Without credentials, or with another key: exit 1 and advice.
	t.Setenv(envClusterKey, "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "requires TLS: use https:// and a client certificate signed by the cluster CA; give --cluster-key"},
		{[]string{"status", "--cluster-key", pki.NewClusterKey()}, "is not the peers' cluster_key"},
	} {
		var o, e syncBuffer
		m := &Main{Stdout: &o, Stderr: &e}
		if code := m.Report(m.Run(t.Context(), tt.args)); code != 1 || !strings.Contains(e.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and %q", tt.args, code, e.String(), tt.want)
		}
	}
}

// TestClientCommandsCertFiles runs the client commands with --cacert,
// --cert and --key made by 'qcluster tls issue --cluster-key', and with
// the CA alone against a peer that does not require client certificates.
func TestClientCommandsCertFiles(t *testing.T) {
	clearTLSEnv(t)
	peers, key := tlsPeers(t, 3, "")
	li := agreedLeader(t, peers)
	addr := peers[li].Addr()

	dir := t.TempDir()
	if _, _, err := runMain(t.Context(), "tls", "issue", "--cluster-key", key, "--identifier", "admin", "--cluster-name", "orders", "--out", dir); err != nil {
		t.Fatal(err)
	}
	ca, cert, certKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem")

	stdout, _, err := runMain(t.Context(), "status", "--addr", addr, "--cacert", ca, "--cert", cert, "--key", certKey)
	if err != nil || !strings.Contains(stdout, "Is leader:  yes") || !strings.Contains(stdout, "(https://"+addr+")") {
		t.Fatalf("status --cacert --cert --key: %v\n%s", err, stdout)
	}
	t.Setenv(envCACert, ca)
	t.Setenv(envCert, cert)
	t.Setenv(envKey, certKey)
	if stdout, _, err := runMain(t.Context(), "leader", "--addr", addr); err != nil || !strings.HasPrefix(stdout, fmt.Sprintf("p%d at ", li)) {
		t.Errorf("leader with $%s, $%s, $%s: %v\n%s", envCACert, envCert, envKey, err, stdout)
	}

	// The CA alone: this cluster requires a client certificate.
	t.Setenv(envCert, "")
	t.Setenv(envKey, "")
	var o, e syncBuffer
	m := &Main{Stdout: &o, Stderr: &e}
	if code := m.Report(m.Run(t.Context(), []string{"status", "--addr", addr})); code != 1 || !strings.Contains(e.String(), "requires a client certificate") {
		t.Errorf("--cacert without a client certificate: exit %d, stderr %q", code, e.String())
	}

	// A peer with "api_client_certs": "optional" takes the CA alone.
	optional, key2 := tlsPeers(t, 1, "optional")
	agreedLeader(t, optional)
	dir2 := t.TempDir()
	if _, _, err := runMain(t.Context(), "tls", "issue", "--cluster-key", key2, "--identifier", "admin", "--out", dir2); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = runMain(t.Context(), "status", "--addr", optional[0].Addr(), "--cacert", filepath.Join(dir2, "ca.pem"))
	if err != nil || !strings.Contains(stdout, "Is leader:  yes") {
		t.Errorf("status --cacert against api_client_certs optional: %v\n%s", err, stdout)
	}
}

func TestClientTLSUsageErrors(t *testing.T) {
	clearTLSEnv(t)
	key := pki.NewClusterKey()
	for _, tt := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"status", "--cluster-key", key, "--cacert", "ca.pem"}, "either --cluster-key or --cacert"},
		{map[string]string{envClusterKey: key}, []string{"peers", "--cacert", "ca.pem"}, "either --cluster-key or --cacert"},
		{nil, []string{"leader", "--cert", "a.pem", "--key", "a-key.pem"}, "need --cacert"},
		{nil, []string{"watch", "--cacert", "ca.pem", "--cert", "a.pem"}, "both --cert and --key"},
		{nil, []string{"status", "--cluster-key", "c2hvcnQ="}, "--cluster-key: invalid key: cluster key is 5 bytes"},
		{nil, []string{"status", "--cluster-key", key, "--addr", "http://127.0.0.1:7001"}, "http:// with TLS"},
		{nil, []string{"metadata", "--cluster-key", key, "--cacert", "ca.pem"}, "either --cluster-key"},
	} {
		for k, v := range tt.env {
			t.Setenv(k, v)
		}
		_, _, err := runMain(t.Context(), tt.args...)
		if ExitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), tt.want) {
			t.Errorf("Run(%q) = %v (exit %d), want a usage error containing %q", tt.args, err, ExitCode(err), tt.want)
		}
		for k := range tt.env {
			t.Setenv(k, "")
		}
	}
	// A CA file that cannot be read is a runtime error naming it.
	_, _, err := runMain(t.Context(), "status", "--cacert", filepath.Join(t.TempDir(), "missing.pem"))
	if ExitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "missing.pem") {
		t.Errorf("missing --cacert file: %v (exit %d)", err, ExitCode(err))
	}
}
