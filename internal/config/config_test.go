package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// cfgProblemsOf returns the per-problem errors of a config error.
func cfgProblemsOf(t *testing.T, err error) []error {
	t.Helper()
	u, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T does not unwrap to a list: %v", err, err)
	}
	errs := u.Unwrap()
	if len(errs) == 0 || errs[0] != ErrInvalidConfig {
		t.Fatalf("error does not unwrap to ErrInvalidConfig first: %v", errs)
	}
	return errs[1:]
}

func TestConfigSeedExample(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	cfg, err := Load(filepath.Join("testdata", "config", "server_a.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Identifier != "server_a" || cfg.ListenHost != "localhost" || cfg.ListenPort != 7001 {
		t.Errorf("identity = %q %q %d", cfg.Identifier, cfg.ListenHost, cfg.ListenPort)
	}
	want := []PeerConfig{
		{Host: "localhost", Port: 7002, Identifier: "server_b", Metadata: map[string]any{"server_port": float64(8002)}},
		{Host: "localhost", Port: 7003, Identifier: "server_c", Metadata: map[string]any{"server_port": float64(8003)}},
	}
	if !reflect.DeepEqual(cfg.Peers, want) {
		t.Errorf("peers = %+v, want %+v", cfg.Peers, want)
	}
	if !reflect.DeepEqual(cfg.Metadata, map[string]any{"server_port": float64(8001)}) {
		t.Errorf("metadata = %v", cfg.Metadata)
	}
	if time.Duration(cfg.HeartbeatInterval) != 50*time.Millisecond || time.Duration(cfg.ElectionTimeout) != 150*time.Millisecond {
		t.Errorf("timings = %v/%v, want 50ms/150ms", cfg.HeartbeatInterval, cfg.ElectionTimeout)
	}
	if want := filepath.Join(state, "qcluster", "server_a"); cfg.DataDir != want {
		t.Errorf("data_dir = %q, want %q", cfg.DataDir, want)
	}
	if cfg.Logger == nil {
		t.Error("Logger not defaulted")
	}
	if cfg.AdvertiseHost != "localhost" || cfg.AdvertiseAddr() != "localhost:7001" || cfg.Addr() != "localhost:7001" {
		t.Errorf("advertise %q, AdvertiseAddr %q, Addr %q", cfg.AdvertiseHost, cfg.AdvertiseAddr(), cfg.Addr())
	}
	// The application's own field lands in Extra.
	var port int
	if err := json.Unmarshal(cfg.Extra["server_port"], &port); err != nil || port != 8001 {
		t.Errorf("Extra[server_port] = %s (%v), want 8001", cfg.Extra["server_port"], err)
	}
	if len(cfg.Extra) != 1 {
		t.Errorf("Extra = %v, want only server_port", cfg.Extra)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}
}

func TestConfigSeedExampleFiles(t *testing.T) {
	for _, name := range []string{"seed_minimal.json", "server_b.json", "server_c.json", "shared_peers.json"} {
		t.Run(name, func(t *testing.T) {
			if _, err := Load(filepath.Join("testdata", "config", name)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigSeedDocument(t *testing.T) {
	// The seed's example verbatim, with the custom metadata of its next section.
	doc := `{
"identifier": "server_a",
"listen_host": "localhost",
"listen_port": 7001,
"peers": [
{"host": "localhost", "port": 7002, "identifier": "server_b", "metadata": {"server_port": 8002}},
{"host": "localhost", "port": 7003, "identifier": "server_c"}
]
}`
	cfg, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Peers[0].Metadata["server_port"]; got != float64(8002) {
		t.Errorf("server_b metadata server_port = %v", got)
	}
	if cfg.Peers[1].Metadata != nil || cfg.Metadata != nil || cfg.Extra != nil {
		t.Errorf("unexpected metadata/extra: %v %v %v", cfg.Peers[1].Metadata, cfg.Metadata, cfg.Extra)
	}
	if cfg.HeartbeatInterval != Duration(DefaultHeartbeatInterval) || cfg.ElectionTimeout != Duration(DefaultElectionTimeout) {
		t.Errorf("defaults not applied: %v %v", cfg.HeartbeatInterval, cfg.ElectionTimeout)
	}
}

// cfgDoc builds a config document from the valid three-peer base, with the
// top-level members replaced by extra (raw JSON "key": value pairs) and the
// peers list by peers when non-empty.
func cfgDoc(extra, peers string) string {
	if peers == "" {
		peers = `{"host": "localhost", "port": 7002, "identifier": "server_b"},
    {"host": "localhost", "port": 7003, "identifier": "server_c"}`
	}
	top := map[string]string{
		"identifier":  `"server_a"`,
		"listen_host": `"localhost"`,
		"listen_port": `7001`,
	}
	var order []string
	for _, kv := range cfgSplitMembers(extra) {
		k, v, _ := strings.Cut(kv, ":")
		k = strings.TrimSpace(k)
		var key string
		if err := json.Unmarshal([]byte(k), &key); err != nil {
			panic("bad test member " + kv)
		}
		if _, known := top[key]; !known {
			order = append(order, key)
		}
		top[key] = strings.TrimSpace(v)
	}
	var b strings.Builder
	b.WriteString("{\n")
	for _, k := range append([]string{"identifier", "listen_host", "listen_port"}, order...) {
		if v := top[k]; v != "DELETE" {
			kj, _ := json.Marshal(k)
			b.WriteString("  " + string(kj) + ": " + v + ",\n")
		}
	}
	b.WriteString("  \"peers\": [\n    " + peers + "\n  ]\n}")
	return b.String()
}

// cfgSplitMembers splits `"a": 1, "b": {"c": [1, 2]}` at top-level commas.
func cfgSplitMembers(s string) []string {
	var out []string
	depth, start, inStr := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if strings.TrimSpace(s[start:]) != "" {
		out = append(out, s[start:])
	}
	return out
}

func TestConfigBaseDocIsValid(t *testing.T) {
	if _, err := Parse([]byte(cfgDoc("", ""))); err != nil {
		t.Fatalf("base document: %v", err)
	}
}

func TestConfigParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the one problem's message
		n    int      // number of problems; 0 means 1
	}{
		// identifier
		{"identifier missing", cfgDoc(`"identifier": DELETE`, ""),
			[]string{`identifier: missing; give this peer a unique name such as "server_a"`}, 0},
		{"identifier empty", cfgDoc(`"identifier": ""`, ""),
			[]string{`identifier: missing;`, "(line 2, column 17)"}, 0},
		{"identifier null", cfgDoc(`"identifier": null`, ""),
			[]string{`identifier: missing;`}, 0},
		{"identifier whitespace", cfgDoc(`"identifier": "server a"`, ""),
			[]string{`identifier: "server a" contains whitespace`, `such as "server_a"`, "(line 2, column 17)"}, 0},
		{"identifier control", cfgDoc(`"identifier": "server\u0007a"`, ""),
			[]string{`identifier: "server\aa" contains a control`}, 0},
		{"identifier type", cfgDoc(`"identifier": 5`, ""),
			[]string{`identifier: expected a string, got number 5 (line 2, column 17)`}, 0},

		// listen_port
		{"listen_port missing", cfgDoc(`"listen_port": DELETE`, ""),
			[]string{`listen_port: missing; give the port this peer listens on, such as 7001`}, 0},
		{"listen_port top-level port", cfgDoc(`"listen_port": DELETE, "port": 7001`, ""),
			[]string{`listen_port: missing`, `top-level "port"; did you mean "listen_port"?`}, 0},
		{"listen_port range", cfgDoc(`"listen_port": 70000`, ""),
			[]string{`listen_port: 70000 is out of range (1-65535) (line 4, column 18)`}, 0},
		{"listen_port negative", cfgDoc(`"listen_port": -1`, ""),
			[]string{`listen_port: -1 is out of range (1-65535)`}, 0},
		{"listen_port huge", cfgDoc(`"listen_port": 123456789012345678901234567890`, ""),
			[]string{`listen_port: 123456789012345678901234567890 is out of range (1-65535)`}, 0},
		{"listen_port fraction", cfgDoc(`"listen_port": 7001.5`, ""),
			[]string{`listen_port: expected a whole number such as 7001, got 7001.5`}, 0},
		{"listen_port string", cfgDoc(`"listen_port": "7001"`, ""),
			[]string{`listen_port: expected a number, got string "7001"; write 7001 without quotes (line 4, column 18)`}, 0},
		{"listen_port bool", cfgDoc(`"listen_port": true`, ""),
			[]string{`listen_port: expected a number, got boolean true`}, 0},

		// hosts
		{"listen_host with port", cfgDoc(`"listen_host": "localhost:7001"`, ""),
			[]string{`listen_host: "localhost:7001" includes a port; write only "localhost" here and put 7001 in listen_port`}, 0},
		{"listen_host url", cfgDoc(`"listen_host": "http://localhost"`, ""),
			[]string{`listen_host: "http://localhost" looks like a URL`}, 0},
		{"listen_host brackets", cfgDoc(`"listen_host": "[::1]"`, ""),
			[]string{`listen_host: "[::1]" has brackets; write IPv6 addresses without them, such as "::1"`}, 0},
		{"listen_host space", cfgDoc(`"listen_host": "my host"`, ""),
			[]string{`listen_host: "my host" is not a valid host name or IP address`}, 0},
		{"listen_host any without advertise", cfgDoc(`"listen_host": "0.0.0.0"`, ""),
			[]string{`advertise_host: missing; listen_host "0.0.0.0" listens on all interfaces`, "(line 3, column 18)"}, 0},
		{"listen_host :: without advertise", cfgDoc(`"listen_host": "::"`, ""),
			[]string{`advertise_host: missing; listen_host "::"`}, 0},
		{"advertise_host unspecified", cfgDoc(`"listen_host": "0.0.0.0", "advertise_host": "0.0.0.0"`, ""),
			[]string{`advertise_host: "0.0.0.0" is not an address other peers can connect to`}, 0},
		{"advertise_host with port", cfgDoc(`"advertise_host": "10.0.0.5:7001"`, ""),
			[]string{`advertise_host: "10.0.0.5:7001" includes a port`}, 0},

		// peers entries
		{"peer port range", cfgDoc("", `{"host": "localhost", "port": 7002, "identifier": "server_b"},
    {"host": "localhost", "port": 70000, "identifier": "server_c"}`),
			[]string{`peers[1].port: 70000 is out of range (1-65535) (line 7, column 35)`}, 0},
		{"peer port missing", cfgDoc("", `{"host": "localhost", "identifier": "server_b"}`),
			[]string{`peers[0].port: missing; give the port the peer listens on (its listen_port)`}, 0},
		{"peer port string", cfgDoc("", `{"host": "localhost", "port": "7002", "identifier": "server_b"}`),
			[]string{`peers[0].port: expected a number, got string "7002"; write 7002 without quotes`}, 0},
		{"peer host missing", cfgDoc("", `{"port": 7002, "identifier": "server_b"}`),
			[]string{`peers[0].host: missing; give the host name or IP address the peer is reachable at`}, 0},
		{"peer host unspecified", cfgDoc("", `{"host": "0.0.0.0", "port": 7002, "identifier": "server_b"}`),
			[]string{`peers[0].host: "0.0.0.0" is not an address others can connect to`}, 0},
		{"peer host with port", cfgDoc("", `{"host": "localhost:7002", "port": 7002, "identifier": "server_b"}`),
			[]string{`peers[0].host: "localhost:7002" includes a port; write only "localhost" here and put 7002 in peers[0].port`}, 0},
		{"peer identifier missing", cfgDoc("", `{"host": "localhost", "port": 7002}`),
			[]string{`peers[0].identifier: missing; give the peer's own identifier`}, 0},
		{"peer identifier whitespace", cfgDoc("", `{"host": "localhost", "port": 7002, "identifier": "server\tb"}`),
			[]string{`peers[0].identifier: "server\tb" contains whitespace`}, 0},
		{"peer not an object", cfgDoc("", `"localhost:7002"`),
			[]string{`peers[0]: expected an object such as {"host": "localhost", "port": 7002, "identifier": "server_b"}, got string "localhost:7002"`}, 0},
		{"peers not a list", `{"identifier": "server_a", "listen_port": 7001, "peers": {"host": "localhost"}}`,
			[]string{`peers: expected a list of peers`, "got an object"}, 0},
		{"peer unknown field", cfgDoc("", `{"host": "localhost", "port": 7002, "identifier": "server_b", "weight": 3}`),
			[]string{`peers[0].weight: unknown field; a peer entry takes only "host", "port", "identifier" and "metadata"`, "metadata"}, 0},
		{"peer misspelt field", cfgDoc("", `{"hots": "localhost", "port": 7002, "identifier": "server_b"}`),
			[]string{`peers[0].hots: unknown field; did you mean "host"?`, "(line 6, column 6)"}, 0},
		{"peer alias id", cfgDoc("", `{"host": "localhost", "port": 7002, "id": "server_b"}`),
			[]string{`peers[0].id: unknown field; did you mean "identifier"?`}, 0},
		{"peer alias ip", cfgDoc("", `{"ip": "10.0.0.2", "port": 7002, "identifier": "server_b"}`),
			[]string{`peers[0].ip: unknown field; did you mean "host"?`}, 0},
		{"peer metadata type", cfgDoc("", `{"host": "localhost", "port": 7002, "identifier": "server_b", "metadata": [1]}`),
			[]string{`peers[0].metadata: expected an object such as {"server_port": 8002}, got an array`}, 0},

		// cross-peer checks
		{"duplicate identifiers", cfgDoc("", `{"host": "localhost", "port": 7002, "identifier": "server_b"},
    {"host": "localhost", "port": 7003, "identifier": "server_b"}`),
			[]string{`peers[1].identifier: "server_b" is also the identifier of peers[0]; every peer needs a unique identifier`, "(line 7, column 55)"}, 0},
		{"duplicate address", cfgDoc("", `{"host": "localhost", "port": 7002, "identifier": "server_b"},
    {"host": "localhost", "port": 7002, "identifier": "server_c"}`),
			[]string{`peers[1]: address localhost:7002 is also used by peers[0] ("server_b"); each peer needs its own host:port`, "(line 7, column 5)"}, 0},
		{"duplicate address loopback spellings", cfgDoc("", `{"host": "localhost", "port": 7002, "identifier": "server_b"},
    {"host": "127.0.0.1", "port": 7002, "identifier": "server_c"}`),
			[]string{`peers[1]: address 127.0.0.1:7002 is also used by peers[0] ("server_b")`}, 0},
		{"self with another address", cfgDoc("", `{"host": "localhost", "port": 7005, "identifier": "server_a"}`),
			[]string{`peers[0]: identifier "server_a" is this peer's own, but the entry's address localhost:7005 is not this peer's (localhost:7001); fix the entry or remove it`}, 0},
		{"other peer at own address", cfgDoc("", `{"host": "localhost", "port": 7001, "identifier": "server_b"}`),
			[]string{`peers[0]: address localhost:7001 is this peer's own (localhost:7001); give "server_b" its own address`}, 0},
		{"other peer at own address via advertise", cfgDoc(`"listen_host": "0.0.0.0", "advertise_host": "db1.example.com"`,
			`{"host": "DB1.example.com", "port": 7001, "identifier": "server_b"}`),
			[]string{`peers[0]: address DB1.example.com:7001 is this peer's own (db1.example.com:7001)`}, 0},
		{"self metadata conflict", cfgDoc(`"metadata": {"server_port": 8001}`,
			`{"host": "localhost", "port": 7001, "identifier": "server_a", "metadata": {"server_port": 9001}}`),
			[]string{`peers[0].metadata: differs from this peer's top-level metadata`, "keep one"}, 0},

		// durations
		{"heartbeat too small", cfgDoc(`"heartbeat_interval": "500us", "election_timeout": "150ms"`, ""),
			[]string{`heartbeat_interval: 500µs is below the 1ms minimum`}, 0},
		{"heartbeat negative", cfgDoc(`"heartbeat_interval": "-5ms"`, ""),
			[]string{`heartbeat_interval: -5ms is negative`}, 0},
		{"heartbeat explicit zero", cfgDoc(`"heartbeat_interval": "0s"`, ""),
			[]string{`heartbeat_interval: "0s" is not a usable duration; remove the field for the default (50ms) or give at least 1ms`}, 0},
		{"heartbeat bare number", cfgDoc(`"heartbeat_interval": 50`, ""),
			[]string{`heartbeat_interval: expected a duration string such as "150ms", got the bare number 50; write it as a string with a unit, such as "50ms"`}, 0},
		{"heartbeat no unit", cfgDoc(`"heartbeat_interval": "50"`, ""),
			[]string{`heartbeat_interval: "50" has no unit; write it with one, such as "50ms"`}, 0},
		{"heartbeat nonsense", cfgDoc(`"heartbeat_interval": "fast"`, ""),
			[]string{`heartbeat_interval: "fast" is not a duration`}, 0},
		{"election below 3x heartbeat", cfgDoc(`"election_timeout": "100ms"`, ""),
			[]string{`election_timeout (100ms) must be at least 3x heartbeat_interval (50ms) so a leader's heartbeats arrive well within it`, "raise election_timeout to 150ms or more", "(line 5, column 23)"}, 0},
		{"election default below 3x heartbeat", cfgDoc(`"heartbeat_interval": "100ms"`, ""),
			[]string{`election_timeout (150ms) must be at least 3x heartbeat_interval (100ms)`, "raise election_timeout to 300ms or more"}, 0},
		{"election too long", cfgDoc(`"election_timeout": "2m"`, ""),
			[]string{`election_timeout: 2m0s is above the 1m0s maximum`}, 0},
		{"election negative", cfgDoc(`"election_timeout": "-1s"`, ""),
			[]string{`election_timeout: -1s is negative`}, 0},

		// misc fields
		{"cluster_name control", cfgDoc(`"cluster_name": "prod\teu"`, ""),
			[]string{`cluster_name: "prod\teu" contains a control or non-printable character`}, 0},
		{"metadata type", cfgDoc(`"metadata": "server_port=8001"`, ""),
			[]string{`metadata: expected an object such as {"server_port": 8002}, got string "server_port=8001"`}, 0},
		{"data_dir type", cfgDoc(`"data_dir": ["/var/lib/qcluster"]`, ""),
			[]string{`data_dir: expected a string, got an array`}, 0},

		// health_check
		{"health_check empty", cfgDoc(`"health_check": {}`, ""),
			[]string{`health_check: give "http" (a URL QCluster polls`, `or "ttl"`}, 0},
		{"health_check both", cfgDoc(`"health_check": {"http": "http://127.0.0.1:8001/healthz", "ttl": "3s"}`, ""),
			[]string{`health_check: give either "http" or "ttl", not both`}, 0},
		{"health_check not an object", cfgDoc(`"health_check": "http://x"`, ""),
			[]string{`health_check: expected an object such as {"http": "http://127.0.0.1:8001/healthz"} or {"ttl": "3s"}, got string`}, 0},
		{"health_check bad url", cfgDoc(`"health_check": {"http": "127.0.0.1:8001/healthz"}`, ""),
			[]string{`health_check.http: "127.0.0.1:8001/healthz" is not an http(s) URL; give one such as "http://127.0.0.1:8001/healthz"`}, 0},
		{"health_check timeout over interval", cfgDoc(`"health_check": {"http": "http://127.0.0.1:8001/healthz", "interval": "1s", "timeout": "2s"}`, ""),
			[]string{`health_check.timeout: 2s is longer than the interval (1s); give at most the interval`}, 0},
		{"health_check negative failures", cfgDoc(`"health_check": {"http": "http://127.0.0.1:8001/healthz", "failures": -1}`, ""),
			[]string{`health_check.failures: -1 is negative; give at least 1 (default 2)`}, 0},
		{"health_check short ttl", cfgDoc(`"health_check": {"ttl": "10ms"}`, ""),
			[]string{`health_check.ttl: 10ms is too short; give at least 100ms`}, 0},
		{"health_check ttl with interval", cfgDoc(`"health_check": {"ttl": "3s", "interval": "1s"}`, ""),
			[]string{`health_check.interval: only an "http" check takes it; remove it`}, 0},
		{"health_check ttl number", cfgDoc(`"health_check": {"ttl": 3}`, ""),
			[]string{`health_check.ttl: expected a duration string such as "150ms", got the bare number 3`}, 0},
		{"health_check misspelt", cfgDoc(`"health_check": {"htpp": "http://127.0.0.1:8001/healthz"}`, ""),
			[]string{`health_check.htpp: unknown field; did you mean "http"?`}, 0},
		{"health_check misspelt top", cfgDoc(`"health_chek": {"ttl": "3s"}`, ""),
			[]string{`health_chek: unknown field; did you mean "health_check"?`}, 0},

		// unknown and repeated keys
		{"misspelt top-level field", cfgDoc(`"listen_port": DELETE, "listen_prot": 7001`, ""),
			[]string{`listen_prot: unknown field; did you mean "listen_port"? (line 4, column 3)`}, 0},
		{"repeated key", "{\n  \"identifier\": \"server_a\",\n  \"listen_port\": 7001,\n  \"peers\": [],\n  \"cluster_name\": \"a\",\n  \"cluster_name\": \"b\"\n}",
			[]string{`cluster_name: given twice (first at line 5, column 3); keep one (line 6, column 3)`}, 0},
		{"repeated key in peer", cfgDoc("", `{"host": "localhost", "port": 7002, "port": 7003, "identifier": "server_b"}`),
			[]string{`peers[0].port: given twice (first at line 6, column 27); keep one`}, 0},

		// document shape
		{"empty", "", []string{`the config is empty; expected a JSON object`}, 0},
		{"blank", " \n\t", []string{`the config is empty`}, 0},
		{"array", `[{"identifier": "server_a"}]`, []string{`the config must be a JSON object`, "got an array (line 1, column 1)"}, 0},
		{"null", `null`, []string{`the config must be a JSON object`, "got null"}, 0},
		{"string", ` "server_a"`, []string{`the config must be a JSON object`, `got string "server_a" (line 1, column 2)`}, 0},

		// several problems at once
		{"several", `{"listen_port": 0, "peers": [{"host": "", "port": 99999, "identifier": ""}]}`,
			[]string{"(5 problems):\n\tidentifier: missing", "\n\tlisten_port: missing", "\n\tpeers[0].identifier: missing",
				"\n\tpeers[0].host: missing", "\n\tpeers[0].port: 99999 is out of range"}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("no error for\n%s", tt.doc)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n%s\ndoes not contain\n%s\ndocument:\n%s", msg, w, tt.doc)
				}
			}
			n := max(tt.n, 1)
			if got := cfgProblemsOf(t, err); len(got) != n {
				t.Errorf("%d problems, want %d: %v", len(got), n, err)
			}
		})
	}
}

// cfgTestListener is a net.Listener that only has an address.
type cfgTestListener struct{ addr net.Addr }

func (l cfgTestListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l cfgTestListener) Close() error              { return nil }
func (l cfgTestListener) Addr() net.Addr            { return l.addr }

func cfgValid() Config {
	return Config{
		Identifier: "server_a",
		ListenHost: "localhost",
		ListenPort: 7001,
		Peers: []PeerConfig{
			{Host: "localhost", Port: 7002, Identifier: "server_b"},
			{Host: "localhost", Port: 7003, Identifier: "server_c"},
		},
	}
}

func TestConfigValidateGo(t *testing.T) {
	ln := cfgTestListener{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"zero values take defaults", func(c *Config) { *c = Config{Identifier: "solo", ListenPort: 7001} }, ""},
		{"listener without port", func(c *Config) { c.ListenPort, c.Listener = 0, ln }, ""},
		{"listener with its port", func(c *Config) { c.ListenPort, c.Listener = 41234, ln }, ""},
		{"listener with another port", func(c *Config) { c.Listener = ln },
			"listen_port: 7001 differs from the port of Listener (41234); set listen_port to 0 or to 41234"},
		{"identifier too long", func(c *Config) { c.Identifier = strings.Repeat("x", 256) }, "identifier: \"xxx"},
		{"identifier bad utf-8", func(c *Config) { c.Identifier = "a\xffb" }, `identifier: "a\xffb" is not valid UTF-8`},
		{"metadata not encodable", func(c *Config) { c.Metadata = map[string]any{"ch": make(chan int)} },
			"metadata: cannot be encoded as JSON"},
		{"peer metadata not encodable", func(c *Config) { c.Peers[1].Metadata = map[string]any{"f": func() {}} },
			"peers[1].metadata: cannot be encoded as JSON"},
		{"extra holds a field", func(c *Config) { c.Extra = map[string]json.RawMessage{"identifier": json.RawMessage(`"x"`)} },
			"identifier: is a QCluster field, but it is in Extra"},
		{"extra holds a misspelling", func(c *Config) { c.Extra = map[string]json.RawMessage{"listenPort": json.RawMessage(`1`)} },
			`listenPort: unknown field; did you mean "listen_port"?`},
		{"extra invalid json", func(c *Config) { c.Extra = map[string]json.RawMessage{"server_port": json.RawMessage(`{`)} },
			"server_port: the value in Extra is not valid JSON"},
		{"negative heartbeat", func(c *Config) { c.HeartbeatInterval = Duration(-time.Millisecond) }, "heartbeat_interval: -1ms is negative"},
		{"election vs default heartbeat", func(c *Config) { c.ElectionTimeout = Duration(100 * time.Millisecond) },
			"election_timeout (100ms) must be at least 3x heartbeat_interval (50ms, the default)"},
		{"self entry with own address", func(c *Config) {
			c.Peers = append(c.Peers, PeerConfig{Host: "127.0.0.1", Port: 7001, Identifier: "server_a"})
		}, ""},
		{"self entry via listener port", func(c *Config) {
			c.ListenHost, c.ListenPort, c.Listener = "", 0, ln
			c.Peers = append(c.Peers, PeerConfig{Host: "127.0.0.1", Port: 41234, Identifier: "server_a"})
		}, ""},
		{"all interfaces with advertise", func(c *Config) { c.ListenHost, c.AdvertiseHost = "::", "db1.example.com" }, ""},
		{"ipv6 hosts", func(c *Config) { c.ListenHost, c.Peers[0].Host = "::1", "fe80::1%eth0" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfgValid()
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if err := c.WithDefaults().Validate(); err != nil {
					t.Fatalf("unexpected error after WithDefaults: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n%v\nwant it to wrap ErrInvalidConfig and contain\n%s", err, tt.want)
			}
		})
	}
}

