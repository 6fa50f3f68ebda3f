package membership

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"

	"github.com/qcluster/qcluster/internal/transport"
)

// Profiles name a set of memberlist timings to start from.
const (
	// ProfileLocal starts from memberlist.DefaultLocalConfig: loopback or
	// a single host (probe every 1 s, probe timeout 200 ms, suspicion
	// multiplier 3, gossip every 100 ms, push/pull every 15 s, stream
	// timeout 1 s), with one change: the retransmit multiplier is the LAN
	// profile's 4 instead of 2. With 2, each member re-gossips an update to
	// only about 4 others, and in a cluster of 20 some member typically
	// misses a join until the next push/pull (measured: 28 s for 20
	// members to converge, against well under a second with 4).
	ProfileLocal = "local"
	// ProfileLAN starts from memberlist.DefaultLANConfig, the default:
	// a data-centre network (probe every 1 s, probe timeout 500 ms,
	// suspicion multiplier 4, gossip every 200 ms, push/pull every 30 s,
	// stream timeout 10 s).
	ProfileLAN = "lan"
	// ProfileWAN starts from memberlist.DefaultWANConfig: links with high
	// latency (probe every 5 s, probe timeout 3 s, suspicion multiplier 6,
	// gossip every 500 ms, push/pull every 60 s, stream timeout 30 s).
	ProfileWAN = "wan"
)

// Limits and defaults.
const (
	// MaxMetaSize is the largest metadata a member may publish (64 KiB).
	// Metadata of up to InlineMetaSize bytes travels inside memberlist's
	// node meta (limited to 512 bytes) and so reaches every peer with the
	// gossip itself; larger metadata is announced there by size and
	// SHA-256 and fetched by each peer from its owner over a stream (see
	// MetaPreamble).
	MaxMetaSize = 64 << 10

	// InlineMetaSize is the largest metadata carried inside memberlist's
	// node meta: memberlist.MetaMaxSize minus a 3-byte header.
	InlineMetaSize = memberlist.MetaMaxSize - envelopeHeaderLen

	// MaxNameLen is the longest member name, in bytes.
	MaxNameLen = 255

	// DefaultRejoinInterval is the default for Config.RejoinInterval.
	DefaultRejoinInterval = 30 * time.Second

	// DefaultEventBuffer is the default for Config.EventBuffer.
	DefaultEventBuffer = 1024

	// DefaultDeadMemberRetention is the default for
	// Config.DeadMemberRetention.
	DefaultDeadMemberRetention = time.Hour

	// DefaultOpTimeout bounds how long SetMeta and Leave wait for their
	// broadcast to go out when the context has no deadline.
	DefaultOpTimeout = 5 * time.Second
)

