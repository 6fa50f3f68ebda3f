package config

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// problems collects validation problems.
type problems []Problem

// add records a problem about the field at path, reported at the position
// of the field at path at (when known).
func (ps *problems) add(at, format string, args ...any) {
	*ps = append(*ps, Problem{At: at, Text: fmt.Sprintf(format, args...)})
}

// validation collects the problems of one config.
type validation struct {
	ps     problems
	nodeID func(string) uint64 // NodeID, except in tests
}

// validate returns every problem with c, field by field in the order of
// topFields; nodeID is NodeID except in tests.
func validate(c Config, nodeID func(string) uint64) problems {
	v := &validation{nodeID: nodeID}
	for _, f := range topFields {
		if f.check != nil {
			f.check(c, v)
		}
	}
	return v.ps
}

// idOK reports whether c's identifier is usable (its checks passed).
func (c Config) idOK() bool { return c.Identifier != "" && NameProblem(c.Identifier, false) == "" }

// checkIdentifier checks identifier.
func checkIdentifier(c Config, v *validation) {
	if c.Identifier == "" {
		v.ps.add("identifier", `identifier: missing; give this peer a unique name such as "server_a"`)
	} else if msg := NameProblem(c.Identifier, false); msg != "" {
		v.ps.add("identifier", `identifier: %s %s; use a name without spaces or control characters, such as "server_a"`, quote(c.Identifier), msg)
	}
}

// checkListenHost checks listen_host.
func checkListenHost(c Config, v *validation) {
	if c.ListenHost != "" {
		if msg := HostProblem(c.ListenHost, "listen_port"); msg != "" {
			v.ps.add("listen_host", "listen_host: %s %s", quote(c.ListenHost), msg)
		}
	}
}

// checkListenPort checks listen_port.
func checkListenPort(c Config, v *validation) {
	lport := listenerPort(c.Listener)
	switch {
	case c.ListenPort == 0 && c.Listener == nil:
		hint := ""
		if _, ok := c.Extra["port"]; ok {
			hint = ` (there is a top-level "port"; did you mean "listen_port"?)`
		}
		v.ps.add("listen_port", "listen_port: missing; give the port this peer listens on, such as 7001%s", hint)
	case c.ListenPort < 0 || c.ListenPort > 65535:
		v.ps.add("listen_port", "listen_port: %d is out of range (1-65535)", c.ListenPort)
	case c.ListenPort != 0 && lport != 0 && lport != c.ListenPort:
		v.ps.add("listen_port", "listen_port: %d differs from the port of Listener (%d); set listen_port to 0 or to %d", c.ListenPort, lport, lport)
	}
}

// checkAdvertiseHost checks advertise_host, and that one is given when
// listen_host is all interfaces.
func checkAdvertiseHost(c Config, v *validation) {
	if c.AdvertiseHost != "" {
		if msg := HostProblem(c.AdvertiseHost, "listen_port"); msg != "" {
			if c.AdvertiseHost != c.ListenHost { // else reported for listen_host (WithDefaults copied it)
				v.ps.add("advertise_host", "advertise_host: %s %s", quote(c.AdvertiseHost), msg)
			}
		} else if unspecified(c.AdvertiseHost) {
			v.ps.add("advertise_host", "advertise_host: %s is not an address other peers can connect to; give this peer's reachable host name or IP address", quote(c.AdvertiseHost))
		}
	} else if unspecified(c.ListenHost) {
		v.ps.add("listen_host", "advertise_host: missing; listen_host %s listens on all interfaces, so give the host name or IP address other peers reach this peer at", quote(c.ListenHost))
	}
}

// checkMetadata checks metadata.
func checkMetadata(c Config, v *validation) {
	if c.Metadata != nil {
		if _, err := json.Marshal(c.Metadata); err != nil {
			v.ps.add("metadata", "metadata: cannot be encoded as JSON (%v); use strings, numbers, booleans, lists and objects", err)
		}
	}
}

