package config

import (
	"bytes"
	"encoding/json"
	"slices"
)

// clone deep-copies the maps, slices and pointers (Voter, TLS,
// HealthCheck) of c.
func clone(c Config) Config {
	c.Metadata = cloneMap(c.Metadata)
	if c.Peers != nil {
		peers := make([]PeerConfig, len(c.Peers))
		for i, p := range c.Peers {
			p.Metadata = cloneMap(p.Metadata)
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
	if c.Voter != nil {
		v := *c.Voter
		c.Voter = &v
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

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return cloneMap(t)
	case []any:
		if t == nil {
			return t
		}
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = cloneValue(e)
		}
		return out
	case json.RawMessage:
		return bytes.Clone(t)
	}
	return v
}