// Config configures a Membership. Start from DefaultConfig (or the zero
// value, where zero durations and counts mean "the profile's default" and a
// zero RejoinInterval disables the periodic rejoin); New copies the Config,
// so changing it afterwards has no effect.
type Config struct {
	// Name identifies this member; it must be unique in the cluster, at
	// most MaxNameLen bytes of valid UTF-8. Required.
	Name string

	// Mux is the peer's port multiplexer. New registers GossipPreamble
	// (memberlist's streams) and MetaPreamble (large metadata) on it, so
	// New must be called before Mux.Serve. Required.
	Mux *transport.Mux

	// BindAddr is the IP address the UDP socket binds to. Empty means the
	// Mux listener's IP.
	BindAddr string
	// Port is the UDP port. Zero means the Mux listener's TCP port, which
	// is the point: one port number for TCP and UDP.
	Port int

	// AdvertiseHost is the IP address or host name other members use to
	// reach this one. Empty means BindAddr, or, when that is a wildcard
	// address (0.0.0.0, ::), this host's first private IPv4 address. A
	// host name is resolved once, by New.
	AdvertiseHost string
	// AdvertisePort is the port other members use. Zero means Port.
	AdvertisePort int

	// Meta is this member's initial metadata, at most MaxMetaSize bytes.
	// It is opaque to this package (QCluster puts JSON in it).
	Meta []byte

	// Check is this member's initial health-check state (see
	// Membership.SetCheck).
	Check Check

	// ClusterName keeps clusters apart: it becomes memberlist's Label,
	// which prefixes every packet and stream, and a member refuses
	// packets and streams carrying another label (or none). At most 255
	// bytes. Members of different clusters never merge, even when one is
	// told to join the other.
	ClusterName string

	// TLS, when set, secures the member's streams: gossip streams
	// (push/pull, joins) and metadata fetches are dialled as TLS clients
	// with this configuration (offering transport.ALPNPeer; it verifies
	// the server, as pki.Credentials.ClientTLS does), so the Mux must be a
	// TLS Mux; and inbound streams are accepted only over TLS with a
	// verified client certificate naming a peer of this cluster
	// (pki.Identity with Cluster equal to ClusterName) that Authorize, if
	// set, accepts. Refused streams are logged and counted
	// (Stats.RefusedStreams). UDP packets are not TLS: GossipKeys protect
	// them.
	TLS *tls.Config
	// Authorize, if set with TLS, is asked about the identifier in the
	// certificate of every inbound stream's peer; an error refuses the
	// stream. Nil accepts any peer the cluster CA certified for this
	// cluster.
	Authorize func(identifier string) error

	// GossipKeys, when not empty, turn on memberlist's encryption
	// (AES-GCM, with the cluster name as authenticated data) of every
	// gossip packet and stream, and require it from every other member:
	// the first key encrypts, every key decrypts. Each key is 16, 24 or
	// 32 bytes (AES-128, -192, -256). A member without a key of the ring
	// cannot join, and its packets are dropped (Stats.RejectedPackets).
	// Rotate keys without downtime with InstallKey, UseKey and RemoveKey
	// (see Membership.InstallKey). Encryption cannot be turned on or off
	// on a running member.
	GossipKeys [][]byte

	// Profile selects the base timings: ProfileLAN (default),
	// ProfileLocal or ProfileWAN.
	Profile string

	// Timing overrides; zero keeps the profile's value.
	//
	// ProbeInterval is how often a member probes another one; with
	// SuspicionMult it sets failure-detection time: a member that stops
	// answering is suspected after a probe round that reaches it, and
	// declared dead SuspicionMult*max(1, log10(N))*ProbeInterval later
	// when other members confirm the suspicion (up to 6 times that when
	// they do not).
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for a direct ack; it must be
	// shorter than ProbeInterval.
	ProbeTimeout time.Duration
	// SuspicionMult is the suspicion multiplier described above.
	SuspicionMult int
	// GossipInterval is how often a member gossips queued updates to a
	// few others; it bounds how fast joins, metadata and suspicions
	// spread.
	GossipInterval time.Duration
	// PushPullInterval is how often a member exchanges full state with a
	// random other member (anti-entropy; memberlist stretches it beyond
	// 32 members). It bounds how long a member can stay unaware of a
	// change whose gossip missed it: gossip reaches each member with high
	// probability, not certainty (measured in one process with the local
	// profile: 2 of 5 formations of a 50-member cluster left one member
	// unaware of a join until a push/pull, after about 30 s).
	PushPullInterval time.Duration
	// RetransmitMult sets how many times each member re-gossips an update:
	// RetransmitMult*ceil(log10(N+1)) transmissions, each to one member.
	// Too low and some members miss updates until the next push/pull.
	RetransmitMult int

	// RejoinInterval is how often the member re-joins the seed addresses
	// given to Join whose member is not currently alive or suspect. This
	// repairs what memberlist alone does not: after a partition longer
	// than the suspicion timeout, each side has declared the other dead
	// and stops talking to it, so the halves never merge again
	// (hashicorp/memberlist#222). It also retries seeds that were down
	// when Join was first called. DefaultConfig sets
	// DefaultRejoinInterval; zero disables it.
	RejoinInterval time.Duration

	// DeadMemberRetention is how long Members keeps reporting a member
	// that failed or left. Zero means DefaultDeadMemberRetention.
	DeadMemberRetention time.Duration

	// Events, if set, receives membership changes about other members
	// (not about this one). It is called from a single goroutine, never
	// concurrently, in the order the changes happened; the Event is a
	// copy the callback may keep. It may call Members, Local, Owner and
	// SetMeta, but must not call Leave or Shutdown (they wait for the
	// callback to return). Events queue in a buffer of EventBuffer; when
	// the callback falls that far behind, further events are dropped and
	// counted (see Membership.DroppedEvents) — Members always has the
	// current view.
	Events func(Event)
	// EventBuffer is the event queue's capacity. Zero means
	// DefaultEventBuffer.
	EventBuffer int

	// Logger receives diagnostics, memberlist's included (at debug
	// level). Nil discards them.
	Logger *slog.Logger

	// Filter, if set, is consulted for every packet sent or received and
	// every stream dialled: it gets the peer's host:port and returns false
	// to drop the traffic as a lossy network would. It exists to simulate
	// partitions in tests; it must be fast and safe for concurrent use.
	// Inbound streams are not filtered (their source port says nothing
	// about the peer), so a partition needs the filter on both sides.
	Filter func(addr string) bool

	// tweak, set by tests, adjusts the memberlist configuration last.
	tweak func(*memberlist.Config)
}