func TestConfigNodeIDCollision(t *testing.T) {
	c := cfgValid()
	sameID := func(id string) uint64 {
		if id == "server_c" {
			return NodeID("server_a")
		}
		return NodeID(id)
	}
	ps := validate(c, sameID)
	if len(ps) != 1 || !strings.Contains(ps[0].Error(), `peers[1].identifier: identifiers "server_a" and "server_c" hash to the same node ID`) ||
		!strings.Contains(ps[0].Error(), "rename one of them") {
		t.Fatalf("problems = %v", ps)
	}
}

func TestConfigNodeID(t *testing.T) {
	// FNV-1a 64 of "server_a", computed independently.
	if got := NodeID("server_a"); got != 0x5e39e78b533e4d02 {
		t.Fatalf("NodeID = %#x", got)
	}
	if a := "server_a"; NodeID(a) != NodeID(strings.Clone(a)) || NodeID(a) == NodeID("server_b") {
		t.Fatal("NodeID not stable or not distinct")
	}
	// FNV-1a 64 offset basis for the empty string.
	if got := NodeID(""); got != 0xcbf29ce484222325 {
		t.Fatalf("NodeID(\"\") = %#x, want the FNV-1a offset basis", got)
	}
	for _, id := range []string{"a", "server_a", "p0", "p1", "日本"} {
		if NodeID(id) == 0 {
			t.Fatalf("NodeID(%q) = 0", id)
		}
	}
}

