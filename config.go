package qcluster

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults filled in by DefaultConfig and Config.WithDefaults.
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
	cfgMinHeartbeat   = time.Millisecond
	cfgMaxElection    = time.Minute
	cfgElectionFactor = 3
	cfgMaxNameLen     = 255
	cfgMaxHostLen     = 253
)

// ErrInvalidConfig is wrapped by every error that ParseConfig, LoadConfig
// and Config.Validate return for a configuration that is malformed or
// inconsistent (errors.Is(err, ErrInvalidConfig) reports true). The error
// also unwraps (Unwrap() []error) to one error per problem, each naming the
// JSON field path, what is wrong and how to fix it, for example
//
//	peers[1].port: 70000 is out of range (1-65535) (line 9, column 47)
//
// A config file that cannot be read at all makes LoadConfig return the
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
// Read a file with LoadConfig (or bytes with ParseConfig): they fill the
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
// LoadConfigLayers and ConfigFields, which derive the names from the same
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
	// at most 1 minute. Default: DefaultElectionTimeout (150ms).
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
	v, msg := cfgParseDuration(data)
	if msg != "" {
		return errors.New("qcluster: invalid duration: " + msg)
	}
	*d = v
	return nil
}

// cfgParseDuration parses a JSON duration value; msg explains the problem
// when it is not a valid duration string.
func cfgParseDuration(raw []byte) (d Duration, msg string) {
	switch kind := cfgKind(raw); kind {
	case "string":
	case "number":
		return 0, fmt.Sprintf(`expected a duration string such as "150ms", got the bare number %s; write it as a string with a unit, such as "%sms"`,
			cfgShowRaw(raw), cfgShowRaw(raw))
	default:
		return 0, fmt.Sprintf(`expected a duration string such as "150ms", got %s`, cfgDescribe(raw))
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
			return 0, fmt.Sprintf(`%s has no unit; write it with one, such as "%sms"`, cfgQuote(s), s)
		}
		return 0, fmt.Sprintf(`%s is not a duration; write one such as "150ms", "1.5s" or "2m" (units: ns, us, ms, s, m, h)`, cfgQuote(s))
	}
	return Duration(v), ""
}

// DefaultConfig returns a Config with every default that does not depend
// on the peer's identity: ListenHost, HeartbeatInterval and
// ElectionTimeout. Identifier, ListenPort and Peers are left for the caller;
// DataDir and Logger, whose defaults depend on Identifier, are filled by
// WithDefaults.
func DefaultConfig() Config {
	return Config{
		ListenHost:        DefaultListenHost,
		HeartbeatInterval: Duration(DefaultHeartbeatInterval),
		ElectionTimeout:   Duration(DefaultElectionTimeout),
	}
}

// ParseConfig decodes a JSON config (the seed's format; see Config), fills
// the defaults (WithDefaults) and validates the result (Validate). It
// reports every problem at once, each with its field path and, where it has
// one, its line and column in data: first the problems that keep the
// document from being decoded (JSON syntax, wrong types, unknown or repeated
// keys), or, when there are none, every validation problem. The error wraps
// ErrInvalidConfig. A leading UTF-8 byte order mark is ignored.
func ParseConfig(data []byte) (Config, error) {
	return cfgParse(data, "")
}

// LoadConfig reads the JSON config file at path and parses it like
// ParseConfig. Errors name the path.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// The *fs.PathError names the path; errors.Is(err, fs.ErrNotExist) works.
		return Config{}, fmt.Errorf("qcluster: reading config: %w", err)
	}
	return cfgParse(data, path)
}

func cfgParse(data []byte, source string) (Config, error) {
	d := cfgDecoder{data: bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), pos: map[string]int{}}
	c := d.decode()
	if len(d.problems) > 0 {
		return Config{}, &cfgError{source: source, problems: d.problems}
	}
	c = c.WithDefaults()
	ps := cfgValidate(c, NodeID)
	if len(ps) > 0 {
		for i := range ps {
			if off, ok := d.pos[ps[i].at]; ok {
				ps[i].line, ps[i].col = cfgLineCol(d.data, off)
			}
		}
		return Config{}, &cfgError{source: source, problems: ps}
	}
	return c, nil
}