// DefaultConfig returns a Config with the LAN profile and the periodic
// rejoin enabled; callers set Name, Mux and whatever else they need.
func DefaultConfig() Config {
	return Config{
		Profile:        ProfileLAN,
		RejoinInterval: DefaultRejoinInterval,
	}
}

// Validate reports the first problem with c, wrapped in ErrInvalidConfig,
// naming the field and the fix.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.Name == "":
		return bad("Name is empty; set it to this member's unique identifier")
	case len(c.Name) > MaxNameLen:
		return bad("Name is %d bytes; use at most %d", len(c.Name), MaxNameLen)
	case !utf8.ValidString(c.Name):
		return bad("Name %q is not valid UTF-8", c.Name)
	case c.Mux == nil:
		return bad("Mux is nil; pass the peer's transport.Mux (memberlist streams share its port)")
	case c.Port < 0 || c.Port > 65535:
		return bad("Port %d is out of range; use 1-65535, or 0 for the Mux's port", c.Port)
	case c.AdvertisePort < 0 || c.AdvertisePort > 65535:
		return bad("AdvertisePort %d is out of range; use 1-65535, or 0 for Port", c.AdvertisePort)
	case c.BindAddr != "" && net.ParseIP(c.BindAddr) == nil:
		return bad("BindAddr %q is not an IP address", c.BindAddr)
	case len(c.Meta) > MaxMetaSize:
		return bad("Meta is %d bytes; the limit is %d (MaxMetaSize)", len(c.Meta), MaxMetaSize)
	case len(c.ClusterName) > memberlist.LabelMaxSize:
		return bad("ClusterName is %d bytes; use at most %d", len(c.ClusterName), memberlist.LabelMaxSize)
	case c.ProbeInterval < 0, c.ProbeTimeout < 0, c.GossipInterval < 0, c.PushPullInterval < 0:
		return bad("ProbeInterval, ProbeTimeout, GossipInterval and PushPullInterval must not be negative (0 keeps the profile's value)")
	case c.SuspicionMult < 0, c.RetransmitMult < 0:
		return bad("SuspicionMult and RetransmitMult must not be negative (0 keeps the profile's value)")
	case c.RejoinInterval < 0:
		return bad("RejoinInterval %v is negative; use 0 to disable the periodic rejoin", c.RejoinInterval)
	case c.DeadMemberRetention < 0:
		return bad("DeadMemberRetention %v is negative; use 0 for the default", c.DeadMemberRetention)
	case c.EventBuffer < 0:
		return bad("EventBuffer %d is negative; use 0 for the default", c.EventBuffer)
	case c.Authorize != nil && c.TLS == nil:
		return bad("Authorize is set without TLS; it checks peer certificates, so set TLS too")
	}
	for i, k := range c.GossipKeys {
		if err := memberlist.ValidateKey(k); err != nil {
			return bad("GossipKeys[%d] is %d bytes; use 16, 24 or 32", i, len(k))
		}
	}
	if _, err := baseConfig(c.Profile); err != nil {
		return err
	}
	mc, _ := c.memberlistConfig()
	if mc.ProbeTimeout >= mc.ProbeInterval {
		return bad("ProbeTimeout %v must be shorter than ProbeInterval %v", mc.ProbeTimeout, mc.ProbeInterval)
	}
	return nil
}