func TestConfigMisspellings(t *testing.T) {
	misspelt := map[string]string{
		"listen_prot":         "listen_port",
		"ListenPort":          "listen_port",
		"LISTEN_PORT":         "listen_port",
		"listenport":          "listen_port",
		"heartbeat-interval":  "heartbeat_interval",
		"heartbeatInterval":   "heartbeat_interval",
		"heartbeat_intervall": "heartbeat_interval",
		"election_timout":     "election_timeout",
		"electon_timout":      "election_timeout",
		"identifer":           "identifier",
		"Identifier":          "identifier",
		"peer":                "peers",
		"Peers":               "peers",
		"peres":               "peers",
		"metdata":             "metadata",
		"data-dir":            "data_dir",
		"datadir":             "data_dir",
		"cluster name":        "cluster_name",
		"advertise_hots":      "advertise_host",
		"listen_hots":         "listen_host",
	}
	for key, want := range misspelt {
		doc := cfgDoc(`"`+key+`": 1`, "")
		_, err := Parse([]byte(doc))
		if err == nil {
			t.Errorf("%q: accepted", key)
			continue
		}
		if w := `unknown field; did you mean "` + want + `"?`; !strings.Contains(err.Error(), w) {
			t.Errorf("%q: error %q does not contain %q", key, err, w)
		}
	}
	// Application fields, even short or vaguely similar ones, are kept.
	for _, key := range []string{"server_port", "port", "host", "users", "papers", "name", "data", "data_id", "meta", "id", "cluster", "timeout", "listen", "heartbeat", "log_level", "x"} {
		doc := cfgDoc(`"`+key+`": {"a": [1, 2]}`, "")
		cfg, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("%q: %v", key, err)
			continue
		}
		if got := string(cfg.Extra[key]); got != `{"a": [1, 2]}` {
			t.Errorf("%q: Extra = %q", key, got)
		}
	}
}