// checkPeers checks peers: each entry, this peer's own entry, repeated
// identifiers and addresses, and collisions of the node IDs derived from
// all identifiers.
func checkPeers(c Config, v *validation) {
	ownPort := c.port()
	ownAdv, ownListen := "", ""
	if ownPort > 0 && ownPort <= 65535 && !unspecified(c.advertiseHost()) {
		ownAdv = addrKey(c.advertiseHost(), ownPort)
	}
	if ownPort > 0 && ownPort <= 65535 && !unspecified(c.listenHost()) {
		ownListen = addrKey(c.listenHost(), ownPort)
	}
	isOwn := func(key string) bool { return key != "" && (key == ownAdv || key == ownListen) }
	firstID := map[string]int{}
	firstAddr := map[string]int{}
	peerIDOK := make([]bool, len(c.Peers))
	for i, p := range c.Peers {
		path := fmt.Sprintf("peers[%d]", i)

		switch {
		case p.Identifier == "":
			v.ps.add(path+".identifier", "%s.identifier: missing; give the peer's own identifier (the name in its config), such as \"server_b\"", path)
		case NameProblem(p.Identifier, false) != "":
			v.ps.add(path+".identifier", "%s.identifier: %s %s; identifiers have no spaces or control characters", path, quote(p.Identifier), NameProblem(p.Identifier, false))
		default:
			peerIDOK[i] = true
		}

		hostOK := false
		switch {
		case p.Host == "":
			v.ps.add(path+".host", `%s.host: missing; give the host name or IP address the peer is reachable at, such as "localhost"`, path)
		case HostProblem(p.Host, path+".port") != "":
			v.ps.add(path+".host", "%s.host: %s %s", path, quote(p.Host), HostProblem(p.Host, path+".port"))
		case unspecified(p.Host):
			v.ps.add(path+".host", "%s.host: %s is not an address others can connect to; give the host name or IP address the peer is reachable at", path, quote(p.Host))
		default:
			hostOK = true
		}

		portOK := false
		switch {
		case p.Port == 0:
			v.ps.add(path+".port", "%s.port: missing; give the port the peer listens on (its listen_port), such as 7002", path)
		case p.Port < 0 || p.Port > 65535:
			v.ps.add(path+".port", "%s.port: %d is out of range (1-65535)", path, p.Port)
		default:
			portOK = true
		}

		if p.Metadata != nil {
			if _, err := json.Marshal(p.Metadata); err != nil {
				v.ps.add(path+".metadata", "%s.metadata: cannot be encoded as JSON (%v); use strings, numbers, booleans, lists and objects", path, err)
			}
		}

		key := ""
		if hostOK && portOK {
			key = addrKey(p.Host, p.Port)
		}
		if peerIDOK[i] {
			if j, dup := firstID[p.Identifier]; dup {
				v.ps.add(path+".identifier", "%s.identifier: %s is also the identifier of peers[%d]; every peer needs a unique identifier", path, quote(p.Identifier), j)
				continue
			}
			firstID[p.Identifier] = i
		}
		if c.idOK() && peerIDOK[i] && p.Identifier == c.Identifier {
			// This peer's own entry: fine (and skipped) if the address is its own.
			if key != "" && ownPort > 0 && !isOwn(key) {
				v.ps.add(path, "%s: identifier %s is this peer's own, but the entry's address %s is not this peer's (%s); fix the entry or remove it",
					path, quote(p.Identifier), p.Addr(), c.showAddr())
			}
			if c.Metadata != nil && p.Metadata != nil && !reflect.DeepEqual(c.Metadata, p.Metadata) {
				v.ps.add(path+".metadata", "%s.metadata: differs from this peer's top-level metadata, but both describe this peer; keep one of them", path)
			}
			continue
		}
		if key == "" {
			continue
		}
		if isOwn(key) {
			v.ps.add(path, "%s: address %s is this peer's own (%s); give %s its own address, or fix listen_host/listen_port",
				path, p.Addr(), c.showAddr(), showPeer(p))
			continue
		}
		if j, dup := firstAddr[key]; dup {
			v.ps.add(path, "%s: address %s is also used by peers[%d] (%s); each peer needs its own host:port",
				path, p.Addr(), j, showPeer(c.Peers[j]))
			continue
		}
		firstAddr[key] = i
	}

	// Raft node IDs, derived from identifiers, must not collide.
	byNodeID := map[uint64]string{}
	checkID := func(id, at string) {
		h := v.nodeID(id)
		if other, ok := byNodeID[h]; ok && other != id {
			v.ps.add(at, "%s: identifiers %s and %s hash to the same node ID (%#x); rename one of them", at, quote(other), quote(id), h)
			return
		}
		byNodeID[h] = id
	}
	if c.idOK() {
		checkID(c.Identifier, "identifier")
	}
	for i, p := range c.Peers {
		if peerIDOK[i] {
			checkID(p.Identifier, fmt.Sprintf("peers[%d].identifier", i))
		}
	}
}