// UnmarshalJSON decodes the JSON form of a Config strictly, like
// ParseConfig (unknown top-level keys to Extra, misspelt or unknown fields,
// wrong types and repeated keys are errors; positions are relative to data),
// but it neither fills defaults nor validates: call WithDefaults and
// Validate, or use ParseConfig. It replaces every JSON field and Extra and
// keeps Listener, Logger and Registerer. JSON null leaves c unchanged.
func (c *Config) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	d := cfgDecoder{data: data, pos: map[string]int{}}
	n := d.decode()
	if len(d.problems) > 0 {
		return &cfgError{problems: d.problems}
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
		if slices.Contains(cfgTopFields(), k) {
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
	c = cfgClone(c)
	if c.ListenHost == "" {
		c.ListenHost = cfgListenHost(c)
	}
	if c.ListenPort == 0 {
		c.ListenPort = cfgListenerPort(c.Listener)
	}
	if c.AdvertiseHost == "" && !cfgUnspecified(c.ListenHost) {
		c.AdvertiseHost = c.ListenHost
	}
	if c.Metadata == nil && c.Identifier != "" {
		for _, p := range c.Peers {
			if p.Identifier == c.Identifier && p.Metadata != nil {
				c.Metadata = cfgCloneMap(p.Metadata)
				break
			}
		}
	}
	if c.DataDir == "" && c.Identifier != "" {
		if dir, err := cfgDefaultDataDir(c.Identifier); err == nil {
			c.DataDir = dir
		}
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = Duration(DefaultHeartbeatInterval)
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = Duration(DefaultElectionTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Mode == "" {
		c.Mode = ModeLeader
	}
	if c.MinVoters == 0 {
		c.MinVoters = DefaultMinVoters
	}
	if c.GossipProfile == "" {
		c.GossipProfile = GossipLAN
	}
	if c.HealthCheck != nil && c.HealthCheck.HTTP != "" {
		h := c.HealthCheck
		if h.Interval == 0 {
			h.Interval = Duration(DefaultHealthInterval)
		}
		if h.Timeout == 0 {
			h.Timeout = Duration(min(DefaultHealthTimeout, time.Duration(h.Interval)))
		}
		if h.Failures == 0 {
			h.Failures = DefaultHealthFailures
		}
	}
	if c.Voter != nil {
		v := *c.Voter
		c.Voter = &v
	}
	return c
}

// Secured reports whether the config runs peer connections and the API
// over TLS (TLS or ClusterKey is set).
func (c Config) Secured() bool { return securedBy(c.TLS, c.ClusterKey) }

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
	if ps := cfgValidate(c, NodeID); len(ps) > 0 {
		return &cfgError{problems: ps}
	}
	return nil
}

// Addr returns the address this peer listens on, "host:port": ListenHost
// (or its default) and ListenPort, or Listener's port when ListenPort is 0.
func (c Config) Addr() string {
	return net.JoinHostPort(cfgListenHost(c), strconv.Itoa(cfgPort(c)))
}

// AdvertiseAddr returns the address other peers use to reach this one,
// "host:port": AdvertiseHost, or ListenHost (or its default) when that is
// empty, and ListenPort, or Listener's port when ListenPort is 0.
func (c Config) AdvertiseAddr() string {
	return net.JoinHostPort(cfgAdvertiseHost(c), strconv.Itoa(cfgPort(c)))
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

// NodeID returns the Raft node ID of the peer named identifier: the 64-bit
// FNV-1a hash of the identifier, except that a hash of 0 (which Raft
// reserves for "no node") becomes 1. It is stable across versions and
// processes; Validate rejects configs in which two identifiers share one.
func NodeID(identifier string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(identifier))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// ---------------------------------------------------------------------------
// Errors

// cfgError is the error ParseConfig, LoadConfig, Validate and UnmarshalJSON
// return: ErrInvalidConfig plus one problem per line.
type cfgError struct {
	source   string // file the config came from, if any
	problems []cfgProblem
}

func (e *cfgError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidConfig.Error())
	if e.source != "" {
		b.WriteString(" in ")
		b.WriteString(e.source)
	}
	if len(e.problems) == 1 {
		b.WriteString(": ")
		b.WriteString(e.problems[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, " (%d problems):", len(e.problems))
	for _, p := range e.problems {
		b.WriteString("\n\t")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns ErrInvalidConfig followed by one error per problem.
func (e *cfgError) Unwrap() []error {
	errs := make([]error, 0, 1+len(e.problems))
	errs = append(errs, ErrInvalidConfig)
	for _, p := range e.problems {
		errs = append(errs, p)
	}
	return errs
}

// cfgProblem is one thing wrong with a config.
type cfgProblem struct {
	at        string // JSON path whose position in the document to report
	text      string // the message, starting with the field path
	line, col int    // 1-based position in the document; 0 when unknown
}

func (p cfgProblem) Error() string {
	if p.line > 0 {
		return fmt.Sprintf("%s (line %d, column %d)", p.text, p.line, p.col)
	}
	return p.text
}

// ---------------------------------------------------------------------------
// Decoding

// cfgTopFields returns the top-level JSON keys of Config, in struct order.
func cfgTopFields() []string {
	return []string{
		"identifier", "listen_host", "listen_port", "advertise_host", "metadata",
		"peers", "data_dir", "heartbeat_interval", "election_timeout", "cluster_name",
		"api_token", "mode", "voter", "leave_on_terminate", "dead_member_timeout", "min_voters",
		"gossip_profile", "tls", "cluster_key", "gossip_key", "extra_gossip_keys", "api_client_certs",
		"api_protect_reads", "max_conns_per_ip", "health_check",
	}
}

// cfgPeerFields returns the JSON keys of PeerConfig.
func cfgPeerFields() []string { return []string{"host", "port", "identifier", "metadata"} }

// cfgPeerAlias maps other names people use for a peer entry's keys
// (normalized as by cfgNorm) to the right one, or returns "".
func cfgPeerAlias(norm string) string {
	switch norm {
	case "id", "name", "peerid", "nodeid":
		return "identifier"
	case "ip", "addr", "address", "hostname":
		return "host"
	case "meta", "tags":
		return "metadata"
	}
	return ""
}

// cfgDecoder decodes a JSON document into a Config, collecting problems and
// the byte offset of every field's value.
type cfgDecoder struct {
	data     []byte
	problems []cfgProblem
	pos      map[string]int // JSON path -> offset of its value in data
}

func (d *cfgDecoder) add(off int, path, format string, args ...any) {
	p := cfgProblem{at: path, text: fmt.Sprintf(format, args...)}
	p.line, p.col = cfgLineCol(d.data, off)
	d.problems = append(d.problems, p)
}

// cfgMember is one "key": value member of a JSON object.
type cfgMember struct {
	key    string
	keyOff int // offset of the key's opening quote
	valOff int // offset of the value's first byte
	val    json.RawMessage
}

func (d *cfgDecoder) decode() Config {
	var c Config
	if err := json.Unmarshal(d.data, new(json.RawMessage)); err != nil {
		d.syntaxError(err)
		return c
	}
	off := cfgSkip(d.data, 0, " \t\r\n")
	raw := bytes.TrimSpace(d.data)
	if cfgKind(raw) != "object" {
		d.add(off, "", `the config must be a JSON object such as {"identifier": "server_a", "listen_port": 7001, "peers": [...]}, got %s`, cfgDescribe(raw))
		return c
	}
	members, ok := d.members(raw, off, "")
	if !ok {
		return c
	}
	for _, m := range members {
		path := cfgPath("", m.key)
		d.pos[path] = m.valOff
		switch m.key {
		case "identifier":
			c.Identifier = d.str(m, path)
		case "listen_host":
			c.ListenHost = d.str(m, path)
		case "listen_port":
			c.ListenPort = d.port(m, path)
		case "advertise_host":
			c.AdvertiseHost = d.str(m, path)
		case "metadata":
			c.Metadata = d.object(m, path)
		case "peers":
			c.Peers = d.peers(m, path)
		case "data_dir":
			c.DataDir = d.str(m, path)
		case "heartbeat_interval":
			c.HeartbeatInterval = d.duration(m, path, DefaultHeartbeatInterval)
		case "election_timeout":
			c.ElectionTimeout = d.duration(m, path, DefaultElectionTimeout)
		case "cluster_name":
			c.ClusterName = d.str(m, path)
		case "api_token":
			c.APIToken = d.str(m, path)
		case "mode":
			c.Mode = d.str(m, path)
		case "voter":
			c.Voter = d.boolPtr(m, path)
		case "leave_on_terminate":
			if b := d.boolPtr(m, path); b != nil {
				c.LeaveOnTerminate = *b
			}
		case "dead_member_timeout":
			c.DeadMemberTimeout = d.duration(m, path, 0)
		case "min_voters":
			c.MinVoters = d.port(m, path)
		case "gossip_profile":
			c.GossipProfile = d.str(m, path)
		case "tls":
			c.TLS = d.tls(m, path)
		case "cluster_key":
			c.ClusterKey = d.str(m, path)
		case "gossip_key":
			c.GossipKey = d.str(m, path)
		case "extra_gossip_keys":
			c.ExtraGossipKeys = d.strings(m, path)
		case "api_client_certs":
			c.APIClientCerts = d.str(m, path)
		case "api_protect_reads":
			if b := d.boolPtr(m, path); b != nil {
				c.APIProtectReads = *b
			}
		case "max_conns_per_ip":
			c.MaxConnsPerIP = d.int(m, path)
		case "health_check":
			c.HealthCheck = d.healthCheck(m, path)
		default:
			if s := cfgSuggest(m.key, cfgTopFields(), nil); s != "" {
				d.add(m.keyOff, path, "%s: unknown field; did you mean %q?", path, s)
				continue
			}
			if c.Extra == nil {
				c.Extra = map[string]json.RawMessage{}
			}
			c.Extra[m.key] = m.val
		}
	}
	return c
}

// members lists the members of the JSON object raw, which starts at offset
// base of d.data, reporting keys given twice. prefix is the object's JSON
// path ("" for the top level).
func (d *cfgDecoder) members(raw []byte, base int, prefix string) ([]cfgMember, bool) {
	what := prefix
	if what == "" {
		what = "the config"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		d.add(base, "", "%s: cannot be decoded: %v", what, err)
		return nil, false
	}
	var out []cfgMember
	first := map[string]int{}
	for dec.More() {
		before := int(dec.InputOffset())
		tok, err := dec.Token()
		key, isKey := tok.(string)
		if err != nil || !isKey {
			d.add(base+before, "", "%s: cannot be decoded: %v", what, err)
			return nil, false
		}
		after := int(dec.InputOffset())
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			d.add(base+after, "", "%s: cannot be decoded: %v", what, err)
			return nil, false
		}
		m := cfgMember{
			key:    key,
			keyOff: base + cfgSkip(raw, before, ", \t\r\n"),
			valOff: base + cfgSkip(raw, after, ": \t\r\n"),
			val:    bytes.TrimSpace(val),
		}
		if prev, dup := first[key]; dup {
			line, col := cfgLineCol(d.data, prev)
			path := cfgPath(prefix, key)
			d.add(m.keyOff, path, "%s: given twice (first at line %d, column %d); keep one", path, line, col)
			continue
		}
		first[key] = m.keyOff
		out = append(out, m)
	}
	return out, true
}

// syntaxError reports a JSON syntax error with its position and, for the
// usual suspects, a hint.
func (d *cfgDecoder) syntaxError(err error) {
	if len(bytes.TrimSpace(d.data)) == 0 {
		d.add(0, "", `the config is empty; expected a JSON object such as {"identifier": "server_a", "listen_port": 7001, "peers": [...]}`)
		return
	}
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		d.add(0, "", "syntax error: %v", err)
		return
	}
	msg := se.Error()
	off := int(se.Offset) - 1 // the offset counts the offending byte
	if strings.Contains(msg, "unexpected end") || off >= len(d.data) {
		d.add(len(d.data), "", "syntax error: unexpected end of input; the JSON is cut short (a missing '}', ']' or '\"'?)")
		return
	}
	off = max(off, 0)
	hint := ""
	switch c := d.data[off]; {
	case c == '/' || c == '#':
		hint = "; JSON has no comments, remove it"
	case c == '\'':
		hint = "; JSON strings use double quotes"
	case c == '}' || c == ']':
		if i := bytes.LastIndexFunc(d.data[:off], func(r rune) bool { return !unicode.IsSpace(r) }); i >= 0 && d.data[i] == ',' {
			hint = "; remove the trailing comma before it"
		}
	default:
		if strings.Contains(msg, "after object key:value pair") || strings.Contains(msg, "after array element") {
			hint = "; is a comma missing before it?"
		}
	}
	d.add(off, "", "syntax error: %s%s", msg, hint)
}

func (d *cfgDecoder) str(m cfgMember, path string) string {
	switch cfgKind(m.val) {
	case "null":
		return ""
	case "string":
		var s string
		if err := json.Unmarshal(m.val, &s); err != nil {
			d.add(m.valOff, path, "%s: invalid string: %v", path, err)
		}
		return s
	}
	d.add(m.valOff, path, "%s: expected a string, got %s", path, cfgDescribe(m.val))
	return ""
}

// port decodes a port number; range checks are left to Validate unless the
// number does not even fit an int.
func (d *cfgDecoder) port(m cfgMember, path string) int {
	switch cfgKind(m.val) {
	case "null":
		return 0
	case "number":
		n, err := strconv.ParseInt(string(m.val), 10, 0)
		if err == nil {
			return int(n)
		}
		if errors.Is(err, strconv.ErrRange) {
			d.add(m.valOff, path, "%s: %s is out of range (1-65535)", path, cfgShowRaw(m.val))
		} else {
			d.add(m.valOff, path, "%s: expected a whole number such as 7001, got %s", path, cfgShowRaw(m.val))
		}
		return 0
	case "string":
		var s string
		_ = json.Unmarshal(m.val, &s)
		if _, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			d.add(m.valOff, path, "%s: expected a number, got string %s; write %s without quotes", path, cfgQuote(s), strings.TrimSpace(s))
			return 0
		}
	}
	d.add(m.valOff, path, "%s: expected a number, got %s", path, cfgDescribe(m.val))
	return 0
}

func (d *cfgDecoder) duration(m cfgMember, path string, def time.Duration) Duration {
	if cfgKind(m.val) == "null" {
		return 0
	}
	v, msg := cfgParseDuration(m.val)
	if msg != "" {
		d.add(m.valOff, path, "%s: %s", path, msg)
		return 0
	}
	if v == 0 {
		// An explicit zero would silently become the default; say so.
		d.add(m.valOff, path, "%s: %s is not a usable duration; remove the field for the default (%v) or give at least 1ms", path, cfgShowRaw(m.val), def)
	}
	return v
}

// tls decodes the "tls" object.
func (d *cfgDecoder) tls(m cfgMember, path string) *TLSConfig {
	switch cfgKind(m.val) {
	case "null":
		return nil
	case "object":
	default:
		d.add(m.valOff, path, `%s: expected an object such as {"ca_file": "ca.pem", "cert_file": "a.pem", "key_file": "a-key.pem"}, got %s`, path, cfgDescribe(m.val))
		return nil
	}
	members, ok := d.members(m.val, m.valOff, path)
	if !ok {
		return nil
	}
	t := &TLSConfig{}
	fields := []string{"ca_file", "cert_file", "key_file"}
	for _, f := range members {
		fpath := cfgPath(path, f.key)
		d.pos[fpath] = f.valOff
		switch f.key {
		case "ca_file":
			t.CAFile = d.str(f, fpath)
		case "cert_file":
			t.CertFile = d.str(f, fpath)
		case "key_file":
			t.KeyFile = d.str(f, fpath)
		default:
			if s := cfgSuggest(f.key, fields, nil); s != "" {
				d.add(f.keyOff, fpath, "%s: unknown field; did you mean %q?", fpath, s)
			} else {
				d.add(f.keyOff, fpath, `%s: unknown field; "tls" takes "ca_file", "cert_file" and "key_file"`, fpath)
			}
		}
	}
	return t
}

// healthCheck decodes the "health_check" object.
func (d *cfgDecoder) healthCheck(m cfgMember, path string) *HealthCheckConfig {
	switch cfgKind(m.val) {
	case "null":
		return nil
	case "object":
	default:
		d.add(m.valOff, path, `%s: expected an object such as {"http": "http://127.0.0.1:8001/healthz"} or {"ttl": "3s"}, got %s`, path, cfgDescribe(m.val))
		return nil
	}
	members, ok := d.members(m.val, m.valOff, path)
	if !ok {
		return nil
	}
	h := &HealthCheckConfig{}
	fields := []string{"http", "interval", "timeout", "failures", "ttl"}
	for _, f := range members {
		fpath := cfgPath(path, f.key)
		d.pos[fpath] = f.valOff
		switch f.key {
		case "http":
			h.HTTP = d.str(f, fpath)
		case "interval":
			h.Interval = d.duration(f, fpath, DefaultHealthInterval)
		case "timeout":
			h.Timeout = d.duration(f, fpath, DefaultHealthTimeout)
		case "failures":
			h.Failures = d.int(f, fpath)
		case "ttl":
			h.TTL = d.duration(f, fpath, 0)
		default:
			if s := cfgSuggest(f.key, fields, nil); s != "" {
				d.add(f.keyOff, fpath, "%s: unknown field; did you mean %q?", fpath, s)
			} else {
				d.add(f.keyOff, fpath, `%s: unknown field; "health_check" takes "http", "interval", "timeout" and "failures", or "ttl"`, fpath)
			}
		}
	}
	return h
}

// strings decodes an array of strings.
func (d *cfgDecoder) strings(m cfgMember, path string) []string {
	if cfgKind(m.val) == "null" {
		return nil
	}
	var out []string
	if err := json.Unmarshal(m.val, &out); err != nil {
		d.add(m.valOff, path, `%s: expected an array of strings such as ["key1"], got %s`, path, cfgDescribe(m.val))
		return nil
	}
	return out
}

// int decodes a whole number (possibly negative).
func (d *cfgDecoder) int(m cfgMember, path string) int {
	if cfgKind(m.val) == "null" {
		return 0
	}
	n, err := strconv.ParseInt(string(m.val), 10, 32)
	if err != nil {
		d.add(m.valOff, path, "%s: expected a whole number, got %s", path, cfgDescribe(m.val))
		return 0
	}
	return int(n)
}

// boolPtr decodes true, false or null (nil).
func (d *cfgDecoder) boolPtr(m cfgMember, path string) *bool {
	switch string(m.val) {
	case "null":
		return nil
	case "true", "false":
		b := string(m.val) == "true"
		return &b
	}
	d.add(m.valOff, path, "%s: expected true or false, got %s", path, cfgDescribe(m.val))
	return nil
}

func (d *cfgDecoder) object(m cfgMember, path string) map[string]any {
	switch cfgKind(m.val) {
	case "null":
		return nil
	case "object":
		var v map[string]any
		if err := json.Unmarshal(m.val, &v); err != nil {
			d.add(m.valOff, path, "%s: cannot be decoded: %v", path, err)
		}
		return v
	}
	d.add(m.valOff, path, `%s: expected an object such as {"server_port": 8002}, got %s`, path, cfgDescribe(m.val))
	return nil
}

func (d *cfgDecoder) peers(m cfgMember, path string) []PeerConfig {
	switch cfgKind(m.val) {
	case "null":
		return nil
	case "array":
	default:
		d.add(m.valOff, path, `%s: expected a list of peers such as [{"host": "localhost", "port": 7002, "identifier": "server_b"}], got %s`, path, cfgDescribe(m.val))
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(m.val))
	if _, err := dec.Token(); err != nil {
		d.add(m.valOff, path, "%s: cannot be decoded: %v", path, err)
		return nil
	}
	peers := []PeerConfig{}
	for i := 0; dec.More(); i++ {
		before := int(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			d.add(m.valOff+before, path, "%s: cannot be decoded: %v", path, err)
			return nil
		}
		raw = bytes.TrimSpace(raw)
		off := m.valOff + cfgSkip(m.val, before, ", \t\r\n")
		ppath := fmt.Sprintf("%s[%d]", path, i)
		d.pos[ppath] = off
		peers = append(peers, d.peer(raw, off, ppath))
	}
	return peers
}

func (d *cfgDecoder) peer(raw []byte, off int, path string) PeerConfig {
	var p PeerConfig
	if cfgKind(raw) != "object" {
		d.add(off, path, `%s: expected an object such as {"host": "localhost", "port": 7002, "identifier": "server_b"}, got %s`, path, cfgDescribe(raw))
		return p
	}
	members, ok := d.members(raw, off, path)
	if !ok {
		return p
	}
	for _, m := range members {
		fpath := cfgPath(path, m.key)
		d.pos[fpath] = m.valOff
		switch m.key {
		case "host":
			p.Host = d.str(m, fpath)
		case "port":
			p.Port = d.port(m, fpath)
		case "identifier":
			p.Identifier = d.str(m, fpath)
		case "metadata":
			p.Metadata = d.object(m, fpath)
		default:
			if s := cfgSuggest(m.key, cfgPeerFields(), cfgPeerAlias); s != "" {
				d.add(m.keyOff, fpath, "%s: unknown field; did you mean %q?", fpath, s)
			} else {
				d.add(m.keyOff, fpath, `%s: unknown field; a peer entry takes only "host", "port", "identifier" and "metadata" (put the peer's own data in its metadata)`, fpath)
			}
		}
	}
	return p
}

// ---------------------------------------------------------------------------
// Validation

// cfgProblems collects validation problems.
type cfgProblems []cfgProblem

// add records a problem about the field at path, reported at the position
// of the field at path at (when known).
func (ps *cfgProblems) add(at, format string, args ...any) {
	*ps = append(*ps, cfgProblem{at: at, text: fmt.Sprintf(format, args...)})
}

// cfgValidate returns every problem with c; nodeID is NodeID except in tests.
func cfgValidate(c Config, nodeID func(string) uint64) cfgProblems {
	var ps cfgProblems

	// identifier
	idOK := false
	if c.Identifier == "" {
		ps.add("identifier", `identifier: missing; give this peer a unique name such as "server_a"`)
	} else if msg := cfgNameProblem(c.Identifier, false); msg != "" {
		ps.add("identifier", `identifier: %s %s; use a name without spaces or control characters, such as "server_a"`, cfgQuote(c.Identifier), msg)
	} else {
		idOK = true
	}

	// listen_host
	if c.ListenHost != "" {
		if msg := cfgHostProblem(c.ListenHost, "listen_port"); msg != "" {
			ps.add("listen_host", "listen_host: %s %s", cfgQuote(c.ListenHost), msg)
		}
	}

	// listen_port
	lport := cfgListenerPort(c.Listener)
	switch {
	case c.ListenPort == 0 && c.Listener == nil:
		hint := ""
		if _, ok := c.Extra["port"]; ok {
			hint = ` (there is a top-level "port"; did you mean "listen_port"?)`
		}
		ps.add("listen_port", "listen_port: missing; give the port this peer listens on, such as 7001%s", hint)
	case c.ListenPort < 0 || c.ListenPort > 65535:
		ps.add("listen_port", "listen_port: %d is out of range (1-65535)", c.ListenPort)
	case c.ListenPort != 0 && lport != 0 && lport != c.ListenPort:
		ps.add("listen_port", "listen_port: %d differs from the port of Listener (%d); set listen_port to 0 or to %d", c.ListenPort, lport, lport)
	}

	// advertise_host
	if c.AdvertiseHost != "" {
		if msg := cfgHostProblem(c.AdvertiseHost, "listen_port"); msg != "" {
			if c.AdvertiseHost != c.ListenHost { // else reported for listen_host (WithDefaults copied it)
				ps.add("advertise_host", "advertise_host: %s %s", cfgQuote(c.AdvertiseHost), msg)
			}
		} else if cfgUnspecified(c.AdvertiseHost) {
			ps.add("advertise_host", "advertise_host: %s is not an address other peers can connect to; give this peer's reachable host name or IP address", cfgQuote(c.AdvertiseHost))
		}
	} else if cfgUnspecified(c.ListenHost) {
		ps.add("listen_host", "advertise_host: missing; listen_host %s listens on all interfaces, so give the host name or IP address other peers reach this peer at", cfgQuote(c.ListenHost))
	}

	// metadata
	if c.Metadata != nil {
		if _, err := json.Marshal(c.Metadata); err != nil {
			ps.add("metadata", "metadata: cannot be encoded as JSON (%v); use strings, numbers, booleans, lists and objects", err)
		}
	}

	// peers
	ownPort := cfgPort(c)
	ownAdv, ownListen := "", ""
	if ownPort > 0 && ownPort <= 65535 && !cfgUnspecified(cfgAdvertiseHost(c)) {
		ownAdv = cfgAddrKey(cfgAdvertiseHost(c), ownPort)
	}
	if ownPort > 0 && ownPort <= 65535 && !cfgUnspecified(cfgListenHost(c)) {
		ownListen = cfgAddrKey(cfgListenHost(c), ownPort)
	}
	isOwn := func(key string) bool { return key != "" && (key == ownAdv || key == ownListen) }
	firstID := map[string]int{}
	firstAddr := map[string]int{}
	peerIDOK := make([]bool, len(c.Peers))
	for i, p := range c.Peers {
		path := fmt.Sprintf("peers[%d]", i)

		switch {
		case p.Identifier == "":
			ps.add(path+".identifier", "%s.identifier: missing; give the peer's own identifier (the name in its config), such as \"server_b\"", path)
		case cfgNameProblem(p.Identifier, false) != "":
			ps.add(path+".identifier", "%s.identifier: %s %s; identifiers have no spaces or control characters", path, cfgQuote(p.Identifier), cfgNameProblem(p.Identifier, false))
		default:
			peerIDOK[i] = true
		}

		hostOK := false
		switch {
		case p.Host == "":
			ps.add(path+".host", `%s.host: missing; give the host name or IP address the peer is reachable at, such as "localhost"`, path)
		case cfgHostProblem(p.Host, path+".port") != "":
			ps.add(path+".host", "%s.host: %s %s", path, cfgQuote(p.Host), cfgHostProblem(p.Host, path+".port"))
		case cfgUnspecified(p.Host):
			ps.add(path+".host", "%s.host: %s is not an address others can connect to; give the host name or IP address the peer is reachable at", path, cfgQuote(p.Host))
		default:
			hostOK = true
		}

		portOK := false
		switch {
		case p.Port == 0:
			ps.add(path+".port", "%s.port: missing; give the port the peer listens on (its listen_port), such as 7002", path)
		case p.Port < 0 || p.Port > 65535:
			ps.add(path+".port", "%s.port: %d is out of range (1-65535)", path, p.Port)
		default:
			portOK = true
		}

		if p.Metadata != nil {
			if _, err := json.Marshal(p.Metadata); err != nil {
				ps.add(path+".metadata", "%s.metadata: cannot be encoded as JSON (%v); use strings, numbers, booleans, lists and objects", path, err)
			}
		}

		key := ""
		if hostOK && portOK {
			key = cfgAddrKey(p.Host, p.Port)
		}
		if peerIDOK[i] {
			if j, dup := firstID[p.Identifier]; dup {
				ps.add(path+".identifier", "%s.identifier: %s is also the identifier of peers[%d]; every peer needs a unique identifier", path, cfgQuote(p.Identifier), j)
				continue
			}
			firstID[p.Identifier] = i
		}
		if idOK && peerIDOK[i] && p.Identifier == c.Identifier {
			// This peer's own entry: fine (and skipped) if the address is its own.
			if key != "" && ownPort > 0 && !isOwn(key) {
				ps.add(path, "%s: identifier %s is this peer's own, but the entry's address %s is not this peer's (%s); fix the entry or remove it",
					path, cfgQuote(p.Identifier), p.Addr(), cfgShowAddr(c))
			}
			if c.Metadata != nil && p.Metadata != nil && !reflect.DeepEqual(c.Metadata, p.Metadata) {
				ps.add(path+".metadata", "%s.metadata: differs from this peer's top-level metadata, but both describe this peer; keep one of them", path)
			}
			continue
		}
		if key == "" {
			continue
		}
		if isOwn(key) {
			ps.add(path, "%s: address %s is this peer's own (%s); give %s its own address, or fix listen_host/listen_port",
				path, p.Addr(), cfgShowAddr(c), cfgShowPeer(p))
			continue
		}
		if j, dup := firstAddr[key]; dup {
			ps.add(path, "%s: address %s is also used by peers[%d] (%s); each peer needs its own host:port",
				path, p.Addr(), j, cfgShowPeer(c.Peers[j]))
			continue
		}
		firstAddr[key] = i
	}

	// Raft node IDs, derived from identifiers, must not collide.
	byNodeID := map[uint64]string{}
	checkID := func(id, at string) {
		h := nodeID(id)
		if other, ok := byNodeID[h]; ok && other != id {
			ps.add(at, "%s: identifiers %s and %s hash to the same node ID (%#x); rename one of them", at, cfgQuote(other), cfgQuote(id), h)
			return
		}
		byNodeID[h] = id
	}
	if idOK {
		checkID(c.Identifier, "identifier")
	}
	for i, p := range c.Peers {
		if peerIDOK[i] {
			checkID(p.Identifier, fmt.Sprintf("peers[%d].identifier", i))
		}
	}

	// data_dir: the default needs a home directory.
	if c.DataDir == "" && idOK && c.Mode != ModeMasterless {
		if _, err := cfgDefaultDataDir(c.Identifier); err != nil {
			ps.add("data_dir", "data_dir: missing, and there is no default (%v); set it to a directory that survives reboots, such as %s",
				err, cfgQuote("/var/lib/qcluster/"+cfgDirName(c.Identifier)))
		}
	}

	// heartbeat_interval and election_timeout (zero means the default).
	hb, hbNote := time.Duration(c.HeartbeatInterval), ""
	if hb == 0 {
		hb, hbNote = DefaultHeartbeatInterval, ", the default"
	}
	et, etNote := time.Duration(c.ElectionTimeout), ""
	if et == 0 {
		et, etNote = DefaultElectionTimeout, ", the default"
	}
	hbOK := false
	switch {
	case hb < 0:
		ps.add("heartbeat_interval", "heartbeat_interval: %v is negative; give a positive interval such as \"50ms\"", hb)
	case hb < cfgMinHeartbeat:
		ps.add("heartbeat_interval", "heartbeat_interval: %v is below the 1ms minimum; give an interval such as \"50ms\"", hb)
	default:
		hbOK = true
	}
	switch {
	case et < 0:
		ps.add("election_timeout", "election_timeout: %v is negative; give a positive timeout such as \"150ms\"", et)
	case et > cfgMaxElection:
		ps.add("election_timeout", "election_timeout: %v is above the %v maximum (fail-over would take that long); give a timeout such as \"150ms\" or \"1s\"", et, cfgMaxElection)
	case hbOK && et < cfgElectionFactor*hb:
		ps.add("election_timeout", "election_timeout (%v%s) must be at least %dx heartbeat_interval (%v%s) so a leader's heartbeats arrive well within it; raise election_timeout to %v or more, or lower heartbeat_interval",
			et, etNote, cfgElectionFactor, hb, hbNote, cfgElectionFactor*hb)
	}

	// cluster_name
	if c.ClusterName != "" {
		if msg := cfgNameProblem(c.ClusterName, true); msg != "" {
			ps.add("cluster_name", "cluster_name: %s %s; give a short printable name such as \"prod-eu\"", cfgQuote(c.ClusterName), msg)
		}
	}

	// mode and the registry settings
	switch c.Mode {
	case "", ModeLeader, ModeMasterless:
	default:
		ps.add("mode", "mode: %s is not a mode; use %q (elect a leader, the default) or %q (no leader)", cfgQuote(c.Mode), ModeLeader, ModeMasterless)
	}
	if c.DeadMemberTimeout < 0 {
		ps.add("dead_member_timeout", "dead_member_timeout: %v is negative; give a duration such as \"10m\", or remove the field to never remove dead members", time.Duration(c.DeadMemberTimeout))
	}
	if c.MinVoters < 0 {
		ps.add("min_voters", "min_voters: %d is negative; give at least 1 (default %d)", c.MinVoters, DefaultMinVoters)
	}
	switch c.GossipProfile {
	case "", GossipLAN, GossipLocal, GossipWAN:
	default:
		ps.add("gossip_profile", "gossip_profile: %s is not a profile; use %q (default), %q or %q", cfgQuote(c.GossipProfile), GossipLAN, GossipLocal, GossipWAN)
	}

	healthCheckProblems(c.HealthCheck, &ps)

	// security
	for _, p := range securityProblems(c.Identifier, c.ClusterName, c.TLS, c.ClusterKey, c.GossipKey, c.ExtraGossipKeys) {
		ps.add(p.at, "%s", p.text)
	}
	switch c.APIClientCerts {
	case "", "required", "optional":
	default:
		ps.add("api_client_certs", `api_client_certs: %s is not a setting; use "required" (the default) or "optional"`, cfgQuote(c.APIClientCerts))
	}

	// Extra must hold only application fields.
	for _, k := range slices.Sorted(maps.Keys(c.Extra)) {
		path := cfgPath("", k)
		switch {
		case slices.Contains(cfgTopFields(), k):
			ps.add(path, "%s: is a QCluster field, but it is in Extra; set the Config field instead", path)
		case cfgSuggest(k, cfgTopFields(), nil) != "":
			ps.add(path, "%s: unknown field; did you mean %q?", path, cfgSuggest(k, cfgTopFields(), nil))
		case !json.Valid(c.Extra[k]):
			ps.add(path, "%s: the value in Extra is not valid JSON", path)
		}
	}
	return ps
}

// cfgNameProblem describes what is wrong with an identifier or cluster name
// ("contains whitespace", ...), or returns "". allowSpace permits plain
// spaces (cluster names).
func cfgNameProblem(s string, allowSpace bool) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case len(s) > cfgMaxNameLen:
		return fmt.Sprintf("is %d bytes long, more than the %d allowed", len(s), cfgMaxNameLen)
	case !allowSpace && strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return "contains whitespace"
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "contains a control or non-printable character"
	}
	return ""
}

// cfgHostProblem describes what is wrong with a host name or IP address
// (portField names the field the port belongs in), or returns "".
func cfgHostProblem(host, portField string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	switch {
	case !utf8.ValidString(host):
		return "is not valid UTF-8"
	case strings.Contains(host, "://"):
		return `looks like a URL; give only the host name or IP address, such as "localhost"`
	case strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]"):
		return fmt.Sprintf("has brackets; write IPv6 addresses without them, such as %s", cfgQuote(strings.Trim(host, "[]")))
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if _, err := strconv.Atoi(p); err == nil {
			return fmt.Sprintf("includes a port; write only %s here and put %s in %s", cfgQuote(h), p, portField)
		}
	}
	if len(host) > cfgMaxHostLen {
		return fmt.Sprintf("is %d bytes long, more than the %d a host name may have", len(host), cfgMaxHostLen)
	}
	if strings.IndexFunc(host, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '.' && r != '_'
	}) >= 0 || strings.Trim(host, ".") == "" {
		return `is not a valid host name or IP address; give one such as "localhost", "db1.example.com" or "10.0.0.5"`
	}
	return ""
}

