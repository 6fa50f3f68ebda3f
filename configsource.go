package qcluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"reflect"
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

// ConfigEnvPrefix starts the name of every environment variable that sets a
// config field: QCLUSTER_ and the field's JSON name in upper case.
const ConfigEnvPrefix = "QCLUSTER_"

// ConfigField describes one field of the config file and the names that
// set it from outside the file.
type ConfigField struct {
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

// ConfigFields returns every field of the config file, in the order of the
// file format.
func ConfigFields() []ConfigField {
	var out []ConfigField
	for _, name := range cfgTopFields() {
		sf, ok := cfgStructField(name)
		if !ok {
			panic("qcluster: config field " + name + " has no Config struct field")
		}
		out = append(out, ConfigField{
			Name:   name,
			Env:    ConfigEnvPrefix + strings.ToUpper(name),
			Flag:   strings.ReplaceAll(name, "_", "-"),
			Bool:   cfgIsBool(sf.Type),
			Secret: sf.Tag.Get("qcluster") == "secret",
			Syntax: cfgTextSyntax(sf.Type),
		})
	}
	return out
}

// ConfigOverride is one config field set outside the config file.
type ConfigOverride struct {
	// Field is the field's JSON name, such as "advertise_host".
	Field string
	// Value is the value as text (see ConfigFields for the syntax).
	Value string
	// Source says where it came from, for messages, such as
	// "env QCLUSTER_ADVERTISE_HOST" or "flag --advertise-host".
	Source string
}

// ConfigEnvOverrides returns the overrides that the environment environ
// (os.Environ's form, "KEY=value") sets: one for every QCLUSTER_<FIELD>
// variable, in the order of ConfigFields. A variable whose name looks like
// a misspelt field (QCLUSTER_IDENTIFER) is an error that names the right
// one; other QCLUSTER_ variables (QCLUSTER_ADDR and QCLUSTER_TOKEN of the
// client commands, ...) are not config fields and are left alone.
func ConfigEnvOverrides(environ []string) ([]ConfigOverride, error) {
	set := map[string]string{}
	var ps cfgProblems
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, ConfigEnvPrefix) {
			continue
		}
		name := strings.ToLower(strings.TrimPrefix(k, ConfigEnvPrefix))
		if slices.Contains(cfgTopFields(), name) {
			set[name] = v
			continue
		}
		if slices.Contains(cfgClientEnv, name) {
			continue
		}
		if s := cfgSuggest(name, cfgTopFields(), nil); s != "" {
			ps.add("", "env %s: not a config field; did you mean %s%s?", k, ConfigEnvPrefix, strings.ToUpper(s))
		}
	}
	if len(ps) > 0 {
		return nil, &cfgError{problems: ps}
	}
	var out []ConfigOverride
	for _, f := range ConfigFields() {
		if v, ok := set[f.Name]; ok {
			out = append(out, ConfigOverride{Field: f.Name, Value: v, Source: "env " + f.Env})
		}
	}
	return out, nil
}

// cfgClientEnv are the QCLUSTER_ variables of the client commands (lower
// case, without the prefix) that are not config fields.
var cfgClientEnv = []string{"addr", "token", "cacert", "cert", "key"}

// LoadConfigLayers reads the JSON config file at path (none when path is
// "") and applies overrides to it in order, a later one winning over an
// earlier one for the same field (give the environment's first, then the
// flags'), then fills the defaults and validates, like LoadConfig. Every
// problem names its source: the file's line and column, or the override's
// Source.
func LoadConfigLayers(path string, overrides ...ConfigOverride) (Config, error) {
	data := []byte("{}")
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return Config{}, fmt.Errorf("qcluster: reading config: %w", err)
		}
	}
	d := cfgDecoder{data: bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), pos: map[string]int{}}
	c := d.decode()
	if len(d.problems) > 0 {
		return Config{}, &cfgError{source: path, problems: d.problems}
	}
	from := map[string]string{} // field -> the Source of the override that set it
	var ps []cfgProblem
	for _, o := range overrides {
		raw, msg := cfgTextValue(o.Field, o.Value)
		if msg != "" {
			ps = append(ps, cfgProblem{at: o.Field, text: fmt.Sprintf("%s: %s (%s)", o.Field, msg, o.Source)})
			continue
		}
		od := cfgDecoder{data: []byte(`{"` + o.Field + `":` + string(raw) + `}`), pos: map[string]int{}}
		oc := od.decode()
		if len(od.problems) > 0 {
			for _, p := range od.problems {
				ps = append(ps, cfgProblem{at: p.at, text: p.text + " (" + o.Source + ")"})
			}
			continue
		}
		cfgCopyField(&c, oc, o.Field)
		from[o.Field] = o.Source
	}
	if len(ps) > 0 {
		return Config{}, &cfgError{problems: ps}
	}
	c = c.WithDefaults()
	vps := cfgValidate(c, NodeID)
	if len(vps) == 0 {
		return c, nil
	}
	source := ""
	for i := range vps {
		top := cfgTopOf(vps[i].at)
		if src, ok := from[top]; ok {
			vps[i].text += " (" + src + ")"
			continue
		}
		if path != "" {
			source = path
		}
		if off, ok := d.pos[vps[i].at]; ok {
			vps[i].line, vps[i].col = cfgLineCol(d.data, off)
		}
	}
	return Config{}, &cfgError{source: source, problems: vps}
}

