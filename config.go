package qcluster

import (
	"github.com/qcluster/qcluster/internal/config"
)

// The configuration lives in package internal/config, where one table
// declares each field once (decoding, defaults, validation, environment
// variables and flags, secrets, misspelling hints). This file re-exports it:
// the types are aliases, so a qcluster.Config is a config.Config, and the
// functions are thin wrappers. See Config for the file format.

// Defaults filled in by DefaultConfig and Config.WithDefaults.
const (
	// DefaultListenHost is the listen_host used when none is given: the
	// IPv4 loopback address, so a peer is not exposed by accident. Set
	// listen_host (and advertise_host) to run peers on several machines.
	DefaultListenHost = config.DefaultListenHost

	// DefaultHeartbeatInterval is the heartbeat_interval used when none is
	// given, the seed's 50ms.
	DefaultHeartbeatInterval = config.DefaultHeartbeatInterval

	// DefaultElectionTimeout is the election_timeout used when none is
	// given, the seed's 150ms (randomized per election in [150ms, 300ms)).
	DefaultElectionTimeout = config.DefaultElectionTimeout

	// DefaultMinVoters is the min_voters used when none is given.
	DefaultMinVoters = config.DefaultMinVoters

	// DefaultHealthInterval, DefaultHealthTimeout and DefaultHealthFailures
	// are the health_check settings of an "http" check used when none is
	// given: poll every second, give each request 500ms, and count the
	// application unhealthy after two failures in a row.
	DefaultHealthInterval = config.DefaultHealthInterval
	DefaultHealthTimeout  = config.DefaultHealthTimeout
	DefaultHealthFailures = config.DefaultHealthFailures
)

// Modes (Config.Mode).
const (
	// ModeLeader elects a leader with Raft (the default).
	ModeLeader = config.ModeLeader
	// ModeMasterless runs without any election: gossip membership only.
	ModeMasterless = config.ModeMasterless
)

// Gossip profiles (Config.GossipProfile): memberlist's timings.
const (
	// GossipLAN is memberlist's LAN profile (the default): probe every 1s,
	// suspicion multiplier 4.
	GossipLAN = config.GossipLAN
	// GossipLocal is memberlist's local profile, for one machine or a fast
	// LAN: probe every 1s with a 200ms timeout, suspicion multiplier 3.
	GossipLocal = config.GossipLocal
	// GossipWAN is memberlist's WAN profile: probe every 5s.
	GossipWAN = config.GossipWAN
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
var ErrInvalidConfig = config.ErrInvalidConfig

// Config is one peer's configuration; its JSON form is the seed's config
// file format. Read a file with LoadConfig (or bytes with ParseConfig):
// they fill the defaults and validate. A Config built in Go can leave any
// field with a default at its zero value; WithDefaults fills it and
// Validate accepts it. See config.Config for every field, the file format
// and the rules for unknown and misspelt keys.
type Config = config.Config

// HealthCheckConfig is the "health_check" object: exactly one of HTTP
// (QCluster polls the application) and TTL (the application reports,
// through Cluster.SetHealth or PUT /v1/self/health, within every TTL).
type HealthCheckConfig = config.HealthCheckConfig

// PeerConfig is one entry of a Config's peers list: another member of the
// cluster and how to reach it.
type PeerConfig = config.PeerConfig

// TLSConfig names the PEM files of a peer's TLS identity: the "tls" object
// of the config. "qcluster tls init" makes them for every peer of a config.
type TLSConfig = config.TLSConfig

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string such as "150ms", "1.5s" or "2m" (a bare JSON number is rejected).
// Convert with time.Duration(d).
type Duration = config.Duration

// DefaultConfig returns a Config with every default that does not depend
// on the peer's identity: ListenHost, HeartbeatInterval and
// ElectionTimeout. Identifier, ListenPort and Peers are left for the caller;
// DataDir and Logger, whose defaults depend on Identifier, are filled by
// WithDefaults.
func DefaultConfig() Config { return config.Default() }

// ParseConfig decodes a JSON config (the seed's format; see Config), fills
// the defaults (WithDefaults) and validates the result (Validate). It
// reports every problem at once, each with its field path and, where it has
// one, its line and column in data: first the problems that keep the
// document from being decoded (JSON syntax, wrong types, unknown or repeated
// keys), or, when there are none, every validation problem. The error wraps
// ErrInvalidConfig. A leading UTF-8 byte order mark is ignored.
func ParseConfig(data []byte) (Config, error) { return config.Parse(data) }

// LoadConfig reads the JSON config file at path and parses it like
// ParseConfig. Errors name the path.
func LoadConfig(path string) (Config, error) { return config.Load(path) }

// NodeID returns the Raft node ID of the peer named identifier: the 64-bit
// FNV-1a hash of the identifier, except that a hash of 0 (which Raft
// reserves for "no node") becomes 1. It is stable across versions and
// processes; Validate rejects configs in which two identifiers share one.
func NodeID(identifier string) uint64 { return config.NodeID(identifier) }