// cfgUnspecified reports whether host is 0.0.0.0, :: or the like.
func cfgUnspecified(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// cfgAddrKey returns a canonical form of host:port for comparing addresses:
// host names lower-cased, IP addresses in canonical form, and "localhost",
// 127.0.0.1 and ::1 treated as one.
func cfgAddrKey(host string, port int) string {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		h = a.String()
	}
	switch h {
	case "localhost", "127.0.0.1", "::1":
		h = "localhost"
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

// cfgListenHost is the effective listen host: ListenHost, else Listener's
// IP when it is bound to one, else DefaultListenHost.
func cfgListenHost(c Config) string {
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

// cfgAdvertiseHost is the effective advertise host.
func cfgAdvertiseHost(c Config) string {
	if c.AdvertiseHost != "" {
		return c.AdvertiseHost
	}
	return cfgListenHost(c)
}

// cfgPort is the effective listen port: ListenPort, else Listener's port.
func cfgPort(c Config) int {
	if c.ListenPort != 0 {
		return c.ListenPort
	}
	return cfgListenerPort(c.Listener)
}

// cfgListenerPort returns the port l is bound to, or 0.
func cfgListenerPort(l net.Listener) int {
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

// cfgShowAddr describes this peer's address(es) for messages.
func cfgShowAddr(c Config) string {
	port := strconv.Itoa(cfgPort(c))
	adv, listen := net.JoinHostPort(cfgAdvertiseHost(c), port), net.JoinHostPort(cfgListenHost(c), port)
	if adv == listen || cfgUnspecified(cfgListenHost(c)) {
		return adv
	}
	return adv + " or " + listen
}

func cfgShowPeer(p PeerConfig) string {
	if p.Identifier == "" {
		return "that peer"
	}
	return cfgQuote(p.Identifier)
}

// ---------------------------------------------------------------------------
// Misspellings

// cfgSuggest returns the field among fields that key looks like a
// misspelling of, or "": see the Config doc for the rule. alias, if not nil,
// maps other (normalized) names for a field to it.
func cfgSuggest(key string, fields []string, alias func(string) string) string {
	nk := cfgNorm(key)
	for _, f := range fields {
		if nk == cfgNorm(f) {
			return f
		}
	}
	if alias != nil {
		if f := alias(nk); f != "" {
			return f
		}
	}
	n := utf8.RuneCountInString(nk)
	if n < 3 || n > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, f := range fields {
		nf := cfgNorm(f)
		limit := 1
		if n >= 5 && utf8.RuneCountInString(nf) >= 8 {
			limit = 2
		}
		if dist := cfgOSA(nk, nf); dist <= limit && dist < bestDist {
			best, bestDist = f, dist
		}
	}
	return best
}

// cfgNorm lower-cases s and drops '_', '-', '.' and spaces.
func cfgNorm(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', '.', ' ':
			return -1
		}
		return unicode.ToLower(r)
	}, s)
}

// cfgOSA returns the optimal string alignment distance (Damerau-Levenshtein
// with adjacent transpositions, no substring edited twice) between a and b.
func cfgOSA(a, b string) int {
	s, t := []rune(a), []rune(b)
	prev2 := make([]int, len(t)+1)
	prev := make([]int, len(t)+1)
	cur := make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}

// ---------------------------------------------------------------------------
// Small helpers

// cfgKind names the JSON type of the (valid, trimmed) value raw.
func cfgKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// cfgDescribe describes a JSON value for "got ..." messages.
func cfgDescribe(raw []byte) string {
	switch k := cfgKind(raw); k {
	case "object", "array":
		return "an " + k
	case "null", "nothing":
		return k
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		return "string " + cfgQuote(s)
	default:
		return k + " " + cfgShowRaw(raw)
	}
}

// cfgShowRaw shows a short JSON literal as is, truncating long ones.
func cfgShowRaw(raw []byte) string {
	if len(raw) > 32 {
		return string(raw[:32]) + "..."
	}
	return string(raw)
}

// cfgQuote quotes s for a message, truncating long strings.
func cfgQuote(s string) string {
	if utf8.RuneCountInString(s) > 64 {
		s = string([]rune(s)[:64]) + "..."
	}
	return strconv.Quote(s)
}

// cfgPath appends key to a JSON path, quoting keys that are not plain names.
func cfgPath(prefix, key string) string {
	plain := key != "" && strings.IndexFunc(key, func(r rune) bool {
		return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0
	if !plain {
		key = cfgQuote(key)
	}
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// cfgSkip returns the offset of the first byte at or after off in data that
// is not in set (or len(data)).
func cfgSkip(data []byte, off int, set string) int {
	off = max(0, min(off, len(data)))
	for off < len(data) && strings.IndexByte(set, data[off]) >= 0 {
		off++
	}
	return off
}

// cfgLineCol returns the 1-based line and column (in characters) of byte
// offset off in data.
func cfgLineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	return bytes.Count(data[:off], []byte{'\n'}) + 1, utf8.RuneCount(data[start:off]) + 1
}

// cfgDefaultDataDir returns the default data_dir of the peer named id:
// "qcluster/<id>" in the per-user state directory (see Config.DataDir).
func cfgDefaultDataDir(id string) (string, error) {
	home, err := cfgStateHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, "qcluster", cfgDirName(id)), nil
}

// cfgStateHome returns the per-user directory for durable state:
// $XDG_STATE_HOME when it is an absolute path, else ~/.local/state (the XDG
// default), ~/Library/Application Support on macOS and %LocalAppData% on
// Windows.
func cfgStateHome() (string, error) {
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return dir, nil
	}
	switch runtime.GOOS {
	case "windows":
		if dir := os.Getenv("LocalAppData"); filepath.IsAbs(dir) {
			return dir, nil
		}
		return os.UserConfigDir()
	case "darwin", "ios":
		return os.UserConfigDir()
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("$XDG_STATE_HOME is not set and %w", err)
	}
	return filepath.Join(home, ".local", "state"), nil
}

// cfgPrepareDataDir makes dir ready for a peer's durable state: it creates
// it, and its missing parents, with mode 0700, and refuses it when another
// user than uid owns it (uid < 0: no owner check, as on Windows), since
// that user could rewrite the peer's term and vote. Start calls it in
// leader mode.
func cfgPrepareDataDir(dir string, uid int) error {
	problem := func(format string, args ...any) error {
		return &cfgError{problems: []cfgProblem{{at: "data_dir", text: fmt.Sprintf(format, args...)}}}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return problem("data_dir: cannot create %s: %v; set data_dir to a directory this user may create", cfgQuote(dir), err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return problem("data_dir: %v", err)
	}
	if owner, ok := cfgFileOwner(fi); ok && uid >= 0 && owner != uid {
		return problem("data_dir: %s is owned by another user (uid %d; this peer runs as uid %d), who could rewrite this peer's Raft state (its term and vote); "+
			"use a directory of this user's: set data_dir to one, or chown this one to uid %d, or remove it (it is created with mode 0700)",
			cfgQuote(dir), owner, uid, uid)
	}
	return nil
}

// cfgDirName turns an identifier into a safe directory name: characters
// other than letters, digits, '-', '_' and '.' become '_', and a name that
// had to change (or is long) gets a hash suffix so it stays unique.
func cfgDirName(id string) string {
	name := strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r == '-' || r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '_'
	}, id)
	if strings.Trim(name, ".") == "" {
		name = strings.ReplaceAll(name, ".", "_")
	}
	if name != id || len(name) > 64 {
		name = fmt.Sprintf("%s-%016x", name[:min(len(name), 48)], NodeID(id))
	}
	return name
}