// checkDataDir checks that data_dir has a value or a default (the default
// needs a home directory).
func checkDataDir(c Config, v *validation) {
	if c.DataDir == "" && c.idOK() && c.Mode != ModeMasterless {
		if _, err := defaultDataDir(c.Identifier); err != nil {
			v.ps.add("data_dir", "data_dir: missing, and there is no default (%v); set it to a directory that survives reboots, such as %s",
				err, quote("/var/lib/qcluster/"+dirName(c.Identifier)))
		}
	}
}

// heartbeat returns the effective heartbeat_interval (zero means the
// default), a note for messages when it is the default, and whether it is
// valid.
func (c Config) heartbeat() (hb time.Duration, note string, ok bool) {
	hb = time.Duration(c.HeartbeatInterval)
	if hb == 0 {
		hb, note = DefaultHeartbeatInterval, ", the default"
	}
	return hb, note, hb >= minHeartbeat
}

// checkHeartbeat checks heartbeat_interval.
func checkHeartbeat(c Config, v *validation) {
	hb, _, _ := c.heartbeat()
	switch {
	case hb < 0:
		v.ps.add("heartbeat_interval", "heartbeat_interval: %v is negative; give a positive interval such as \"50ms\"", hb)
	case hb < minHeartbeat:
		v.ps.add("heartbeat_interval", "heartbeat_interval: %v is below the 1ms minimum; give an interval such as \"50ms\"", hb)
	}
}

// checkElection checks election_timeout, and its ratio to
// heartbeat_interval.
func checkElection(c Config, v *validation) {
	hb, hbNote, hbOK := c.heartbeat()
	et, etNote := time.Duration(c.ElectionTimeout), ""
	if et == 0 {
		et, etNote = DefaultElectionTimeout, ", the default"
	}
	switch {
	case et < 0:
		v.ps.add("election_timeout", "election_timeout: %v is negative; give a positive timeout such as \"150ms\"", et)
	case et > maxElection:
		v.ps.add("election_timeout", "election_timeout: %v is above the %v maximum (fail-over would take that long); give a timeout such as \"150ms\" or \"1s\"", et, maxElection)
	case hbOK && et < electionFactor*hb:
		v.ps.add("election_timeout", "election_timeout (%v%s) must be at least %dx heartbeat_interval (%v%s) so a leader's heartbeats arrive well within it; raise election_timeout to %v or more, or lower heartbeat_interval",
			et, etNote, electionFactor, hb, hbNote, electionFactor*hb)
	}
}

// checkClusterName checks cluster_name.
func checkClusterName(c Config, v *validation) {
	if c.ClusterName != "" {
		if msg := NameProblem(c.ClusterName, true); msg != "" {
			v.ps.add("cluster_name", "cluster_name: %s %s; give a short printable name such as \"prod-eu\"", quote(c.ClusterName), msg)
		}
	}
}

// checkMode checks mode.
func checkMode(c Config, v *validation) {
	switch c.Mode {
	case "", ModeLeader, ModeMasterless:
	default:
		v.ps.add("mode", "mode: %s is not a mode; use %q (elect a leader, the default) or %q (no leader)", quote(c.Mode), ModeLeader, ModeMasterless)
	}
}

// checkDeadMemberTimeout checks dead_member_timeout.
func checkDeadMemberTimeout(c Config, v *validation) {
	if c.DeadMemberTimeout < 0 {
		v.ps.add("dead_member_timeout", "dead_member_timeout: %v is negative; give a duration such as \"10m\", or remove the field to never remove dead members", time.Duration(c.DeadMemberTimeout))
	}
}

// checkMinVoters checks min_voters.
func checkMinVoters(c Config, v *validation) {
	if c.MinVoters < 0 {
		v.ps.add("min_voters", "min_voters: %d is negative; give at least 1 (default %d)", c.MinVoters, DefaultMinVoters)
	}
}

// checkKVQuota checks kv_quota_bytes.
func checkKVQuota(c Config, v *validation) {
	if q := c.KVQuotaBytes; q != 0 && (q < MinKVQuotaBytes || q > MaxKVQuotaBytes) {
		v.ps.add("kv_quota_bytes", "kv_quota_bytes: %d is out of range (%d to %d bytes); remove the field for the default (%d, 64 MiB)",
			q, MinKVQuotaBytes, int64(MaxKVQuotaBytes), DefaultKVQuotaBytes)
	}
}