func TestConfigMisspeltFile(t *testing.T) {
	path := filepath.Join("testdata", "config", "misspelt.json")
	_, err := Load(path)
	if err == nil {
		t.Fatal("misspelt.json accepted")
	}
	for _, w := range []string{
		"qcluster: invalid config in " + path + " (2 problems):",
		`listen_prot: unknown field; did you mean "listen_port"? (line 4, column 3)`,
		`peers[0].identifer: unknown field; did you mean "identifier"? (line 6, column 41)`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
		}
	}
}

func TestConfigSyntaxErrors(t *testing.T) {
	path := filepath.Join("testdata", "config", "syntax_error.json")
	_, err := Load(path)
	if err == nil || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	if w := "syntax error: invalid character ']' looking for beginning of value; remove the trailing comma before it (line 6, column 3)"; !strings.Contains(err.Error(), w) {
		t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %v does not name %s", err, path)
	}

	tests := []struct{ doc, want string }{
		{"{\n  \"identifier\": \"a\"\n  \"listen_port\": 7001\n}", `invalid character '"' after object key:value pair; is a comma missing before it? (line 3, column 3)`},
		{"{\n  // comment\n}", "; JSON has no comments, remove it (line 2, column 3)"},
		{"{'identifier': 'a'}", "; JSON strings use double quotes (line 1, column 2)"},
		{"{\"identifier\": \"a\",\n \"peers\": [", "syntax error: unexpected end of input; the JSON is cut short (a missing '}', ']' or '\"'?) (line 2, column 12)"},
		{`{"identifier": "ü", x}`, "syntax error: invalid character 'x' looking for beginning of object key string (line 1, column 21)"},
		{`{} {}`, "invalid character '{' after top-level value (line 1, column 4)"},
		{"\xef\xbb\xbf{\"identifier\": \"a\", \"listen_port\": 7001}", ""}, // a UTF-8 BOM is fine
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.doc))
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.doc, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error\n%v\ndoes not contain\n%s", tt.doc, err, tt.want)
		}
	}
}