// cfgClone deep-copies the maps and slices of c.
func cfgClone(c Config) Config {
	c.Metadata = cfgCloneMap(c.Metadata)
	if c.Peers != nil {
		peers := make([]PeerConfig, len(c.Peers))
		for i, p := range c.Peers {
			p.Metadata = cfgCloneMap(p.Metadata)
			peers[i] = p
		}
		c.Peers = peers
	}
	if c.TLS != nil {
		t := *c.TLS
		c.TLS = &t
	}
	if c.HealthCheck != nil {
		h := *c.HealthCheck
		c.HealthCheck = &h
	}
	c.ExtraGossipKeys = slices.Clone(c.ExtraGossipKeys)
	if c.Extra != nil {
		extra := make(map[string]json.RawMessage, len(c.Extra))
		for k, v := range c.Extra {
			extra[k] = bytes.Clone(v)
		}
		c.Extra = extra
	}
	return c
}

func cfgCloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cfgCloneValue(v)
	}
	return out
}

func cfgCloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return cfgCloneMap(t)
	case []any:
		if t == nil {
			return t
		}
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = cfgCloneValue(e)
		}
		return out
	case json.RawMessage:
		return bytes.Clone(t)
	}
	return v
}

// minHealthTTL is the shortest health_check.ttl (and interval) accepted.
const minHealthTTL = 100 * time.Millisecond

