package config

import (
	"cmp"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"time"
)

// field is one field of a config struct T (Config, PeerConfig, TLSConfig or
// HealthCheckConfig), declared once: the tables below drive the decoder
// (JSON names, value types, unknown-key hints), the defaults (WithDefaults),
// validation (Validate), the environment variables and flags (Fields,
// LoadLayers: names and text syntax, from the field's Go type) and secret
// redaction (Redacted). TestFieldTables checks every table against its
// struct: one row per struct field, JSON names equal to the json tags, and
// at pointing at the named field.
type field[T any] struct {
	// name is the JSON name; "" for a field that is not read from JSON
	// (Listener, Logger, Registerer, Extra).
	name string
	// goName is the struct field's name.
	goName string
	// at returns a pointer to the field in *t; its type selects how the
	// value is decoded, written as text and redacted.
	at func(t *T) any
	// port: an int that is range-checked like a port when decoded (a
	// number too large for an int is "out of range (1-65535)").
	port bool
	// zeroDefault, for a duration, is the default named when an explicit
	// zero is refused.
	zeroDefault time.Duration
	// secret: the value must not be shown (see Config.Redacted).
	secret bool
	// fill sets the default of the field when it is zero (WithDefaults);
	// for one of the objects of this package (a pointer to TLSConfig or
	// HealthCheckConfig), when it is set: the defaults of its fields.
	fill func(t *T)
	// check appends the problems of the field (Validate).
	check func(c T, v *validation)
}

// topFields are the fields of Config, in the order of the file format (the
// order of Fields and of validation problems), and topNames their
// JSON names. They are set by init, since checkExtra and the decoder refer
// back to them.
var (
	topFields []field[Config]
	topNames  []string
)

func init() {
	topFields = topFieldTable()
	topNames = names(topFields)
}

// topFieldTable returns the fields of Config: see topFields.
func topFieldTable() []field[Config] {
	return []field[Config]{
		{name: "identifier", goName: "Identifier", at: func(c *Config) any { return &c.Identifier }, check: checkIdentifier},
		{name: "listen_host", goName: "ListenHost", at: func(c *Config) any { return &c.ListenHost }, check: checkListenHost,
			fill: func(c *Config) { c.ListenHost = c.listenHost() }},
		{name: "listen_port", goName: "ListenPort", at: func(c *Config) any { return &c.ListenPort }, port: true, check: checkListenPort,
			fill: func(c *Config) { c.ListenPort = listenerPort(c.Listener) }},
		{name: "advertise_host", goName: "AdvertiseHost", at: func(c *Config) any { return &c.AdvertiseHost }, check: checkAdvertiseHost,
			fill: func(c *Config) {
				if !unspecified(c.ListenHost) {
					c.AdvertiseHost = c.ListenHost
				}
			}},
		{name: "metadata", goName: "Metadata", at: func(c *Config) any { return &c.Metadata }, check: checkMetadata,
			fill: func(c *Config) {
				if c.Identifier == "" {
					return
				}
				for _, p := range c.Peers {
					if p.Identifier == c.Identifier && p.Metadata != nil {
						c.Metadata = cloneMap(p.Metadata)
						return
					}
				}
			}},
		{name: "peers", goName: "Peers", at: func(c *Config) any { return &c.Peers }, check: checkPeers},
		{name: "data_dir", goName: "DataDir", at: func(c *Config) any { return &c.DataDir }, check: checkDataDir,
			fill: func(c *Config) {
				if c.Identifier == "" {
					return
				}
				if dir, err := defaultDataDir(c.Identifier); err == nil {
					c.DataDir = dir
				}
			}},
		{name: "heartbeat_interval", goName: "HeartbeatInterval", at: func(c *Config) any { return &c.HeartbeatInterval },
			zeroDefault: DefaultHeartbeatInterval, check: checkHeartbeat,
			fill: func(c *Config) { c.HeartbeatInterval = Duration(DefaultHeartbeatInterval) }},
		{name: "election_timeout", goName: "ElectionTimeout", at: func(c *Config) any { return &c.ElectionTimeout },
			zeroDefault: DefaultElectionTimeout, check: checkElection,
			fill: func(c *Config) { c.ElectionTimeout = Duration(DefaultElectionTimeout) }},
		{name: "cluster_name", goName: "ClusterName", at: func(c *Config) any { return &c.ClusterName }, check: checkClusterName},
		{name: "api_token", goName: "APIToken", at: func(c *Config) any { return &c.APIToken }, secret: true},
		{name: "mode", goName: "Mode", at: func(c *Config) any { return &c.Mode }, check: checkMode,
			fill: func(c *Config) { c.Mode = ModeLeader }},
		{name: "voter", goName: "Voter", at: func(c *Config) any { return &c.Voter }},
		{name: "leave_on_terminate", goName: "LeaveOnTerminate", at: func(c *Config) any { return &c.LeaveOnTerminate }},
		{name: "dead_member_timeout", goName: "DeadMemberTimeout", at: func(c *Config) any { return &c.DeadMemberTimeout }, check: checkDeadMemberTimeout},
		{name: "min_voters", goName: "MinVoters", at: func(c *Config) any { return &c.MinVoters }, port: true, check: checkMinVoters,
			fill: func(c *Config) { c.MinVoters = DefaultMinVoters }},
		{name: "gossip_profile", goName: "GossipProfile", at: func(c *Config) any { return &c.GossipProfile }, check: checkGossipProfile,
			fill: func(c *Config) { c.GossipProfile = GossipLAN }},
		// The four security fields are checked together (they depend on each
		// other), with the tls row.
		{name: "tls", goName: "TLS", at: func(c *Config) any { return &c.TLS }, check: checkSecurity},
		{name: "cluster_key", goName: "ClusterKey", at: func(c *Config) any { return &c.ClusterKey }, secret: true},
		{name: "gossip_key", goName: "GossipKey", at: func(c *Config) any { return &c.GossipKey }, secret: true},
		{name: "extra_gossip_keys", goName: "ExtraGossipKeys", at: func(c *Config) any { return &c.ExtraGossipKeys }, secret: true},
		{name: "api_client_certs", goName: "APIClientCerts", at: func(c *Config) any { return &c.APIClientCerts }, check: checkAPIClientCerts},
		{name: "api_protect_reads", goName: "APIProtectReads", at: func(c *Config) any { return &c.APIProtectReads }},
		{name: "max_conns_per_ip", goName: "MaxConnsPerIP", at: func(c *Config) any { return &c.MaxConnsPerIP }},
		{name: "kv_quota_bytes", goName: "KVQuotaBytes", at: func(c *Config) any { return &c.KVQuotaBytes }, check: checkKVQuota},
		{name: "health_check", goName: "HealthCheck", at: func(c *Config) any { return &c.HealthCheck }, check: checkHealthCheck,
			fill: func(c *Config) {
				if c.HealthCheck != nil && c.HealthCheck.HTTP != "" {
					fillDefaults(c.HealthCheck, healthFields)
				}
			}},
		{goName: "Listener", at: func(c *Config) any { return &c.Listener }},
		{goName: "Logger", at: func(c *Config) any { return &c.Logger }, fill: func(c *Config) { c.Logger = slog.Default() }},
		{goName: "Registerer", at: func(c *Config) any { return &c.Registerer }},
		{goName: "Extra", at: func(c *Config) any { return &c.Extra }, check: checkExtra},
	}
}

