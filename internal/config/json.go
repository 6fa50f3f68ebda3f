package config

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// kindOf names the JSON type of the (valid, trimmed) value raw.
func kindOf(raw []byte) string {
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

// describe describes a JSON value for "got ..." messages.
func describe(raw []byte) string {
	switch k := kindOf(raw); k {
	case "object", "array":
		return "an " + k
	case "null", "nothing":
		return k
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		return "string " + quote(s)
	default:
		return k + " " + showRaw(raw)
	}
}

// showRaw shows a short JSON literal as is, truncating long ones.
func showRaw(raw []byte) string {
	if len(raw) > 32 {
		return string(raw[:32]) + "..."
	}
	return string(raw)
}

// quote quotes s for a message, truncating long strings.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 64 {
		s = string([]rune(s)[:64]) + "..."
	}
	return strconv.Quote(s)
}

// jsonPath appends key to a JSON path, quoting keys that are not plain names.
func jsonPath(prefix, key string) string {
	plain := key != "" && strings.IndexFunc(key, func(r rune) bool {
		return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0
	if !plain {
		key = quote(key)
	}
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// skip returns the offset of the first byte at or after off in data that
// is not in set (or len(data)).
func skip(data []byte, off int, set string) int {
	off = max(0, min(off, len(data)))
	for off < len(data) && strings.IndexByte(set, data[off]) >= 0 {
		off++
	}
	return off
}

// lineCol returns the 1-based line and column (in characters) of byte
// offset off in data.
func lineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	start := bytes.LastIndexByte(data[:off], '\n') + 1
	return bytes.Count(data[:off], []byte{'\n'}) + 1, utf8.RuneCount(data[start:off]) + 1
}

// defaultDataDir returns the default data_dir of the peer named id:
