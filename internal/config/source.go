package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Config layers. A peer run as a process (qcluster agent) takes its config
// from three places, each overriding the one before: the JSON config file,
// environment variables QCLUSTER_<FIELD>, and command-line flags
// --<field>. Every field of the file can be set each way; the names come
// from the one list of fields the file decoder uses, so they cannot drift:
//
//	"advertise_host" in the file, QCLUSTER_ADVERTISE_HOST, --advertise-host
//
// Values given as text (environment and flags) are read by the field's
// type: strings and durations as they are ("150ms"); numbers and booleans
// (true, false, 1, 0) as such; metadata and tls as JSON objects; peers as a
// compact list "b@host:7002,c@host:7003" (identifier@host:port, IPv6 hosts
// in brackets) or as the JSON array of the file; extra_gossip_keys as a
// comma-separated list or a JSON array. Problems name where the value came
// from: the file's line and column, the environment variable, or the flag.

// EnvPrefix starts the name of every environment variable that sets a
// config field: QCLUSTER_ and the field's JSON name in upper case.
const EnvPrefix = "QCLUSTER_"

// Field describes one field of the config file and the names that
// set it from outside the file.
type Field struct {
	// Name is the field's JSON name in the config file, such as
	// "advertise_host".
	Name string
	// Env is the environment variable that sets it, such as
	// "QCLUSTER_ADVERTISE_HOST".
	Env string
	// Flag is the command-line flag that sets it, without dashes, such as
	// "advertise-host".
	Flag string
	// Bool reports a true/false field (a flag that needs no value).
	Bool bool
	// Secret reports a field that must not be shown (keys, tokens): see
	// Config.Redacted.
	Secret bool
	// Syntax says how to write its value as text, for help.
	Syntax string
}

// Fields returns every field of the config file, in the order of the
// file format.
func Fields() []Field {
	var out []Field
	var zero Config
	for _, f := range topFields {
		if f.name == "" {
			continue
		}
		p := f.at(&zero)
		out = append(out, Field{
			Name:   f.name,
			Env:    EnvPrefix + strings.ToUpper(f.name),
			Flag:   strings.ReplaceAll(f.name, "_", "-"),
			Bool:   isBool(p),
			Secret: f.secret,
			Syntax: textSyntax(p),
		})
	}
	return out
}

// Override is one config field set outside the config file.
type Override struct {
	// Field is the field's JSON name, such as "advertise_host".
	Field string
	// Value is the value as text (see Fields for the syntax).
	Value string
	// Source says where it came from, for messages, such as
	// "env QCLUSTER_ADVERTISE_HOST" or "flag --advertise-host".
	Source string
}

// EnvOverrides returns the overrides that the environment environ
// (os.Environ's form, "KEY=value") sets: one for every QCLUSTER_<FIELD>
// variable, in the order of Fields. A variable whose name looks like
// a misspelt field (QCLUSTER_IDENTIFER) is an error that names the right
// one; other QCLUSTER_ variables (QCLUSTER_ADDR and QCLUSTER_TOKEN of the
// client commands, ...) are not config fields and are left alone.
func EnvOverrides(environ []string) ([]Override, error) {
	set := map[string]string{}
	var ps problems
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		name := strings.ToLower(strings.TrimPrefix(k, EnvPrefix))
		if slices.Contains(topNames, name) {
			set[name] = v
			continue
		}
		if slices.Contains(clientEnv, name) {
			continue
		}
		if s := suggest(name, topNames, nil); s != "" {
			ps.add("", "env %s: not a config field; did you mean %s%s?", k, EnvPrefix, strings.ToUpper(s))
		}
	}
	if len(ps) > 0 {
		return nil, &configError{problems: ps}
	}
	var out []Override
	for _, f := range Fields() {
		if v, ok := set[f.Name]; ok {
			out = append(out, Override{Field: f.Name, Value: v, Source: "env " + f.Env})
		}
	}
	return out, nil
}

// clientEnv are the QCLUSTER_ variables of the client commands (lower
// case, without the prefix) that are not config fields.
var clientEnv = []string{"addr", "token", "cacert", "cert", "key"}

