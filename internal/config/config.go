// Package config is QCluster's peer configuration: the Config struct, its
// JSON decoder (strict, with line/column positions and did-you-mean hints),
// its defaults and validation, and its layers outside the file
// (QCLUSTER_<FIELD> environment variables and --<field> flags).
//
// Every field is declared once, in the tables of fields.go, which drive all
// of these; the root package qcluster re-exports the types (qcluster.Config
// is config.Config) and functions (qcluster.LoadConfig is config.Load, ...).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qcluster/qcluster/internal/registry"
)

// Defaults filled in by Default and Config.WithDefaults.
const (
	// DefaultListenHost is the listen_host used when none is given: the
	// IPv4 loopback address, so a peer is not exposed by accident. Set
	// listen_host (and advertise_host) to run peers on several machines.
	DefaultListenHost = "127.0.0.1"

	// DefaultHeartbeatInterval is the heartbeat_interval used when none is
	// given, the seed's 50ms.
	DefaultHeartbeatInterval = 50 * time.Millisecond

	// DefaultElectionTimeout is the election_timeout used when none is
	// given, the seed's 150ms (randomized per election in [150ms, 300ms)).
	DefaultElectionTimeout = 150 * time.Millisecond

	// DefaultMinVoters is the min_voters used when none is given.
	DefaultMinVoters = 3

	// DefaultKVQuotaBytes is the kv_quota_bytes used when none is given
	// (64 MiB); MinKVQuotaBytes and MaxKVQuotaBytes bound the field.
	DefaultKVQuotaBytes = 64 << 20
	MinKVQuotaBytes     = 1 << 10
	MaxKVQuotaBytes     = 1 << 40

	// DefaultHealthInterval, DefaultHealthTimeout and DefaultHealthFailures
	// are the health_check settings of an "http" check used when none is
	// given: poll every second, give each request 500ms, and count the
	// application unhealthy after two failures in a row.
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = 500 * time.Millisecond
	DefaultHealthFailures = 2
)

// Modes (Config.Mode).
const (
	// ModeLeader elects a leader with Raft (the default).
	ModeLeader = "leader"
	// ModeMasterless runs without any election: gossip membership only.
	ModeMasterless = "masterless"
)

// Gossip profiles (Config.GossipProfile): memberlist's timings.
const (
	// GossipLAN is memberlist's LAN profile (the default): probe every 1s,
	// suspicion multiplier 4.
	GossipLAN = "lan"
	// GossipLocal is memberlist's local profile, for one machine or a fast
	// LAN: probe every 1s with a 200ms timeout, suspicion multiplier 3.
	GossipLocal = "local"
	// GossipWAN is memberlist's WAN profile: probe every 5s.
	GossipWAN = "wan"
)

// Limits enforced by Validate.
const (
	minHeartbeat   = time.Millisecond
	maxElection    = time.Minute
	electionFactor = 3
	maxNameLen     = 255
	maxHostLen     = 253
)

// ErrInvalidConfig is wrapped by every error that Parse, Load
// and Config.Validate return for a configuration that is malformed or
// inconsistent (errors.Is(err, ErrInvalidConfig) reports true). The error
// also unwraps (Unwrap() []error) to one error per problem, each naming the
// JSON field path, what is wrong and how to fix it, for example
//
//	peers[1].port: 70000 is out of range (1-65535) (line 9, column 47)
//
// A config file that cannot be read at all makes Load return the
// file system error instead (errors.Is(err, fs.ErrNotExist), ...).
var ErrInvalidConfig = errors.New("qcluster: invalid config")