// baseConfig returns memberlist's preset for a profile name.
func baseConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "", ProfileLAN:
		return memberlist.DefaultLANConfig(), nil
	case ProfileLocal:
		mc := memberlist.DefaultLocalConfig()
		mc.RetransmitMult = memberlist.DefaultLANConfig().RetransmitMult
		return mc, nil
	case ProfileWAN:
		return memberlist.DefaultWANConfig(), nil
	}
	return nil, fmt.Errorf("%w: Profile %q is unknown; use %q, %q or %q",
		ErrInvalidConfig, profile, ProfileLAN, ProfileLocal, ProfileWAN)
}

// memberlistConfig returns the profile's memberlist configuration with c's
// overrides applied. The caller fills in the transport, addresses,
// delegates and logger.
func (c *Config) memberlistConfig() (*memberlist.Config, error) {
	mc, err := baseConfig(c.Profile)
	if err != nil {
		return nil, err
	}
	mc.Name = c.Name
	mc.Label = c.ClusterName
	if c.ProbeInterval > 0 {
		mc.ProbeInterval = c.ProbeInterval
	}
	if c.ProbeTimeout > 0 {
		mc.ProbeTimeout = c.ProbeTimeout
	}
	if c.SuspicionMult > 0 {
		mc.SuspicionMult = c.SuspicionMult
	}
	if c.GossipInterval > 0 {
		mc.GossipInterval = c.GossipInterval
	}
	if c.PushPullInterval > 0 {
		mc.PushPullInterval = c.PushPullInterval
	}
	if c.RetransmitMult > 0 {
		mc.RetransmitMult = c.RetransmitMult
	}
	// Compression saves little on a LAN and would make the observer in
	// wire.go decompress every packet it looks at.
	mc.EnableCompression = false
	if len(c.GossipKeys) > 0 {
		keys := make([][]byte, len(c.GossipKeys))
		for i, k := range c.GossipKeys {
			keys[i] = slices.Clone(k)
		}
		kr, err := memberlist.NewKeyring(keys[1:], keys[0])
		if err != nil {
			return nil, fmt.Errorf("%w: GossipKeys: %v", ErrInvalidConfig, err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	if c.tweak != nil {
		c.tweak(mc)
	}
	return mc, nil
}

// SuspicionTimeout returns memberlist's suspicion timeout bounds for a
// cluster of n members under this Config: a suspected member is declared
// dead after lo when enough other members confirm the suspicion, and
// after hi at the latest.
func (c *Config) SuspicionTimeout(n int) (lo, hi time.Duration) {
	mc, err := c.memberlistConfig()
	if err != nil {
		return 0, 0
	}
	return suspicionTimeout(mc, n)
}

// suspicionTimeout is memberlist's suspicion timeout formula for a cluster
// of n members under mc.
func suspicionTimeout(mc *memberlist.Config, n int) (lo, hi time.Duration) {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	lo = time.Duration(float64(mc.SuspicionMult) * scale * float64(mc.ProbeInterval))
	return lo, time.Duration(mc.SuspicionMaxTimeoutMult) * lo
}

// hostPort joins a host and port.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