// LoadLayers reads the JSON config file at path (none when path is
// "") and applies overrides to it in order, a later one winning over an
// earlier one for the same field (give the environment's first, then the
// flags'), then fills the defaults and validates, like Load. Every
// problem names its source: the file's line and column, or the override's
// Source.
func LoadLayers(path string, overrides ...Override) (Config, error) {
	data := []byte("{}")
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Config{}, fmt.Errorf("qcluster: reading config: %w", err)
		}
	}
	d := decoder{data: bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), pos: map[string]int{}}
	c := d.decode()
	if len(d.problems) > 0 {
		return Config{}, &configError{source: path, problems: d.problems}
	}
	from := map[string]string{} // field -> the Source of the override that set it
	var ps []Problem
	for _, o := range overrides {
		raw, msg := textValue(o.Field, o.Value)
		if msg != "" {
			ps = append(ps, Problem{At: o.Field, Text: fmt.Sprintf("%s: %s (%s)", o.Field, msg, o.Source)})
			continue
		}
		od := decoder{data: []byte(`{"` + o.Field + `":` + string(raw) + `}`), pos: map[string]int{}}
		oc := od.decode()
		if len(od.problems) > 0 {
			for _, p := range od.problems {
				ps = append(ps, Problem{At: p.At, Text: p.Text + " (" + o.Source + ")"})
			}
			continue
		}
		f, _ := topField(o.Field) // textValue accepted the name
		copyField(f, &c, &oc)
		from[o.Field] = o.Source
	}
	if len(ps) > 0 {
		return Config{}, &configError{problems: ps}
	}
	c = c.WithDefaults()
	vps := validate(c, NodeID)
	if len(vps) == 0 {
		return c, nil
	}
	source := ""
	for i := range vps {
		top := topOf(vps[i].At)
		if src, ok := from[top]; ok {
			vps[i].Text += " (" + src + ")"
			continue
		}
		if path != "" {
			source = path
		}
		if off, ok := d.pos[vps[i].At]; ok {
			vps[i].Line, vps[i].Col = lineCol(d.data, off)
		}
	}
	return Config{}, &configError{source: source, problems: vps}
}

// Redacted returns a copy of c with every secret field (Field.Secret:
// api_token, cluster_key, gossip_key, extra_gossip_keys) that is set
// replaced by "REDACTED", for showing a config.
func (c Config) Redacted() Config {
	c = clone(c)
	for _, f := range topFields {
		if !f.secret {
			continue
		}
		switch p := f.at(&c).(type) {
		case *string:
			if *p != "" {
				*p = redactedText
			}
		case *[]string:
			for i := range *p {
				(*p)[i] = redactedText
			}
		default:
			panic(fmt.Sprintf("config: secret field %s of type %T", f.name, p))
		}
	}
	return c
}

// redactedText replaces a secret in Config.Redacted.
const redactedText = "REDACTED"

// topOf returns the top-level field of a JSON path: "peers" for
// "peers[1].port".
func topOf(path string) string {
	if i := strings.IndexAny(path, "[."); i >= 0 {
		return path[:i]
	}
	return path
}

// isBool reports whether the field p points to is a true/false one.
func isBool(p any) bool {
	switch p.(type) {
	case *bool, **bool:
		return true
	}
	return false
}

// textSyntax says how to write the value of the field p points to as text.
func textSyntax(p any) string {
	switch p.(type) {
	case *Duration:
		return "a duration such as 150ms"
	case *[]PeerConfig:
		return "identifier@host:port,... or a JSON array"
	case *bool, **bool:
		return "true or false"
	case *int, *int64:
		return "a number"
	case *map[string]any, **TLSConfig, **HealthCheckConfig:
		return "a JSON object"
	case *[]string:
		return "a comma-separated list or a JSON array"
	}
	return "text"
}

// textValue turns the text value of field name into the JSON the file
// would hold, for the decoder to read (and report on) as if it were there.
// msg explains text that cannot be turned into JSON.
func textValue(name, text string) (raw []byte, msg string) {
	f, ok := topField(name)
	if !ok {
		return nil, "not a config field"
	}
	asString := func(s string) []byte { b, _ := json.Marshal(s); return b }
	switch f.at(&Config{}).(type) {
	case *string, *Duration:
		return asString(text), ""
	case *[]PeerConfig:
		if strings.HasPrefix(strings.TrimSpace(text), "[") {
			return []byte(text), ""
		}
		return compactPeers(text)
	case *bool, **bool:
		if b, err := strconv.ParseBool(strings.TrimSpace(text)); err == nil {
			return []byte(strconv.FormatBool(b)), ""
		}
		return asString(text), "" // the decoder says it must be true or false
	case *int, *int64:
		if _, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64); err == nil {
			return []byte(strings.TrimSpace(text)), ""
		}
		return asString(text), "" // the decoder says it must be a number
	case *[]string:
		if strings.HasPrefix(strings.TrimSpace(text), "[") {
			return []byte(text), ""
		}
		items := []string{}
		for _, s := range strings.Split(text, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		b, _ := json.Marshal(items)
		return b, ""
	}
	// Objects (metadata, tls, health_check): JSON.
	if !json.Valid([]byte(text)) {
		return nil, fmt.Sprintf("%s is not JSON; give a JSON object such as {\"zone\": \"a\"}", quote(text))
	}
	return []byte(text), ""
}

// compactPeers reads "b@host:7002,c@host:7003" into the JSON array of
// peers.
func compactPeers(text string) ([]byte, string) {
	peers := []map[string]any{}
	for _, e := range strings.Split(text, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		id, addr, ok := strings.Cut(e, "@")
		host, port, err := net.SplitHostPort(addr)
		if !ok || id == "" || err != nil {
			return nil, fmt.Sprintf("entry %s: give identifier@host:port, such as server_b@10.0.0.2:7002 (entries separated by commas)", quote(e))
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Sprintf("entry %s: port %s is not a number", quote(e), quote(port))
		}
		peers = append(peers, map[string]any{"identifier": id, "host": host, "port": n})
	}
	b, _ := json.Marshal(peers)
	return b, ""
}
