package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestAgentRefusesAPublicPortWithoutTLS pins the refusal to listen beyond
// loopback without TLS: an api_token alone is not enough, since it guards
// the HTTP API and not the raft and gossip streams on the same port.
func TestAgentRefusesAPublicPortWithoutTLS(t *testing.T) {
	dir := t.TempDir()
	open := writeFile(t, dir, "open.json", `{"identifier": "a", "listen_host": "0.0.0.0", "advertise_host": "10.0.0.1", "listen_port": 7001}`)
	public := writeFile(t, dir, "public.json", `{"identifier": "a", "listen_host": "10.0.0.1", "listen_port": 7001}`)
	v6 := writeFile(t, dir, "v6.json", `{"identifier": "a", "listen_host": "::", "advertise_host": "db1", "listen_port": 7001}`)
	token := writeFile(t, dir, "token.json", `{"identifier": "a", "listen_host": "0.0.0.0", "advertise_host": "10.0.0.1", "listen_port": 7001, "api_token": "s3cret"}`)
	tokenReads := writeFile(t, dir, "reads.json", `{"identifier": "a", "listen_host": "10.0.0.1", "listen_port": 7001, "api_token": "s3cret", "api_protect_reads": true}`)
	local := writeFile(t, dir, "local.json", `{"identifier": "a", "listen_host": "localhost", "listen_port": 7001}`)
	def := writeFile(t, dir, "default.json", `{"identifier": "a", "listen_port": 7001}`)
	key, _, err := runMain(t.Context(), "tls", "key")
	if err != nil {
		t.Fatal(err)
	}
	keyed := writeFile(t, dir, "keyed.json", fmt.Sprintf(`{"identifier": "a", "listen_host": "0.0.0.0", "advertise_host": "10.0.0.1", "listen_port": 7001, "cluster_key": %q}`, strings.TrimSpace(key)))

	const (
		head = `: the peer would listen on %s, beyond loopback, without TLS (no "cluster_key" or "tls"): ` +
			`anyone who can reach the port could send raft and gossip frames in any member's name (votes, log entries, membership) `
		noToken = `and, with no api_token, join, remove or stop members and move leadership through the API`
		withTok = `(api_token guards only the HTTP API, not these streams)`
		tail    = `; set "cluster_key" (made by qcluster tls key) or "tls" in the config, or pass --insecure to run anyway on a trusted private network`
	)
	for _, tc := range []struct {
		config, host, api string
	}{
		{open, "0.0.0.0", noToken},
		{public, "10.0.0.1", noToken},
		{v6, "::", noToken},
		{token, "0.0.0.0", withTok},
		{tokenReads, "10.0.0.1", withTok},
	} {
		// A bad --leave-timeout too: the refusal comes first, and without
		// it the agent fails at once instead of running.
		args := []string{"agent", "--config", tc.config, "--leave-timeout", "0s"}
		_, _, err := runMain(t.Context(), args...)
		wantExit(t, args, err, 2)
		want := "agent: config " + tc.config + fmt.Sprintf(head, tc.host) + tc.api + tail
		if err == nil || err.Error() != want {
			t.Errorf("Run(%q) = %v\nwant %s", args, err, want)
		}
	}
	// With TLS (a cluster key), on loopback, or with --insecure the check
	// passes: the next one (a bad --leave-timeout) fails, before anything
	// starts.
	for _, args := range [][]string{
		{"agent", "--config", keyed},
		{"agent", "--config", local},
		{"agent", "--config", def},
		{"agent", "--config", open, "--insecure"},
		{"agent", "--config", token, "--insecure"},
		{"agent", "--config", v6, "--insecure"},
	} {
		_, _, err := runMain(t.Context(), append(args, "--leave-timeout", "0s")...)
		wantExit(t, args, err, 2, "--leave-timeout")
	}
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true, "::ffff:127.0.0.1": true, "app.localhost": true,
		"0.0.0.0": false, "::": false, "10.0.0.1": false, "db1": false, "fe80::1": false, "": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
