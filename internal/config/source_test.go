package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConfigFieldsComeFromTheOneList: every field of the file has an
// environment variable and a flag named after it, and the secret fields are
// the keys and the token.
func TestConfigFieldsComeFromTheOneList(t *testing.T) {
	fields := Fields()
	var names, secrets []string
	for _, f := range fields {
		names = append(names, f.Name)
		if f.Env != "QCLUSTER_"+strings.ToUpper(f.Name) || f.Flag != strings.ReplaceAll(f.Name, "_", "-") {
			t.Errorf("%s: env %s, flag %s", f.Name, f.Env, f.Flag)
		}
		if f.Secret {
			secrets = append(secrets, f.Name)
		}
	}
	// The order of the file format (and of the flags in help), pinned.
	want := []string{
		"identifier", "listen_host", "listen_port", "advertise_host", "metadata",
		"peers", "data_dir", "heartbeat_interval", "election_timeout", "cluster_name",
		"api_token", "mode", "voter", "leave_on_terminate", "dead_member_timeout", "min_voters",
		"gossip_profile", "tls", "cluster_key", "gossip_key", "extra_gossip_keys", "api_client_certs",
		"api_protect_reads", "max_conns_per_ip", "kv_quota_bytes", "health_check",
	}
	if !slices.Equal(names, want) || !slices.Equal(names, topNames) {
		t.Errorf("Fields %v, the file's fields %v, want %v", names, topNames, want)
	}
	if want := []string{"api_token", "cluster_key", "gossip_key", "extra_gossip_keys"}; !slices.Equal(secrets, want) {
		t.Errorf("secret fields %v, want %v", secrets, want)
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const layersFile = `{
  "identifier": "server_a",
  "listen_port": 7001,
  "advertise_host": "file.example",
  "heartbeat_interval": "40ms",
  "leave_on_terminate": true,
  "peers": [{"identifier": "server_x", "host": "localhost", "port": 7009}],
  "server_port": 8001
}`

// TestConfigEnvOverridesFile: a QCLUSTER_<FIELD> variable wins over the
// file's value, for every kind of field; what it does not set stays as the
// file says.
func TestConfigEnvOverridesFile(t *testing.T) {
	path := writeConfig(t, layersFile)
	env, err := EnvOverrides([]string{
		"PATH=/bin",
		"QCLUSTER_ADVERTISE_HOST=env.example",
		"QCLUSTER_PEERS=server_b@localhost:7002, server_c@[::1]:7003",
		"QCLUSTER_METADATA={\"zone\": \"b\"}",
		"QCLUSTER_HEARTBEAT_INTERVAL=20ms",
		"QCLUSTER_LEAVE_ON_TERMINATE=false",
		"QCLUSTER_VOTER=0",
		"QCLUSTER_MIN_VOTERS=5",
		"QCLUSTER_API_TOKEN=s3cret",
		"QCLUSTER_ADDR=localhost:7001", // the client commands': not a field
		"QCLUSTER_TOKEN=t",
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadLayers(path, env...)
	if err != nil {
		t.Fatal(err)
	}
	if c.Identifier != "server_a" || c.ListenPort != 7001 || string(c.Extra["server_port"]) != "8001" {
		t.Errorf("fields the environment does not set changed: %+v", c)
	}
	if c.AdvertiseHost != "env.example" || c.Metadata["zone"] != "b" || time.Duration(c.HeartbeatInterval) != 20*time.Millisecond ||
		c.LeaveOnTerminate || c.IsVoter() || c.MinVoters != 5 || c.APIToken != "s3cret" {
		t.Errorf("the environment did not override the file: %+v", c)
	}
	want := []PeerConfig{{Identifier: "server_b", Host: "localhost", Port: 7002}, {Identifier: "server_c", Host: "::1", Port: 7003}}
	if !slices.EqualFunc(c.Peers, want, func(a, b PeerConfig) bool {
		return a.Identifier == b.Identifier && a.Host == b.Host && a.Port == b.Port
	}) {
		t.Errorf("peers %+v, want %+v", c.Peers, want)
	}
}

// TestConfigLaterOverrideWins: overrides apply in order (the agent passes
// the environment's, then the flags'), so a flag wins over a variable.
func TestConfigLaterOverrideWins(t *testing.T) {
	c, err := LoadLayers(writeConfig(t, layersFile),
		Override{Field: "advertise_host", Value: "env.example", Source: "env QCLUSTER_ADVERTISE_HOST"},
		Override{Field: "advertise_host", Value: "flag.example", Source: "flag --advertise-host"})
	if err != nil {
		t.Fatal(err)
	}
	if c.AdvertiseHost != "flag.example" {
		t.Errorf("advertise_host %q, want the later override's", c.AdvertiseHost)
	}
	// No file at all: the overrides are the config.
	c, err = LoadLayers("", Override{Field: "identifier", Value: "solo", Source: "env QCLUSTER_IDENTIFIER"},
		Override{Field: "listen_port", Value: "7001", Source: "env QCLUSTER_LISTEN_PORT"})
	if err != nil || c.Identifier != "solo" || c.ListenPort != 7001 || c.Mode != ModeLeader {
		t.Errorf("config from overrides only: %+v, %v", c, err)
	}
}

// TestConfigLayerErrorsNameTheSource: every problem says where the bad
// value was set: the file's line, the variable, or the flag.
func TestConfigLayerErrorsNameTheSource(t *testing.T) {
	path := writeConfig(t, "{\n  \"identifier\": \"server_a\",\n  \"listen_port\": 99999\n}")
	env := func(kv ...string) []Override {
		o, err := EnvOverrides(kv)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	flag := func(field, v string) Override {
		return Override{Field: field, Value: v, Source: "flag --" + strings.ReplaceAll(field, "_", "-")}
	}
	cases := []struct {
		name      string
		overrides []Override
		want      []string
	}{
		{"file", nil, []string{"in " + path, "listen_port: 99999 is out of range (1-65535) (line 3, column 18)"}},
		{"env type", append(env("QCLUSTER_LISTEN_PORT=abc"), flag("peers", "b@x")), []string{
			`listen_port: expected a number, got string "abc" (env QCLUSTER_LISTEN_PORT)`,
			`peers: entry "b@x": give identifier@host:port`, "(flag --peers)"}},
		{"env range", env("QCLUSTER_LISTEN_PORT=70000"), []string{"listen_port: 70000 is out of range (1-65535) (env QCLUSTER_LISTEN_PORT)"}},
		{"flag validation", []Override{flag("listen_port", "7001"), flag("election_timeout", "1ms")}, []string{"election_timeout (1ms) must be at least", "(flag --election-timeout)"}},
		{"peer port", env("QCLUSTER_LISTEN_PORT=7001", "QCLUSTER_PEERS=b@h:0"), []string{"peers[0].port", "(env QCLUSTER_PEERS)"}},
		{"metadata", []Override{flag("listen_port", "7001"), flag("metadata", "zone=a")}, []string{`metadata: "zone=a" is not JSON`, "(flag --metadata)"}},
		{"bool", env("QCLUSTER_LISTEN_PORT=7001", "QCLUSTER_VOTER=maybe"), []string{"voter", "(env QCLUSTER_VOTER)"}},
	}
	for _, tc := range cases {
		_, err := LoadLayers(path, tc.overrides...)
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
		if tc.overrides != nil && strings.Contains(err.Error(), "line 3") {
			t.Errorf("%s: %q blames the file for an override's value", tc.name, err)
		}
	}
	_, err := EnvOverrides([]string{"QCLUSTER_IDENTIFER=x", "QCLUSTER_BIN=/bin/qcluster"})
	if err == nil || !strings.Contains(err.Error(), "env QCLUSTER_IDENTIFER: not a config field; did you mean QCLUSTER_IDENTIFIER?") {
		t.Errorf("misspelt variable: %v", err)
	}
}

// TestConfigRedacted: Redacted hides every secret that is set and nothing
// else, and leaves the original alone.
func TestConfigRedacted(t *testing.T) {
	c := Config{Identifier: "a", APIToken: "tok-1", ClusterKey: "ck-2", GossipKey: "gk-3", ExtraGossipKeys: []string{"ek-4", "ek-5"}}
	r := c.Redacted()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"tok-1", "ck-2", "gk-3", "ek-4", "ek-5"} {
		if strings.Contains(string(b), s) {
			t.Errorf("Redacted shows %q: %s", s, b)
		}
	}
	if r.Identifier != "a" || r.APIToken != "REDACTED" || len(r.ExtraGossipKeys) != 2 || c.ExtraGossipKeys[0] != "ek-4" || c.APIToken != "tok-1" {
		t.Errorf("Redacted: %+v from %+v", r, c)
	}
	if e := (Config{Identifier: "a"}).Redacted(); e.APIToken != "" || e.GossipKey != "" {
		t.Errorf("Redacted filled unset secrets: %+v", e)
	}
}

// TestConfigEnvLeavesOtherVariablesAlone: the QCLUSTER_ variables of the
// client commands, the Python SDK and the test suites are neither config
// fields nor taken for misspelt ones.
func TestConfigEnvLeavesOtherVariablesAlone(t *testing.T) {
	var env []string
	for _, k := range []string{"ADDR", "TOKEN", "CACERT", "CERT", "KEY", "BIN", "MULTIHOST_FULL", "MULTIHOST_IDLE",
		"MULTIHOST_LOGDIR", "MULTIHOST_LOGLEVEL", "MULTIHOST_REPS", "MULTIHOST_SWITCH", "SIM_SCHEDULES", "TEST_CLOCK_CHILD", "TEST_LOG"} {
		env = append(env, "QCLUSTER_"+k+"=x")
	}
	if o, err := EnvOverrides(env); err != nil || len(o) != 0 {
		t.Errorf("EnvOverrides: %v, %v; want nothing", o, err)
	}
}

// FuzzConfigOverride: any text for any field is either a valid config or
// an ErrInvalidConfig naming the override's source; never a panic.
func FuzzConfigOverride(f *testing.F) {
	f.Add(uint8(5), "b@localhost:7002,c@[::1]:7003")
	f.Add(uint8(4), `{"zone": "a"}`)
	f.Add(uint8(2), "7001")
	f.Add(uint8(12), "true")
	f.Add(uint8(20), "a,b")
	f.Add(uint8(17), `{"ca_file": "x"}`)
	f.Fuzz(func(t *testing.T, i uint8, v string) {
		fields := Fields()
		fd := fields[int(i)%len(fields)]
		c, err := LoadLayers("",
			Override{Field: "identifier", Value: "a", Source: "env QCLUSTER_IDENTIFIER"},
			Override{Field: "listen_port", Value: "7001", Source: "env QCLUSTER_LISTEN_PORT"},
			Override{Field: fd.Name, Value: v, Source: "flag --" + fd.Flag})
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("%s=%q: %v, not ErrInvalidConfig", fd.Name, v, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s=%q: loaded, but Validate says %v", fd.Name, v, err)
		}
	})
}