// Config is one peer's configuration. Its JSON form is the seed's config
// file format:
//
//	{
//	  "identifier": "server_a",
//	  "listen_host": "localhost",
//	  "listen_port": 7001,
//	  "peers": [
//	    {"host": "localhost", "port": 7002, "identifier": "server_b", "metadata": {"server_port": 8002}},
//	    {"host": "localhost", "port": 7003, "identifier": "server_c"}
//	  ],
//	  "server_port": 8001
//	}
//
// Read a file with Load (or bytes with Parse): they fill the
// defaults and validate. A Config built in Go can leave any field with a
// default at its zero value; WithDefaults fills it and Validate accepts it.
//
// Unknown fields. Applications keep their own settings in the same file
// (the seed's HTTP example reads "server_port" from it), so a top-level key
// that QCluster does not know is kept, as raw JSON, in Extra. A misspelt
// QCluster field must not pass silently, though, so a top-level key that
// looks like a QCluster field is an error with a suggestion
// (`listen_prot: unknown field; did you mean "listen_port"?`). A key looks
// like a field when, after lower-casing and dropping '_', '-', '.' and
// spaces, it equals the field's name ("ListenPort", "heartbeat-interval"), or
// is within a small Damerau-Levenshtein distance of it: 1 for keys of 3-4
// characters ("peer"), and for keys of 5 or more characters 1 when the
// field's name is shorter than 8 characters, 2 otherwise ("identifer",
// "listen_prot", "electon_timout"). Inside a peers entry every key belongs
// to QCluster: any key other than host, port, identifier and metadata is an
// error (put a peer's application data in its metadata). A key given twice
// in the same object is an error too.
//
// This peer in its own peers list. All peers may share one peers list: an
// entry with this peer's identifier and this peer's own address (advertise
// host, or listen host, and port) simply means "self" and is skipped (see
// RemotePeers); if the top-level metadata is not set, that entry's metadata
// becomes this peer's. An entry with this peer's identifier but another
// address, or another identifier at this peer's address, is an error.
//
// Durations are JSON strings in Go's notation ("150ms", "2s"); see Duration.
//
// Outside the file. Every field can also be set by an environment variable
// QCLUSTER_<FIELD> and a flag --<field> of qcluster agent (see
// LoadLayers and Fields, which derive the names from the same
// list of fields as the decoder). Fields tagged qcluster:"secret" are shown
// as REDACTED by Config.Redacted.
type Config struct {
	// Identifier is this peer's name, unique in the cluster, such as
	// "server_a": no whitespace or control characters, at most 255 bytes.
	// Required. Its hash is the peer's Raft node ID (see NodeID).
	Identifier string `json:"identifier"`

	// ListenHost is the host name or IP address this peer listens on (TCP
	// and UDP). Default: DefaultListenHost ("127.0.0.1"), or the IP address
	// Listener is bound to when Listener is set. "0.0.0.0" or "::" listens
	// on all interfaces and then requires AdvertiseHost.
	ListenHost string `json:"listen_host"`

	// ListenPort is the port this peer listens on, 1-65535; it also serves
	// the HTTP API. Required, except that it may be 0 when Listener is set
	// (the port is then Listener's).
	ListenPort int `json:"listen_port"`

	// AdvertiseHost is the host name or IP address other peers use to reach
	// this one. Default: ListenHost. Required when ListenHost is 0.0.0.0 or
	// :: (all interfaces).
	AdvertiseHost string `json:"advertise_host,omitempty"`

	// Metadata is this peer's own custom metadata, visible to every peer
	// (for example {"server_port": 8001}, so followers can reach the
	// leader's service). Default: none, or the metadata of this peer's own
	// entry in Peers. JSON numbers decode as float64. It must be encodable
	// as JSON.
	Metadata map[string]any `json:"metadata,omitempty"`

	// Peers are the other members of the cluster. An entry for this peer
	// itself is allowed and skipped (see the Config doc). Default: none, a
	// cluster of one.
	Peers []PeerConfig `json:"peers"`

	// DataDir is the directory for this peer's durable state (Raft term,
	// vote and log); it must survive restarts and reboots, or a restarted
	// peer could vote twice in one term (so not /tmp, which a reboot may
	// wipe). Start creates it, and its missing parents, with mode 0700, and
	// refuses one that another user owns (that user could rewrite the
	// peer's term and vote); Windows has no owner check. Default: a
	// per-user state directory, "qcluster/<identifier>" (the identifier
	// made file-name safe) under $XDG_STATE_HOME when that is set to an
	// absolute path, else under ~/.local/state on Linux and the BSDs,
	// ~/Library/Application Support on macOS and %LocalAppData% on Windows.
	// With none of those (no home directory, as for some system services)
	// there is no default and Validate asks for one: set it, for example to
	// "/var/lib/qcluster/server_a". Unused in masterless mode.
	DataDir string `json:"data_dir,omitempty"`

	// HeartbeatInterval is how often the leader sends heartbeats. At least
	// 1ms. Default: DefaultHeartbeatInterval (50ms).
	HeartbeatInterval Duration `json:"heartbeat_interval,omitempty"`

	// ElectionTimeout is how long a follower waits without hearing from a
	// leader before it starts an election; each election randomizes it in
	// [ElectionTimeout, 2*ElectionTimeout). At least 3x HeartbeatInterval,
	// at most 1 minute. Default: DefaultElectionTimeout (150ms). Across slow
	// links, at least 3x the worst round trip between peers: an election
	// needs a vote request and its answer to fit in it.
	ElectionTimeout Duration `json:"election_timeout,omitempty"`

	// ClusterName optionally names the cluster; peers configured with
	// different names refuse each other, so two clusters sharing hosts
	// cannot merge by mistake. No control characters, at most 255 bytes.
	// Default: "" (no name; matches only peers without a name).
	ClusterName string `json:"cluster_name,omitempty"`

	// APIToken, when set, is the bearer token the HTTP API requires on its
	// mutating endpoints (POST /v1/leader/transfer, POST /v1/leader/resign):
	// clients send "Authorization: Bearer <token>" and are refused with 401
	// otherwise. The comparison takes constant time. Read-only endpoints
	// stay open. Default: "" (no token: anyone who can reach the port may
	// move leadership). It is a secret: keep the config file private.
	APIToken string `json:"api_token,omitempty" qcluster:"secret"`

	// Mode is "leader" (the default): the peers elect a leader with Raft,
	// and IsLeader/Leader report it; or "masterless": no election at all,
	// IsLeader is always false and Leader reports none (by contract), while
	// Peers, Events and Owner work from gossip, so peers split work among
	// themselves without a master (see Cluster.Owner).
	Mode string `json:"mode,omitempty"`

	// Voter, when set to false, makes this peer a non-voting member
	// (a Raft learner) when it joins a running cluster: it follows the
	// leader and reports it, but neither votes nor can lead. Default: a
	// voter. Peers that found the cluster (listed in each other's configs)
	// are always voters.
	Voter *bool `json:"voter,omitempty"`

	// LeaveOnTerminate makes the qcluster agent leave the cluster
	// gracefully (Cluster.Leave: hand over leadership, then leave the
	// voters, then gossip) when it receives SIGTERM, instead of just
	// stopping. A peer that leaves must join again to come back. Default:
	// false.
	LeaveOnTerminate bool `json:"leave_on_terminate,omitempty"`

	// DeadMemberTimeout, when set, lets the leader remove from the voters
	// a member that gossip has reported dead (or left) for this long, so
	// that a permanently lost member stops counting toward the majority.
	// The leader never removes below MinVoters voters. Trade-off: a member
	// that was only down or partitioned away for longer than this is
	// removed too and must join again: it does so by itself, keeping its
	// data, once it finds (on restart, or when the partition heals) that
	// the members it knows follow a leader without it; too short a timeout
	// turns a network blip into membership churn. Default: 0 (never remove
	// automatically).
	DeadMemberTimeout Duration `json:"dead_member_timeout,omitempty"`

	// MinVoters is the number of voters automatic removal of dead members
	// (DeadMemberTimeout) never goes below. Default: DefaultMinVoters (3).
	MinVoters int `json:"min_voters,omitempty"`

	// TLS names this peer's certificate, key and the cluster CA (PEM
	// files, as "qcluster tls init" makes them): raft and gossip streams
	// and the HTTP API on the shared port then run over mutual TLS, and a
	// peer whose certificate does not chain to the CA, or names another
	// identifier than the one it claims, is refused. Requires GossipKey (TLS
	// does not cover gossip's UDP packets). See docs/security.md. Default:
	// nil (no TLS).
	TLS *TLSConfig `json:"tls,omitempty"`

	// ClusterKey is a shared secret (base64 of 32 random bytes, made by
	// "qcluster tls key") from which every peer derives the same cluster
	// CA, issues itself a certificate for its identifier, and derives the
	// gossip key: one line of config for mutual TLS and gossip
	// encryption. Keep it secret. Default: "" (no TLS).
	ClusterKey string `json:"cluster_key,omitempty" qcluster:"secret"`

	// GossipKey is the key (base64 of 16, 24 or 32 bytes) that encrypts
	// and authenticates gossip (memberlist's AES-GCM keyring). It overrides
	// the key ClusterKey derives. Default: "" (derived from ClusterKey, or
	// no encryption).
	GossipKey string `json:"gossip_key,omitempty" qcluster:"secret"`

	// ExtraGossipKeys are further gossip keys this peer accepts (but does
	// not send with), for a key rotation: install the new key here on
	// every peer, then make it the GossipKey everywhere, then remove the
	// old one (docs/security.md). Default: none.
	ExtraGossipKeys []string `json:"extra_gossip_keys,omitempty" qcluster:"secret"`

	// APIClientCerts is "required" (the default with TLS): HTTPS clients
	// of the API need a certificate from the cluster CA; or "optional":
	// they may connect without one (the API token then guards the API).
	APIClientCerts string `json:"api_client_certs,omitempty"`

	// APIProtectReads makes the read endpoints of the API (/v1/status,
	// /v1/leader, /v1/peers, /v1/watch, /metrics) require the API token too;
	// /healthz and /readyz stay open. Default: false (reads are open).
	APIProtectReads bool `json:"api_protect_reads,omitempty"`

	// MaxConnsPerIP bounds the connections one remote IP address may
	// hold open to this peer's port at once; more are closed on arrival
	// and counted (qcluster_mux_refused_total). Default: 256, as peers on
	// one host, or API clients behind one proxy, share an address;
	// negative: no limit.
	MaxConnsPerIP int `json:"max_conns_per_ip,omitempty"`

	// KVQuotaBytes is the key-value store's quota: the most bytes of keys
	// plus values it holds; a put beyond it fails (ErrQuota). It is one
	// value for the whole cluster, carried in the Raft log: the leader
	// proposes its own when the cluster's differs (as it gains leadership),
	// so the quota in force is the configured value of the latest leader.
	// Default (0 or absent): DefaultKVQuotaBytes (64 MiB); at least 1 KiB,
	// at most 1 TiB.
	KVQuotaBytes int64 `json:"kv_quota_bytes,omitempty"`

	// GossipProfile selects the gossip (failure detection) timings:
	// GossipLAN ("lan", the default: memberlist's LAN profile, probe every
	// 1s with a 500ms timeout, suspicion multiplier 4; a killed member is
	// dead everywhere after about 6 to 7s), GossipLocal ("local": one
	// machine or a fast LAN, probe every 1s with a 200ms timeout,
	// suspicion multiplier 3, gossip every 100ms; about 4.5 to 5s) or
	// GossipWAN ("wan": probe every 5s).
	GossipProfile string `json:"gossip_profile,omitempty"`

	// HealthCheck ties this peer's leadership to its application's health
	// (see HealthCheckConfig): while the check fails, the peer is no
	// candidate (a leader hands over at once; a follower neither campaigns
	// nor takes a transfer) but still votes. Default: nil (no check; the
	// peer is always a candidate).
	HealthCheck *HealthCheckConfig `json:"health_check,omitempty"`

	// Listener is an optional pre-bound TCP listener for this peer, used
	// instead of listening on ListenHost:ListenPort (tests and embedding:
	// bind "127.0.0.1:0" and let the OS pick the port). Not read from JSON.
	// Default: nil (listen on ListenHost:ListenPort).
	Listener net.Listener `json:"-"`

	// Logger receives the peer's logs; the peer adds the attribute
	// peer=Identifier to each record. Not read from JSON. Default:
	// slog.Default().
	Logger *slog.Logger `json:"-"`

	// Registerer, when set, is where the peer registers its Prometheus
	// metrics (docs/metrics.md) when it starts; Close unregisters them.
	// GET /metrics on the peer's port serves them when Registerer is also a
	// prometheus.Gatherer (a *prometheus.Registry is both), and answers 404
	// otherwise (the application serves them). The metrics carry no peer
	// label, so Start fails when another peer's are already registered
	// there: give each peer of a process its own registry, or wrap a shared
	// one with prometheus.WrapRegistererWith and a "peer" label. Not read
	// from JSON. Default: nil (a new registry per peer, which also holds
	// the Go runtime and process metrics, served on GET /metrics).
	Registerer prometheus.Registerer `json:"-"`

	// Extra holds the top-level JSON keys that QCluster does not know, as
	// raw JSON: the application's own settings, such as the seed's
	// "server_port". Decode one with json.Unmarshal(cfg.Extra["server_port"],
	// &port). Marshaling a Config writes them back. Default: nil.
	Extra map[string]json.RawMessage `json:"-"`
}