// Redacted returns a copy of c with every secret field (ConfigField.Secret:
// api_token, cluster_key, gossip_key, extra_gossip_keys) that is set
// replaced by "REDACTED", for showing a config.
func (c Config) Redacted() Config {
	c = cfgClone(c)
	v := reflect.ValueOf(&c).Elem()
	for _, f := range ConfigFields() {
		if !f.Secret {
			continue
		}
		sf, _ := cfgStructField(f.Name)
		fv := v.FieldByIndex(sf.Index)
		switch fv.Kind() {
		case reflect.String:
			if fv.String() != "" {
				fv.SetString(cfgRedacted)
			}
		case reflect.Slice:
			for i := range fv.Len() {
				fv.Index(i).SetString(cfgRedacted)
			}
		default:
			panic("qcluster: secret config field " + f.Name + " of kind " + fv.Kind().String())
		}
	}
	return c
}

// cfgRedacted replaces a secret in Config.Redacted.
const cfgRedacted = "REDACTED"

// cfgStructField returns the field of Config whose JSON name is name.
func cfgStructField(name string) (reflect.StructField, bool) {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		sf := t.Field(i)
		if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag == name {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

// cfgCopyField sets the field named name of *dst to its value in src.
func cfgCopyField(dst *Config, src Config, name string) {
	sf, ok := cfgStructField(name)
	if !ok {
		panic("qcluster: no config field " + name)
	}
	reflect.ValueOf(dst).Elem().FieldByIndex(sf.Index).Set(reflect.ValueOf(src).FieldByIndex(sf.Index))
}

// cfgTopOf returns the top-level field of a JSON path: "peers" for
// "peers[1].port".
func cfgTopOf(path string) string {
	if i := strings.IndexAny(path, "[."); i >= 0 {
		return path[:i]
	}
	return path
}

func cfgIsBool(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Bool
}

var (
	cfgDurationType = reflect.TypeFor[Duration]()
	cfgPeersType    = reflect.TypeFor[[]PeerConfig]()
)

// cfgTextSyntax says how to write a value of type t as text.
func cfgTextSyntax(t reflect.Type) string {
	switch {
	case t == cfgDurationType:
		return "a duration such as 150ms"
	case t == cfgPeersType:
		return "identifier@host:port,... or a JSON array"
	case cfgIsBool(t):
		return "true or false"
	}
	switch t.Kind() {
	case reflect.Int:
		return "a number"
	case reflect.Map, reflect.Pointer:
		return "a JSON object"
	case reflect.Slice:
		return "a comma-separated list or a JSON array"
	}
	return "text"
}

// cfgTextValue turns the text value of field name into the JSON the file
// would hold, for the decoder to read (and report on) as if it were there.
// msg explains text that cannot be turned into JSON.
func cfgTextValue(name, text string) (raw []byte, msg string) {
	sf, ok := cfgStructField(name)
	if !ok || !slices.Contains(cfgTopFields(), name) {
		return nil, "not a config field"
	}
	t := sf.Type
	quote := func(s string) []byte { b, _ := json.Marshal(s); return b }
	switch {
	case t == cfgDurationType:
		return quote(text), ""
	case t == cfgPeersType:
		if strings.HasPrefix(strings.TrimSpace(text), "[") {
			return []byte(text), ""
		}
		return cfgCompactPeers(text)
	case cfgIsBool(t):
		if b, err := strconv.ParseBool(strings.TrimSpace(text)); err == nil {
			return []byte(strconv.FormatBool(b)), ""
		}
		return quote(text), "" // the decoder says it must be true or false
	}
	switch t.Kind() {
	case reflect.String:
		return quote(text), ""
	case reflect.Int:
		if _, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64); err == nil {
			return []byte(strings.TrimSpace(text)), ""
		}
		return quote(text), "" // the decoder says it must be a number
	case reflect.Slice:
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
	// Objects (metadata, tls): JSON.
	if !json.Valid([]byte(text)) {
		return nil, fmt.Sprintf("%s is not JSON; give a JSON object such as {\"zone\": \"a\"}", cfgQuote(text))
	}
	return []byte(text), ""
}

// cfgCompactPeers reads "b@host:7002,c@host:7003" into the JSON array of
// peers.
func cfgCompactPeers(text string) ([]byte, string) {
	peers := []map[string]any{}
	for _, e := range strings.Split(text, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		id, addr, ok := strings.Cut(e, "@")
		host, port, err := net.SplitHostPort(addr)
		if !ok || id == "" || err != nil {
			return nil, fmt.Sprintf("entry %s: give identifier@host:port, such as server_b@10.0.0.2:7002 (entries separated by commas)", cfgQuote(e))
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Sprintf("entry %s: port %s is not a number", cfgQuote(e), cfgQuote(port))
		}
		peers = append(peers, map[string]any{"identifier": id, "host": host, "port": n})
	}
	b, _ := json.Marshal(peers)
	return b, ""
}

// Suggest returns the name among names that word looks like a misspelling
// of, or "": the rule the config decoder uses for unknown keys (see Config:
// equal once case and '_', '-', '.' are ignored, or a small
// Damerau-Levenshtein distance away). The qcluster command uses it for
// mistyped commands and flags ("stauts": "status").
func Suggest(word string, names []string) string { return cfgSuggest(word, names, nil) }