func TestConfigTypeErrorPosition(t *testing.T) {
	doc := `{
  "identifier": "server_a",
  "listen_host": "localhost",
  "listen_port": "7001",
  "peers": []
}`
	_, err := Parse([]byte(doc))
	want := `qcluster: invalid config: listen_port: expected a number, got string "7001"; write 7001 without quotes (line 4, column 18)`
	if err == nil || err.Error() != want {
		t.Fatalf("error\n%v\nwant\n%s", err, want)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "server_a.json")
	_, err := Load(path)
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the path %q", err, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v is not fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unreadable file reported as invalid config: %v", err)
	}
}

func TestConfigDurationJSON(t *testing.T) {
	for _, d := range []time.Duration{150 * time.Millisecond, 50 * time.Millisecond, 1500 * time.Millisecond, 2 * time.Minute, 0, 250 * time.Microsecond} {
		b, err := json.Marshal(Duration(d))
		if err != nil {
			t.Fatal(err)
		}
		if want := `"` + d.String() + `"`; string(b) != want {
			t.Errorf("Marshal(%v) = %s, want %s", d, b, want)
		}
		var got Duration
		if err := json.Unmarshal(b, &got); err != nil || time.Duration(got) != d {
			t.Errorf("Unmarshal(%s) = %v, %v", b, got, err)
		}
	}
	if s := Duration(150 * time.Millisecond).String(); s != "150ms" {
		t.Errorf("String = %q", s)
	}

	var d Duration
	err := json.Unmarshal([]byte(`150`), &d)
	if err == nil || !strings.Contains(err.Error(), `got the bare number 150; write it as a string with a unit, such as "150ms"`) {
		t.Errorf("bare number: %v", err)
	}
	for doc, want := range map[string]string{
		`"150"`:  `"150" has no unit; write it with one, such as "150ms"`,
		`"soon"`: `"soon" is not a duration; write one such as "150ms"`,
		`""`:     `empty duration`,
		`true`:   `expected a duration string such as "150ms", got boolean true`,
		`{}`:     `got an object`,
	} {
		if err := json.Unmarshal([]byte(doc), &d); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Unmarshal(%s) error %v, want it to contain %q", doc, err, want)
		}
	}
	d = Duration(time.Second)
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || d != Duration(time.Second) {
		t.Errorf("null: %v, %v", d, err)
	}

	// Inside a struct.
	var s struct {
		T Duration `json:"t"`
	}
	if err := json.Unmarshal([]byte(`{"t": "1m30s"}`), &s); err != nil || time.Duration(s.T) != 90*time.Second {
		t.Errorf("struct: %v, %v", s.T, err)
	}
}