// HealthCheckConfig is the "health_check" object: exactly one of HTTP (QCluster
// polls the application) and TTL (the application reports, through
// Cluster.SetHealth or PUT /v1/self/health, within every TTL). A peer with a
// check is failing until its first passing result.
type HealthCheckConfig struct {
	// HTTP is the URL (http or https) QCluster GETs every Interval; a 2xx
	// answer within Timeout passes, anything else fails. Failures failed
	// checks in a row make the application unhealthy; one pass makes it
	// healthy again.
	HTTP string `json:"http,omitempty"`
	// Interval is the time between two HTTP checks. Default: 1s.
	Interval Duration `json:"interval,omitempty"`
	// Timeout bounds one HTTP check, at most Interval. Default: 500ms.
	Timeout Duration `json:"timeout,omitempty"`
	// Failures is how many failed HTTP checks in a row make the
	// application unhealthy. Default: 2.
	Failures int `json:"failures,omitempty"`
	// TTL: the application must report "passing" at least this often;
	// when a TTL passes without a report, the check fails. At least
	// 100ms.
	TTL Duration `json:"ttl,omitempty"`
}

// PeerConfig is one entry of a Config's peers list: another member of the
// cluster and how to reach it. All fields but Metadata are required.
type PeerConfig struct {
	// Host is the host name or IP address the peer is reachable at (its
	// advertise_host, or its listen_host). Required.
	Host string `json:"host"`

	// Port is the peer's listen_port, 1-65535. Required.
	Port int `json:"port"`

	// Identifier is the peer's own identifier. Required, unique.
	Identifier string `json:"identifier"`

	// Metadata is the peer's custom metadata, such as {"server_port": 8002}.
	// JSON numbers decode as float64. Optional.
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Addr returns the peer's address as "host:port" (IPv6 hosts in brackets).
func (p PeerConfig) Addr() string {
	return net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string such as "150ms", "1.5s" or "2m". A bare JSON number is rejected
// because its unit would be a guess; write "150ms" instead of 150. Convert
// with time.Duration(d).
type Duration time.Duration

// String returns the duration in Go's notation, such as "150ms".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a JSON string, such as "150ms".
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// UnmarshalJSON reads a JSON string in Go's duration notation ("150ms").
// JSON null leaves d unchanged. A number or any other JSON value is an error
// that explains how to write the duration.
func (d *Duration) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		return nil
	}
	v, msg := parseDuration(data)
	if msg != "" {
		return errors.New("qcluster: invalid duration: " + msg)
	}
	*d = v
	return nil
}