// healthCheckProblems validates the "health_check" object.
func healthCheckProblems(h *HealthCheckConfig, ps *cfgProblems) {
	if h == nil {
		return
	}
	switch {
	case h.HTTP == "" && h.TTL == 0:
		ps.add("health_check", `health_check: give "http" (a URL QCluster polls, such as "http://127.0.0.1:8001/healthz") or "ttl" (the application reports through PUT /v1/self/health, such as "3s")`)
		return
	case h.HTTP != "" && h.TTL != 0:
		ps.add("health_check", `health_check: give either "http" or "ttl", not both; remove one of them`)
		return
	}
	if h.TTL != 0 {
		if time.Duration(h.TTL) < minHealthTTL {
			ps.add("health_check.ttl", "health_check.ttl: %v is too short; give at least %v, such as \"3s\"", time.Duration(h.TTL), minHealthTTL)
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"interval", h.Interval != 0}, {"timeout", h.Timeout != 0}, {"failures", h.Failures != 0}} {
			if f.set {
				ps.add("health_check."+f.name, `health_check.%s: only an "http" check takes it; remove it (a "ttl" check fails when the application does not report within the ttl)`, f.name)
			}
		}
		return
	}
	u, err := url.Parse(h.HTTP)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.add("health_check.http", "health_check.http: %s is not an http(s) URL; give one such as \"http://127.0.0.1:8001/healthz\"", cfgQuote(h.HTTP))
	}
	interval := cmp.Or(time.Duration(h.Interval), DefaultHealthInterval)
	if interval < minHealthTTL {
		ps.add("health_check.interval", "health_check.interval: %v is too short; give at least %v, such as \"1s\"", interval, minHealthTTL)
	}
	if h.Timeout < 0 || time.Duration(h.Timeout) > interval {
		ps.add("health_check.timeout", "health_check.timeout: %v is longer than the interval (%v); give at most the interval, such as \"500ms\"", time.Duration(h.Timeout), interval)
	}
	if h.Failures < 0 {
		ps.add("health_check.failures", "health_check.failures: %d is negative; give at least 1 (default %d)", h.Failures, DefaultHealthFailures)
	}
}