func TestConfigWithDefaultsDoesNotMutate(t *testing.T) {
	c := cfgValid()
	c.Metadata = map[string]any{"server_port": float64(8001), "tags": []any{"a", map[string]any{"b": 1.0}}}
	c.Peers[0].Metadata = map[string]any{"server_port": float64(8002)}
	c.Extra = map[string]json.RawMessage{"server_port": json.RawMessage(`8001`)}
	before, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}

	d := c.WithDefaults()
	d.Metadata["server_port"] = "changed"
	d.Metadata["tags"].([]any)[0] = "changed"
	d.Metadata["tags"].([]any)[1].(map[string]any)["b"] = "changed"
	d.Peers[0].Metadata["server_port"] = "changed"
	d.Peers[1].Host = "changed"
	d.Extra["server_port"][0] = '9'
	d.Extra["new"] = json.RawMessage(`1`)

	after, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("WithDefaults' result shares state with its receiver:\nbefore %s\nafter  %s", before, after)
	}
	if c.DataDir != "" || c.HeartbeatInterval != 0 || c.Logger != nil || c.AdvertiseHost != "" {
		t.Errorf("receiver modified: %+v", c)
	}
}

func TestConfigWithDefaults(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	d := Config{Identifier: "server_a", ListenPort: 7001}.WithDefaults()
	if d.ListenHost != DefaultListenHost || d.AdvertiseHost != DefaultListenHost ||
		time.Duration(d.HeartbeatInterval) != DefaultHeartbeatInterval || time.Duration(d.ElectionTimeout) != DefaultElectionTimeout ||
		d.DataDir != filepath.Join(state, "qcluster", "server_a") || d.Logger == nil {
		t.Errorf("defaults: %+v", d)
	}
	if d.Addr() != "127.0.0.1:7001" || d.AdvertiseAddr() != "127.0.0.1:7001" {
		t.Errorf("Addr %q AdvertiseAddr %q", d.Addr(), d.AdvertiseAddr())
	}

	// Explicit values are kept.
	set := Config{Identifier: "a", ListenHost: "0.0.0.0", ListenPort: 7001, AdvertiseHost: "db1", DataDir: "/d",
		HeartbeatInterval: Duration(time.Second), ElectionTimeout: Duration(5 * time.Second),
		Mode: ModeMasterless, MinVoters: 5, GossipProfile: GossipWAN}
	got := set.WithDefaults()
	got.Logger = nil
	if !reflect.DeepEqual(got, set) {
		t.Errorf("WithDefaults changed explicit values: %+v", got)
	}

	// All interfaces: no advertise host is invented.
	if d := (Config{Identifier: "a", ListenHost: "::", ListenPort: 7001}).WithDefaults(); d.AdvertiseHost != "" {
		t.Errorf("advertise_host invented for ::: %q", d.AdvertiseHost)
	}

	// Listener: port and host come from it.
	ln := cfgTestListener{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 41000}}
	d = Config{Identifier: "a", Listener: ln}.WithDefaults()
	if d.ListenHost != "::1" || d.ListenPort != 41000 || d.AdvertiseAddr() != "[::1]:41000" {
		t.Errorf("listener defaults: host %q port %d advertise %q", d.ListenHost, d.ListenPort, d.AdvertiseAddr())
	}
	if a := (Config{Identifier: "a", Listener: ln}).AdvertiseAddr(); a != "[::1]:41000" {
		t.Errorf("AdvertiseAddr without defaults = %q", a)
	}

	// Own metadata from this peer's entry in a shared peers list.
	cfg, err := Load(filepath.Join("testdata", "config", "shared_peers.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Metadata, map[string]any{"server_port": float64(8002)}) {
		t.Errorf("metadata from self entry = %v", cfg.Metadata)
	}
	if time.Duration(cfg.HeartbeatInterval) != 30*time.Millisecond || time.Duration(cfg.ElectionTimeout) != 300*time.Millisecond || cfg.ClusterName != "demo" {
		t.Errorf("explicit fields: %v %v %q", cfg.HeartbeatInterval, cfg.ElectionTimeout, cfg.ClusterName)
	}
	remote := cfg.RemotePeers()
	if len(remote) != 2 || remote[0].Identifier != "server_a" || remote[1].Identifier != "server_c" || len(cfg.Peers) != 3 {
		t.Errorf("RemotePeers = %+v", remote)
	}
}