// parseDuration parses a JSON duration value; msg explains the problem
// when it is not a valid duration string.
func parseDuration(raw []byte) (d Duration, msg string) {
	switch kind := kindOf(raw); kind {
	case "string":
	case "number":
		return 0, fmt.Sprintf(`expected a duration string such as "150ms", got the bare number %s; write it as a string with a unit, such as "%sms"`,
			showRaw(raw), showRaw(raw))
	default:
		return 0, fmt.Sprintf(`expected a duration string such as "150ms", got %s`, describe(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, `expected a duration string such as "150ms"`
	}
	if s == "" {
		return 0, `empty duration; write one such as "150ms" or "2s"`
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Sprintf(`%s has no unit; write it with one, such as "%sms"`, quote(s), s)
		}
		return 0, fmt.Sprintf(`%s is not a duration; write one such as "150ms", "1.5s" or "2m" (units: ns, us, ms, s, m, h)`, quote(s))
	}
	return Duration(v), ""
}

// Default returns a Config with every default that does not depend
// on the peer's identity: ListenHost, HeartbeatInterval and
// ElectionTimeout. Identifier, ListenPort and Peers are left for the caller;
// DataDir and Logger, whose defaults depend on Identifier, are filled by
// WithDefaults.
func Default() Config {
	return Config{
		ListenHost:        DefaultListenHost,
		HeartbeatInterval: Duration(DefaultHeartbeatInterval),
		ElectionTimeout:   Duration(DefaultElectionTimeout),
	}
}

// Parse decodes a JSON config (the seed's format; see Config), fills
// the defaults (WithDefaults) and validates the result (Validate). It
// reports every problem at once, each with its field path and, where it has
// one, its line and column in data: first the problems that keep the
// document from being decoded (JSON syntax, wrong types, unknown or repeated
// keys), or, when there are none, every validation problem. The error wraps
// ErrInvalidConfig. A leading UTF-8 byte order mark is ignored.
func Parse(data []byte) (Config, error) {
	return parse(data, "")
}

// Load reads the JSON config file at path and parses it like
// Parse. Errors name the path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// The *fs.PathError names the path; errors.Is(err, fs.ErrNotExist) works.
		return Config{}, fmt.Errorf("qcluster: reading config: %w", err)
	}
	return parse(data, path)
}