// peerFields are the fields of a peers entry (PeerConfig).
var peerFields = []field[PeerConfig]{
	{name: "host", goName: "Host", at: func(p *PeerConfig) any { return &p.Host }},
	{name: "port", goName: "Port", at: func(p *PeerConfig) any { return &p.Port }, port: true},
	{name: "identifier", goName: "Identifier", at: func(p *PeerConfig) any { return &p.Identifier }},
	{name: "metadata", goName: "Metadata", at: func(p *PeerConfig) any { return &p.Metadata }},
}

// tlsFields are the fields of the "tls" object (TLSConfig).
var tlsFields = []field[TLSConfig]{
	{name: "ca_file", goName: "CAFile", at: func(t *TLSConfig) any { return &t.CAFile }},
	{name: "cert_file", goName: "CertFile", at: func(t *TLSConfig) any { return &t.CertFile }},
	{name: "key_file", goName: "KeyFile", at: func(t *TLSConfig) any { return &t.KeyFile }},
}

// healthFields are the fields of the "health_check" object
// (HealthCheckConfig); fill gives the defaults of an "http" check.
var healthFields = []field[HealthCheckConfig]{
	{name: "http", goName: "HTTP", at: func(h *HealthCheckConfig) any { return &h.HTTP }},
	{name: "interval", goName: "Interval", at: func(h *HealthCheckConfig) any { return &h.Interval }, zeroDefault: DefaultHealthInterval,
		fill: func(h *HealthCheckConfig) { h.Interval = Duration(DefaultHealthInterval) }},
	{name: "timeout", goName: "Timeout", at: func(h *HealthCheckConfig) any { return &h.Timeout }, zeroDefault: DefaultHealthTimeout,
		fill: func(h *HealthCheckConfig) {
			h.Timeout = Duration(min(DefaultHealthTimeout, time.Duration(cmp.Or(h.Interval, Duration(DefaultHealthInterval)))))
		}},
	{name: "failures", goName: "Failures", at: func(h *HealthCheckConfig) any { return &h.Failures },
		fill: func(h *HealthCheckConfig) { h.Failures = DefaultHealthFailures }},
	{name: "ttl", goName: "TTL", at: func(h *HealthCheckConfig) any { return &h.TTL }},
}