// checkGossipProfile checks gossip_profile.
func checkGossipProfile(c Config, v *validation) {
	switch c.GossipProfile {
	case "", GossipLAN, GossipLocal, GossipWAN:
	default:
		v.ps.add("gossip_profile", "gossip_profile: %s is not a profile; use %q (default), %q or %q", quote(c.GossipProfile), GossipLAN, GossipLocal, GossipWAN)
	}
}

// checkSecurity checks the security fields together: tls, cluster_key,
// gossip_key and extra_gossip_keys.
func checkSecurity(c Config, v *validation) {
	v.ps = append(v.ps, SecurityProblems(c.Identifier, c.ClusterName, c.TLS, c.ClusterKey, c.GossipKey, c.ExtraGossipKeys)...)
}

// checkAPIClientCerts checks api_client_certs.
func checkAPIClientCerts(c Config, v *validation) {
	switch c.APIClientCerts {
	case "", "required", "optional":
	default:
		v.ps.add("api_client_certs", `api_client_certs: %s is not a setting; use "required" (the default) or "optional"`, quote(c.APIClientCerts))
	}
}

// checkHealthCheck checks the "health_check" object.
func checkHealthCheck(c Config, v *validation) {
	healthCheckProblems(c.HealthCheck, &v.ps)
}

// checkExtra checks that Extra holds only application fields.
func checkExtra(c Config, v *validation) {
	for _, k := range slices.Sorted(maps.Keys(c.Extra)) {
		path := jsonPath("", k)
		switch {
		case slices.Contains(topNames, k):
			v.ps.add(path, "%s: is a QCluster field, but it is in Extra; set the Config field instead", path)
		case suggest(k, topNames, nil) != "":
			v.ps.add(path, "%s: unknown field; did you mean %q?", path, suggest(k, topNames, nil))
		case !json.Valid(c.Extra[k]):
			v.ps.add(path, "%s: the value in Extra is not valid JSON", path)
		}
	}
}

// NameProblem describes what is wrong with an identifier or cluster name
// ("contains whitespace", ...), or returns "". allowSpace permits plain
// spaces (cluster names).
func NameProblem(s string, allowSpace bool) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case len(s) > maxNameLen:
		return fmt.Sprintf("is %d bytes long, more than the %d allowed", len(s), maxNameLen)
	case !allowSpace && strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return "contains whitespace"
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "contains a control or non-printable character"
	}
	return ""
}

// HostProblem describes what is wrong with a host name or IP address
// (portField names the field the port belongs in), or returns "".
func HostProblem(host, portField string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	switch {
	case !utf8.ValidString(host):
		return "is not valid UTF-8"
	case strings.Contains(host, "://"):
		return `looks like a URL; give only the host name or IP address, such as "localhost"`
	case strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]"):
		return fmt.Sprintf("has brackets; write IPv6 addresses without them, such as %s", quote(strings.Trim(host, "[]")))
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		if _, err := strconv.Atoi(p); err == nil {
			return fmt.Sprintf("includes a port; write only %s here and put %s in %s", quote(h), p, portField)
		}
	}
	if len(host) > maxHostLen {
		return fmt.Sprintf("is %d bytes long, more than the %d a host name may have", len(host), maxHostLen)
	}
	if strings.IndexFunc(host, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '-' && r != '.' && r != '_'
	}) >= 0 || strings.Trim(host, ".") == "" {
		return `is not a valid host name or IP address; give one such as "localhost", "db1.example.com" or "10.0.0.5"`
	}
	return ""
}

// unspecified reports whether host is 0.0.0.0, :: or the like.
func unspecified(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// addrKey returns a canonical form of host:port for comparing addresses:
// host names lower-cased, IP addresses in canonical form, and "localhost",
// 127.0.0.1 and ::1 treated as one.
func addrKey(host string, port int) string {
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

func showPeer(p PeerConfig) string {
	if p.Identifier == "" {
		return "that peer"
	}
	return quote(p.Identifier)
}

// minHealthTTL is the shortest health_check.ttl (and interval) accepted.
const minHealthTTL = 100 * time.Millisecond

// healthCheckProblems validates the "health_check" object.
func healthCheckProblems(h *HealthCheckConfig, ps *problems) {
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
		ps.add("health_check.http", "health_check.http: %s is not an http(s) URL; give one such as \"http://127.0.0.1:8001/healthz\"", quote(h.HTTP))
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
