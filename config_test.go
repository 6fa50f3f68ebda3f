package qcluster

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/config"
)

// The configuration's own tests are in internal/config; these check that
// the root package's re-exports are the same values and functions.

func TestConfigReexports(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	const doc = `{"identifier": "server_a", "listen_port": 7001, "server_port": 8001,
  "peers": [{"host": "localhost", "port": 7002, "identifier": "server_b"}]}`
	want, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	got.Logger, want.Logger = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseConfig = %+v, config.Parse = %+v", got, want)
	}
	var peers []PeerConfig = got.Peers
	if len(peers) != 1 || peers[0].Addr() != "localhost:7002" || string(got.Extra["server_port"]) != "8001" {
		t.Errorf("peers %+v, extra %s", peers, got.Extra)
	}

	_, err = ParseConfig([]byte(`{"identifier": "server_a", "listen_prot": 7001}`))
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, config.ErrInvalidConfig) ||
		!strings.Contains(err.Error(), `listen_prot: unknown field; did you mean "listen_port"? (line 1, column 28)`) {
		t.Errorf("ParseConfig of a misspelt key: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadConfig of a missing file: %v", err)
	}

	d := DefaultConfig()
	if d.ListenHost != DefaultListenHost || time.Duration(d.HeartbeatInterval) != DefaultHeartbeatInterval ||
		time.Duration(d.ElectionTimeout) != DefaultElectionTimeout {
		t.Errorf("DefaultConfig = %+v", d)
	}
	if NodeID("server_a") != 0x5e39e78b533e4d02 {
		t.Errorf("NodeID = %#x", NodeID("server_a"))
	}
	if Suggest("stauts", []string{"status", "leader"}) != "status" {
		t.Error("Suggest")
	}
	var hc *HealthCheckConfig = &config.HealthCheckConfig{TTL: Duration(3 * time.Second)}
	var tc *TLSConfig = &config.TLSConfig{}
	c := Config{Identifier: "a", ListenPort: 7001, HealthCheck: hc, TLS: tc, Mode: ModeMasterless, GossipProfile: GossipLocal}
	if b, err := json.Marshal(c); err != nil || !strings.Contains(string(b), `"health_check":{"ttl":"3s"}`) {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	_ = []string{GossipLAN, GossipWAN, ModeLeader}
	_ = []any{DefaultMinVoters, DefaultHealthInterval, DefaultHealthTimeout, DefaultHealthFailures}
}

func TestConfigLayersReexports(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	fields := ConfigFields()
	if len(fields) == 0 || fields[0] != (ConfigField{Name: "identifier", Env: ConfigEnvPrefix + "IDENTIFIER", Flag: "identifier", Syntax: "text"}) {
		t.Errorf("ConfigFields()[0] = %+v", fields[0])
	}
	env, err := ConfigEnvOverrides([]string{"QCLUSTER_IDENTIFIER=server_a", "QCLUSTER_LISTEN_PORT=7001", "QCLUSTER_ADDR=x"})
	if err != nil || len(env) != 2 {
		t.Fatalf("ConfigEnvOverrides = %+v, %v", env, err)
	}
	flag := ConfigOverride{Field: "listen_port", Value: "7002", Source: "flag --listen-port"}
	c, err := LoadConfigLayers("", append(env, flag)...)
	if err != nil || c.Identifier != "server_a" || c.ListenPort != 7002 {
		t.Errorf("LoadConfigLayers = %+v, %v", c, err)
	}
	if _, err := ConfigEnvOverrides([]string{"QCLUSTER_IDENTIFER=a"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("misspelt variable: %v", err)
	}
	_, err = LoadConfigLayers("", ConfigOverride{Field: "listen_port", Value: "x", Source: "flag --listen-port"})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "(flag --listen-port)") {
		t.Errorf("a bad flag: %v", err)
	}
	if r := (Config{APIToken: "secret"}).Redacted(); r.APIToken != "REDACTED" {
		t.Errorf("Redacted: %q", r.APIToken)
	}
}