func TestConfigDefaultConfig(t *testing.T) {
	d := Default()
	want := Config{ListenHost: "127.0.0.1", HeartbeatInterval: Duration(50 * time.Millisecond), ElectionTimeout: Duration(150 * time.Millisecond)}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Default = %+v", d)
	}
	d.Identifier, d.ListenPort = "a", 7001
	if err := d.Validate(); err != nil {
		t.Error(err)
	}
}

func TestConfigDataDirName(t *testing.T) {
	for id, want := range map[string]string{
		"server_a":    "server_a",
		"node-1.eu":   "node-1.eu",
		"../../etc":   ".._.._etc-",
		"a/b":         "a_b-",
		"..":          "__-",
		"日本":          "__-",
		"C:\\x":       "C__x-",
		"ok" + "\x00": "ok_-",
	} {
		got := dirName(id)
		if !strings.HasPrefix(got, want) || strings.ContainsAny(got, "/\\\x00") || got == "." || got == ".." {
			t.Errorf("dirName(%q) = %q, want prefix %q", id, got, want)
		}
		if strings.HasSuffix(want, "-") && dirName(id) == dirName(id+"x") {
			t.Errorf("dirName(%q) not unique", id)
		}
	}
	if got := len(dirName(strings.Repeat("a", 200))); got > 70 {
		t.Errorf("long name: %d bytes", got)
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "config", "server_a.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"server_port":8001}`)) || !bytes.Contains(b, []byte(`"heartbeat_interval":"50ms"`)) {
		t.Errorf("marshaled config lacks Extra or durations: %s", b)
	}
	again, err := Parse(b)
	if err != nil {
		t.Fatalf("re-parse %s: %v", b, err)
	}
	cfg.Logger, again.Logger = nil, nil
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("round trip differs:\n%+v\n%+v", cfg, again)
	}

	// json.Unmarshal into a Config is strict too, and keeps Logger/Listener.
	var c Config
	c.Listener = cfgTestListener{&net.TCPAddr{Port: 1}}
	if err := json.Unmarshal([]byte(`{"identifier": "a", "listen_prot": 1}`), &c); err == nil ||
		!strings.Contains(err.Error(), `did you mean "listen_port"?`) || !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("json.Unmarshal misspelling: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"identifier": "a", "listen_port": 7001, "app": true}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Identifier != "a" || c.ListenPort != 7001 || string(c.Extra["app"]) != "true" || c.Listener == nil || c.HeartbeatInterval != 0 {
		t.Errorf("json.Unmarshal = %+v", c)
	}

	// A Config without peers marshals an empty list.
	b, err = json.Marshal(Config{Identifier: "a", ListenPort: 1})
	if err != nil || !bytes.Contains(b, []byte(`"peers":[]`)) {
		t.Errorf("Marshal = %s, %v", b, err)
	}
}