// fillDefaults sets every zero field of *t that has a default, and fills
// the set objects, in table order (a later default may depend on an
// earlier one).
func fillDefaults[T any](t *T, fields []field[T]) {
	for _, f := range fields {
		if f.fill == nil {
			continue
		}
		v := reflect.ValueOf(f.at(t)).Elem()
		isObject := v.Kind() == reflect.Pointer && v.Type().Elem().PkgPath() == reflect.TypeFor[Config]().PkgPath()
		if v.IsZero() != isObject {
			f.fill(t)
		}
	}
}

// names returns the JSON names of fields, in order.
func names[T any](fields []field[T]) []string {
	var out []string
	for _, f := range fields {
		if f.name != "" {
			out = append(out, f.name)
		}
	}
	return out
}

// topField returns the row of Config's field with JSON name name.
func topField(name string) (field[Config], bool) {
	if name == "" {
		return field[Config]{}, false
	}
	i := slices.IndexFunc(topFields, func(f field[Config]) bool { return f.name == name })
	if i < 0 {
		return field[Config]{}, false
	}
	return topFields[i], true
}

// copyField sets the field f of *dst to its value in *src.
func copyField[T any](f field[T], dst, src *T) {
	reflect.ValueOf(f.at(dst)).Elem().Set(reflect.ValueOf(f.at(src)).Elem())
}

// decodeValue decodes the member m into the field p points to (a pointer
// from field.at), by the field's Go type.
func (d *decoder) decodeValue(p any, port bool, zeroDefault time.Duration, m member, path string) {
	switch p := p.(type) {
	case *string:
		*p = d.str(m, path)
	case *int:
		if port {
			*p = d.port(m, path)
		} else {
			*p = d.int(m, path)
		}
	case *int64:
		*p = d.int64(m, path)
	case *Duration:
		*p = d.duration(m, path, zeroDefault)
	case **bool:
		*p = d.boolPtr(m, path)
	case *bool:
		if b := d.boolPtr(m, path); b != nil {
			*p = *b
		}
	case *map[string]any:
		*p = d.object(m, path)
	case *[]string:
		*p = d.strings(m, path)
	case *[]PeerConfig:
		*p = d.peers(m, path)
	case **TLSConfig:
		*p = decodeObject(d, m, path, tlsObject)
	case **HealthCheckConfig:
		*p = decodeObject(d, m, path, healthObject)
	default:
		panic(fmt.Sprintf("config: field %s of type %T has no decoder", path, p))
	}
}

// object describes a JSON object of QCluster's own, whose every key must be
// one of its fields.
type object[T any] struct {
	fields []field[T]
	// example completes "expected an object such as ...".
	example string
	// takes completes "unknown field; ..." when the key looks like no field.
	takes string
	// alias maps other names people use (normalized) to a field, or "".
	alias func(string) string
}

var (
	tlsObject = object[TLSConfig]{tlsFields,
		`{"ca_file": "ca.pem", "cert_file": "a.pem", "key_file": "a-key.pem"}`,
		`"tls" takes "ca_file", "cert_file" and "key_file"`, nil}
	healthObject = object[HealthCheckConfig]{healthFields,
		`{"http": "http://127.0.0.1:8001/healthz"} or {"ttl": "3s"}`,
		`"health_check" takes "http", "interval", "timeout" and "failures", or "ttl"`, nil}
	peerObject = object[PeerConfig]{peerFields,
		`{"host": "localhost", "port": 7002, "identifier": "server_b"}`,
		`a peer entry takes only "host", "port", "identifier" and "metadata" (put the peer's own data in its metadata)`, peerAlias}
)

// decodeObject decodes the optional object m (null: nil).
func decodeObject[T any](d *decoder, m member, path string, o object[T]) *T {
	if kindOf(m.val) == "null" {
		return nil
	}
	t, ok := o.decode(d, m.val, m.valOff, path)
	if !ok {
		return nil
	}
	return &t
}

// decode decodes raw, which starts at offset off of d.data; ok is false
// when raw is not an object at all.
func (o object[T]) decode(d *decoder, raw []byte, off int, path string) (t T, ok bool) {
	if kindOf(raw) != "object" {
		d.add(off, path, `%s: expected an object such as %s, got %s`, path, o.example, describe(raw))
		return t, false
	}
	members, ok := d.members(raw, off, path)
	if !ok {
		return t, false
	}
	for _, m := range members {
		fpath := jsonPath(path, m.key)
		d.pos[fpath] = m.valOff
		i := slices.IndexFunc(o.fields, func(f field[T]) bool { return f.name == m.key && f.name != "" })
		if i >= 0 {
			f := o.fields[i]
			d.decodeValue(f.at(&t), f.port, f.zeroDefault, m, fpath)
			continue
		}
		if s := suggest(m.key, names(o.fields), o.alias); s != "" {
			d.add(m.keyOff, fpath, "%s: unknown field; did you mean %q?", fpath, s)
		} else {
			d.add(m.keyOff, fpath, "%s: unknown field; %s", fpath, o.takes)
		}
	}
	return t, true
}

// peerAlias maps other names people use for a peer entry's keys
// (normalized as by norm) to the right one, or returns "".
func peerAlias(norm string) string {
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