func parse(data []byte, source string) (Config, error) {
	d := decoder{data: bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), pos: map[string]int{}}
	c := d.decode()
	if len(d.problems) > 0 {
		return Config{}, &configError{source: source, problems: d.problems}
	}
	c = c.WithDefaults()
	ps := validate(c, NodeID)
	if len(ps) > 0 {
		for i := range ps {
			if off, ok := d.pos[ps[i].At]; ok {
				ps[i].Line, ps[i].Col = lineCol(d.data, off)
			}
		}
		return Config{}, &configError{source: source, problems: ps}
	}
	return c, nil
}

// UnmarshalJSON decodes the JSON form of a Config strictly, like
// Parse (unknown top-level keys to Extra, misspelt or unknown fields,
// wrong types and repeated keys are errors; positions are relative to data),
// but it neither fills defaults nor validates: call WithDefaults and
// Validate, or use Parse. It replaces every JSON field and Extra and
// keeps Listener, Logger and Registerer. JSON null leaves c unchanged.
func (c *Config) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	d := decoder{data: data, pos: map[string]int{}}
	n := d.decode()
	if len(d.problems) > 0 {
		return &configError{problems: d.problems}
	}
	n.Listener, n.Logger, n.Registerer = c.Listener, c.Logger, c.Registerer
	*c = n
	return nil
}