func TestConfigErrorShape(t *testing.T) {
	err := Config{}.Validate()
	if err == nil {
		t.Fatal("zero Config is valid")
	}
	ps := cfgProblemsOf(t, err)
	if len(ps) != 2 {
		t.Fatalf("problems = %v", ps)
	}
	want := "qcluster: invalid config (2 problems):\n\tidentifier: missing; give this peer a unique name such as \"server_a\"\n\tlisten_port: missing; give the port this peer listens on, such as 7001"
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
	if err := cfgValid().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigPeerAddr(t *testing.T) {
	if a := (PeerConfig{Host: "::1", Port: 7002}).Addr(); a != "[::1]:7002" {
		t.Errorf("Addr = %q", a)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"server_a.json", "seed_minimal.json", "shared_peers.json", "misspelt.json", "syntax_error.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "config", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("null"))
	f.Add([]byte(`{"identifier": "a", "listen_port": 7001, "heartbeat_interval": "1ms", "election_timeout": "3ms", "x": [1, {"y": null}]}`))
	f.Add([]byte(`{"identifier": "a", "listen_port": "7001", "peers": [{"host": "::", "port": 1e3, "identifier": "b", "ip": 1}], "peers": null}`))
	f.Add([]byte(`{"identifier": "a", "listen_host": "0.0.0.0", "listen_port": 7001, "peers": [{"host": "localhost", "port": 7001, "identifier": "a"}]}`))
	f.Add([]byte("{\"identifier\": \"\xff\", \"listen_port\": 1, \"metadata\": {\"a\": 1, \"a\": 2},}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error does not wrap ErrInvalidConfig: %v", err)
			}
			if len(cfgProblemsOf(t, err)) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse result fails Validate: %v", err)
		}
		// What parses marshals and parses back to the same thing.
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		b2, err := json.Marshal(again)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("round trip differs:\n%s\n%s (%v)", b, b2, err)
		}
	})
}

// TestConfigHealthCheck: both forms of "health_check" parse, an "http"
// check gets its defaults, and the config marshals back to the same thing.
func TestConfigHealthCheck(t *testing.T) {
	c, err := Parse([]byte(cfgDoc(`"health_check": {"http": "http://127.0.0.1:8001/healthz"}`, "")))
	if err != nil {
		t.Fatal(err)
	}
	h := c.WithDefaults().HealthCheck
	want := HealthCheckConfig{HTTP: "http://127.0.0.1:8001/healthz", Interval: Duration(time.Second), Timeout: Duration(500 * time.Millisecond), Failures: 2}
	if h == nil || *h != want {
		t.Fatalf("WithDefaults().HealthCheck = %+v, want %+v", h, want)
	}
	orig := Config{HealthCheck: &HealthCheckConfig{HTTP: want.HTTP}}
	if _ = orig.WithDefaults(); orig.HealthCheck.Interval != 0 {
		t.Fatal("WithDefaults changed the original config")
	}
	c, err = Parse([]byte(cfgDoc(`"health_check": {"ttl": "3s"}`, "")))
	if err != nil {
		t.Fatal(err)
	}
	if h := c.WithDefaults().HealthCheck; h == nil || *h != (HealthCheckConfig{TTL: Duration(3 * time.Second)}) {
		t.Fatalf("ttl check: %+v", h)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil || back.HealthCheck == nil || *back.HealthCheck != *c.HealthCheck {
		t.Fatalf("round trip: %s -> %+v, %v", b, back.HealthCheck, err)
	}
}

// TestConfigKVQuota: kv_quota_bytes decodes as a 64-bit number, is
// range-checked, and comes from the environment and flags like every
// field.
func TestConfigKVQuota(t *testing.T) {
	base := `{"identifier": "a", "listen_port": 7001, "kv_quota_bytes": %s}`
	for _, tc := range []struct {
		raw  string
		want int64
		err  string
	}{
		{"null", 0, ""},
		{"0", 0, ""},
		{"1024", 1024, ""},
		{"4294967296", 1 << 32, ""},
		{"1099511627776", 1 << 40, ""},
		{"1023", 0, "kv_quota_bytes: 1023 is out of range (1024 to 1099511627776 bytes)"},
		{"-1", 0, "kv_quota_bytes: -1 is out of range"},
		{"1099511627777", 0, "is out of range"},
		{"99999999999999999999", 0, "kv_quota_bytes: 99999999999999999999 is out of range"},
		{`"4096"`, 0, `kv_quota_bytes: expected a number, got string "4096"; write 4096 without quotes`},
		{`"64MiB"`, 0, "kv_quota_bytes: expected a whole number"},
		{"1.5", 0, "kv_quota_bytes: expected a whole number"},
	} {
		c, err := Parse([]byte(fmt.Sprintf(base, tc.raw)))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.err == "" && c.KVQuotaBytes != tc.want:
			t.Errorf("%s: %d, want %d", tc.raw, c.KVQuotaBytes, tc.want)
		case tc.err != "" && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want an error with %q", tc.raw, err, tc.err)
		}
	}
	o, err := EnvOverrides([]string{"QCLUSTER_KV_QUOTA_BYTES=8589934592"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadLayers("", append(o, Override{Field: "identifier", Value: "a", Source: "flag --identifier"},
		Override{Field: "listen_port", Value: "7001", Source: "flag --listen-port"})...)
	if err != nil || c.KVQuotaBytes != 8<<30 {
		t.Errorf("from the environment: %d, %v", c.KVQuotaBytes, err)
	}
	_, err = LoadLayers("", Override{Field: "identifier", Value: "a", Source: "flag --identifier"},
		Override{Field: "listen_port", Value: "7001", Source: "flag --listen-port"},
		Override{Field: "kv_quota_bytes", Value: "10", Source: "flag --kv-quota-bytes"})
	if err == nil || !strings.Contains(err.Error(), "(flag --kv-quota-bytes)") {
		t.Errorf("a flag's bad quota: %v", err)
	}
}
