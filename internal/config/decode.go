package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// decoder decodes a JSON document into a Config, collecting problems and
// the byte offset of every field's value.
type decoder struct {
	data     []byte
	problems []Problem
	pos      map[string]int // JSON path -> offset of its value in data
}

func (d *decoder) add(off int, path, format string, args ...any) {
	p := Problem{At: path, Text: fmt.Sprintf(format, args...)}
	p.Line, p.Col = lineCol(d.data, off)
	d.problems = append(d.problems, p)
}

// member is one "key": value member of a JSON object.
type member struct {
	key    string
	keyOff int // offset of the key's opening quote
	valOff int // offset of the value's first byte
	val    json.RawMessage
}

func (d *decoder) decode() Config {
	var c Config
	if err := json.Unmarshal(d.data, new(json.RawMessage)); err != nil {
		d.syntaxError(err)
		return c
	}
	off := skip(d.data, 0, " \t\r\n")
	raw := bytes.TrimSpace(d.data)
	if kindOf(raw) != "object" {
		d.add(off, "", `the config must be a JSON object such as {"identifier": "server_a", "listen_port": 7001, "peers": [...]}, got %s`, describe(raw))
		return c
	}
	members, ok := d.members(raw, off, "")
	if !ok {
		return c
	}
	for _, m := range members {
		path := jsonPath("", m.key)
		d.pos[path] = m.valOff
		if f, ok := topField(m.key); ok {
			d.decodeValue(f.at(&c), f.port, f.zeroDefault, m, path)
			continue
		}
		if s := suggest(m.key, topNames, nil); s != "" {
			d.add(m.keyOff, path, "%s: unknown field; did you mean %q?", path, s)
			continue
		}
		if c.Extra == nil {
			c.Extra = map[string]json.RawMessage{}
		}
		c.Extra[m.key] = m.val
	}
	return c
}

// members lists the members of the JSON object raw, which starts at offset
// base of d.data, reporting keys given twice. prefix is the object's JSON
// path ("" for the top level).
func (d *decoder) members(raw []byte, base int, prefix string) ([]member, bool) {
	what := prefix
	if what == "" {
		what = "the config"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		d.add(base, "", "%s: cannot be decoded: %v", what, err)
		return nil, false
	}
	var out []member
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
		m := member{
			key:    key,
			keyOff: base + skip(raw, before, ", \t\r\n"),
			valOff: base + skip(raw, after, ": \t\r\n"),
			val:    bytes.TrimSpace(val),
		}
		if prev, dup := first[key]; dup {
			line, col := lineCol(d.data, prev)
			path := jsonPath(prefix, key)
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
func (d *decoder) syntaxError(err error) {
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

func (d *decoder) str(m member, path string) string {
	switch kindOf(m.val) {
	case "null":
		return ""
	case "string":
		var s string
		if err := json.Unmarshal(m.val, &s); err != nil {
			d.add(m.valOff, path, "%s: invalid string: %v", path, err)
		}
		return s
	}
	d.add(m.valOff, path, "%s: expected a string, got %s", path, describe(m.val))
	return ""
}

// port decodes a port number; range checks are left to Validate unless the
// number does not even fit an int.
func (d *decoder) port(m member, path string) int {
	switch kindOf(m.val) {
	case "null":
		return 0
	case "number":
		n, err := strconv.ParseInt(string(m.val), 10, 0)
		if err == nil {
			return int(n)
		}
		if errors.Is(err, strconv.ErrRange) {
			d.add(m.valOff, path, "%s: %s is out of range (1-65535)", path, showRaw(m.val))
		} else {
			d.add(m.valOff, path, "%s: expected a whole number such as 7001, got %s", path, showRaw(m.val))
		}
		return 0
	case "string":
		var s string
		_ = json.Unmarshal(m.val, &s)
		if _, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			d.add(m.valOff, path, "%s: expected a number, got string %s; write %s without quotes", path, quote(s), strings.TrimSpace(s))
			return 0
		}
	}
	d.add(m.valOff, path, "%s: expected a number, got %s", path, describe(m.val))
	return 0
}

func (d *decoder) duration(m member, path string, def time.Duration) Duration {
	if kindOf(m.val) == "null" {
		return 0
	}
	v, msg := parseDuration(m.val)
	if msg != "" {
		d.add(m.valOff, path, "%s: %s", path, msg)
		return 0
	}
	if v == 0 {
		// An explicit zero would silently become the default; say so.
		d.add(m.valOff, path, "%s: %s is not a usable duration; remove the field for the default (%v) or give at least 1ms", path, showRaw(m.val), def)
	}
	return v
}

// strings decodes an array of strings.
func (d *decoder) strings(m member, path string) []string {
	if kindOf(m.val) == "null" {
		return nil
	}
	var out []string
	if err := json.Unmarshal(m.val, &out); err != nil {
		d.add(m.valOff, path, `%s: expected an array of strings such as ["key1"], got %s`, path, describe(m.val))
		return nil
	}
	return out
}

// int decodes a whole number (possibly negative).
func (d *decoder) int(m member, path string) int {
	if kindOf(m.val) == "null" {
		return 0
	}
	n, err := strconv.ParseInt(string(m.val), 10, 32)
	if err != nil {
		d.add(m.valOff, path, "%s: expected a whole number, got %s", path, describe(m.val))
		return 0
	}
	return int(n)
}

// int64 decodes a whole number of 64 bits (possibly negative).
func (d *decoder) int64(m member, path string) int64 {
	if kindOf(m.val) == "null" {
		return 0
	}
	n, err := strconv.ParseInt(string(m.val), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		d.add(m.valOff, path, "%s: %s is out of range", path, showRaw(m.val))
		return 0
	case err != nil && kindOf(m.val) == "string":
		var s string
		_ = json.Unmarshal(m.val, &s)
		if _, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			d.add(m.valOff, path, "%s: expected a number, got string %s; write %s without quotes", path, quote(s), strings.TrimSpace(s))
			return 0
		}
		fallthrough
	case err != nil:
		d.add(m.valOff, path, "%s: expected a whole number, got %s", path, describe(m.val))
		return 0
	}
	return n
}

// boolPtr decodes true, false or null (nil).
func (d *decoder) boolPtr(m member, path string) *bool {
	switch string(m.val) {
	case "null":
		return nil
	case "true", "false":
		b := string(m.val) == "true"
		return &b
	}
	d.add(m.valOff, path, "%s: expected true or false, got %s", path, describe(m.val))
	return nil
}

func (d *decoder) object(m member, path string) map[string]any {
	switch kindOf(m.val) {
	case "null":
		return nil
	case "object":
		var v map[string]any
		if err := json.Unmarshal(m.val, &v); err != nil {
			d.add(m.valOff, path, "%s: cannot be decoded: %v", path, err)
		}
		return v
	}
	d.add(m.valOff, path, `%s: expected an object such as {"server_port": 8002}, got %s`, path, describe(m.val))
	return nil
}

func (d *decoder) peers(m member, path string) []PeerConfig {
	switch kindOf(m.val) {
	case "null":
		return nil
	case "array":
	default:
		d.add(m.valOff, path, `%s: expected a list of peers such as [{"host": "localhost", "port": 7002, "identifier": "server_b"}], got %s`, path, describe(m.val))
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
		off := m.valOff + skip(m.val, before, ", \t\r\n")
		ppath := fmt.Sprintf("%s[%d]", path, i)
		d.pos[ppath] = off
		p, _ := peerObject.decode(d, raw, off, ppath)
		peers = append(peers, p)
	}
	return peers
}