// MarshalJSON writes the Config in its JSON form: the QCluster fields
// followed by the Extra keys (sorted) that are not QCluster fields.
// Listener, Logger and Registerer are not written.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config // same fields and tags, without these methods
	if c.Peers == nil {
		c.Peers = []PeerConfig{}
	}
	b, err := json.Marshal(plain(c))
	if err != nil || len(c.Extra) == 0 {
		return b, err
	}
	b = b[:len(b)-1] // drop the closing brace; the object is never empty
	for _, k := range slices.Sorted(maps.Keys(c.Extra)) {
		if slices.Contains(topNames, k) {
			continue
		}
		key, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		var val bytes.Buffer
		if err := json.Compact(&val, c.Extra[k]); err != nil {
			return nil, fmt.Errorf("qcluster: Extra[%q] is not valid JSON: %w", k, err)
		}
		b = append(b, ',')
		b = append(b, key...)
		b = append(b, ':')
		b = append(b, val.Bytes()...)
	}
	return append(b, '}'), nil
}

// WithDefaults returns a copy of c with every zero field that has a default
// filled in: ListenHost, ListenPort (from Listener), AdvertiseHost (from
// ListenHost, unless that is 0.0.0.0 or ::), Metadata (from this peer's own
// entry in Peers), DataDir, HeartbeatInterval, ElectionTimeout, Logger,
// Mode, MinVoters, GossipProfile and, with an "http" HealthCheck, its
// Interval, Timeout and Failures.
// The copy's maps and slices (Metadata, Peers, Extra) are deep copies, so
// changing them does not change c, and c is never modified.
func (c Config) WithDefaults() Config {
	c = clone(c)
	fillDefaults(&c, topFields)
	return c
}

// Secured reports whether the config runs peer connections and the API
// over TLS (TLS or ClusterKey is set).
func (c Config) Secured() bool { return c.TLS != nil || c.ClusterKey != "" }

