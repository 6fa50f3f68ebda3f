package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qcluster/qcluster"
)

// printConfig runs "qcluster agent --print-config" with the environment
// environ and returns what it printed.
func printConfig(t *testing.T, environ []string, args ...string) (qcluster.Config, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := &AgentCommand{Stdout: &stdout, Stderr: &stderr, Environ: environ}
	err := a.Run(t.Context(), append(args, "--print-config"))
	var c qcluster.Config
	if err == nil {
		if jerr := json.Unmarshal(stdout.Bytes(), &c); jerr != nil {
			t.Fatalf("--print-config printed %q: %v", stdout.String(), jerr)
		}
	}
	return c, stdout.String(), err
}

func agentConfigFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.json")
	body := `{"identifier": "server_a", "listen_port": 7001, "advertise_host": "file.example", "cluster_name": "file", "data_dir": "` + filepath.Join(t.TempDir(), "data") + `"}`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAgentFlagOverridesEnvOverridesFile: --print-config shows the file's
// values where nothing else sets them, the environment's over the file's,
// and the flags' over both.
func TestAgentFlagOverridesEnvOverridesFile(t *testing.T) {
	path := agentConfigFile(t)
	env := []string{"QCLUSTER_ADVERTISE_HOST=env.example", "QCLUSTER_CLUSTER_NAME=env", "QCLUSTER_PEERS=server_b@localhost:7002"}
	c, out, err := printConfig(t, env, "--config", path, "--cluster-name", "flag", "--leave-on-terminate")
	if err != nil {
		t.Fatal(err)
	}
	if c.Identifier != "server_a" || c.ListenPort != 7001 {
		t.Errorf("file values lost: %s", out)
	}
	if c.AdvertiseHost != "env.example" || len(c.Peers) != 1 || c.Peers[0].Port != 7002 {
		t.Errorf("the environment does not override the file: %s", out)
	}
	if c.ClusterName != "flag" || !c.LeaveOnTerminate {
		t.Errorf("cluster_name %q, leave_on_terminate %v: the flags do not override the environment: %s", c.ClusterName, c.LeaveOnTerminate, out)
	}
	// Without a file, the environment and flags are the config.
	c, out, err = printConfig(t, []string{"QCLUSTER_IDENTIFIER=solo", "QCLUSTER_LISTEN_PORT=7001"}, "--listen-port", "7004")
	if err != nil || c.Identifier != "solo" || c.ListenPort != 7004 {
		t.Errorf("no file: %v %s", err, out)
	}
}

// TestAgentPrintConfigRedactsSecrets: the token and every key set in the
// file, the environment or a flag are shown as REDACTED.
func TestAgentPrintConfigRedactsSecrets(t *testing.T) {
	k1, k2, k3, k4 := strings.Repeat("QUFB", 8), strings.Repeat("QkJC", 8), strings.Repeat("Q0ND", 8), strings.Repeat("RERE", 10)+"REQ=" // gossip keys 24 bytes, the cluster key 32
	env := []string{"QCLUSTER_API_TOKEN=tok-from-env", "QCLUSTER_GOSSIP_KEY=" + k1}
	c, out, err := printConfig(t, env, "--config", agentConfigFile(t), "--extra-gossip-keys", k2+","+k3, "--cluster-key", k4)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"tok-from-env", k1, k2, k3, k4} {
		if strings.Contains(out, s) {
			t.Errorf("--print-config shows the secret %q:\n%s", s, out)
		}
	}
	if c.APIToken != "REDACTED" || c.GossipKey != "REDACTED" || c.ClusterKey != "REDACTED" || len(c.ExtraGossipKeys) != 2 {
		t.Errorf("secrets not shown as REDACTED:\n%s", out)
	}
}

// TestAgentConfigErrorsNameTheSource: a bad value is a usage error (exit 2)
// that names the variable or flag it came from.
func TestAgentConfigErrorsNameTheSource(t *testing.T) {
	path := agentConfigFile(t)
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"QCLUSTER_LISTEN_PORT=70000"}, nil, "(env QCLUSTER_LISTEN_PORT)"},
		{nil, []string{"--election-timeout", "soon"}, "(flag --election-timeout)"},
		{[]string{"QCLUSTER_IDENTIFER=x"}, nil, "did you mean QCLUSTER_IDENTIFIER?"},
	} {
		_, _, err := printConfig(t, tc.env, append([]string{"--config", path}, tc.args...)...)
		if ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v args %v: %v (exit %d), want it to say %q", tc.env, tc.args, err, ExitCode(err), tc.want)
		}
	}
	if _, _, err := printConfig(t, nil); ExitCode(err) != 2 || !strings.Contains(err.Error(), "--config is required") {
		t.Errorf("no config at all: %v", err)
	}
}