// IsVoter reports whether this peer joins as a voter (Voter unset or true).
func (c Config) IsVoter() bool { return c.Voter == nil || *c.Voter }

// Validate reports every problem with c, or nil. It does not fill defaults
// or modify c, but it accepts a zero value wherever WithDefaults would fill
// one (an unset HeartbeatInterval counts as 50ms, and so on), so it can be
// called before or after WithDefaults. The error wraps ErrInvalidConfig and
// unwraps to one error per problem, each naming the JSON field path and the
// fix, such as
//
//	identifier: missing; give this peer a unique name such as "server_a"
func (c Config) Validate() error {
	if ps := validate(c, NodeID); len(ps) > 0 {
		return &configError{problems: ps}
	}
	return nil
}

// Addr returns the address this peer listens on, "host:port": ListenHost
// (or its default) and ListenPort, or Listener's port when ListenPort is 0.
func (c Config) Addr() string {
	return net.JoinHostPort(c.listenHost(), strconv.Itoa(c.port()))
}

// AdvertiseAddr returns the address other peers use to reach this one,
// "host:port": AdvertiseHost, or ListenHost (or its default) when that is
// empty, and ListenPort, or Listener's port when ListenPort is 0.
func (c Config) AdvertiseAddr() string {
	return net.JoinHostPort(c.advertiseHost(), strconv.Itoa(c.port()))
}

// RemotePeers returns the entries of Peers other than this peer's own (those
// whose Identifier equals c.Identifier), in order, as a new slice.
func (c Config) RemotePeers() []PeerConfig {
	out := make([]PeerConfig, 0, len(c.Peers))
	for _, p := range c.Peers {
		if p.Identifier != c.Identifier {
			out = append(out, p)
		}
	}
	return out
}

// listenHost is the effective listen host: ListenHost, else Listener's
// IP when it is bound to one, else DefaultListenHost.
func (c Config) listenHost() string {
	if c.ListenHost != "" {
		return c.ListenHost
	}
	if c.Listener != nil {
		if a, ok := c.Listener.Addr().(*net.TCPAddr); ok && a != nil && a.IP != nil && !a.IP.IsUnspecified() {
			return a.IP.String()
		}
	}
	return DefaultListenHost
}

// advertiseHost is the effective advertise host.
func (c Config) advertiseHost() string {
	if c.AdvertiseHost != "" {
		return c.AdvertiseHost
	}
	return c.listenHost()
}

// port is the effective listen port: ListenPort, else Listener's port.
func (c Config) port() int {
	if c.ListenPort != 0 {
		return c.ListenPort
	}
	return listenerPort(c.Listener)
}

// listenerPort returns the port l is bound to, or 0.
func listenerPort(l net.Listener) int {
	if l == nil {
		return 0
	}
	addr := l.Addr()
	if addr == nil {
		return 0
	}
	if a, ok := addr.(*net.TCPAddr); ok {
		if a == nil {
			return 0
		}
		return a.Port
	}
	if _, p, err := net.SplitHostPort(addr.String()); err == nil {
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n <= 65535 {
			return n
		}
	}
	return 0
}

// showAddr describes this peer's address(es) for messages.
func (c Config) showAddr() string {
	port := strconv.Itoa(c.port())
	adv, listen := net.JoinHostPort(c.advertiseHost(), port), net.JoinHostPort(c.listenHost(), port)
	if adv == listen || unspecified(c.listenHost()) {
		return adv
	}
	return adv + " or " + listen
}

// AdvertiseHostPort returns the host and port other peers reach this peer
// at: AdvertiseAddr split, or ListenHost and ListenPort should that fail.
func (c Config) AdvertiseHostPort() (host string, port int) {
	host, portStr, err := net.SplitHostPort(c.AdvertiseAddr())
	if err != nil {
		return c.ListenHost, c.ListenPort
	}
	port, _ = strconv.Atoi(portStr)
	return host, port
}

// NodeID returns the Raft node ID of the peer named identifier: the 64-bit
// FNV-1a hash of the identifier, except that a hash of 0 (which Raft
// reserves for "no node") becomes 1. It is stable across versions and
// processes; Validate rejects configs in which two identifiers share one.
func NodeID(identifier string) uint64 { return registry.NodeID(identifier) }
