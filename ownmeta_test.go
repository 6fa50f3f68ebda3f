package qcluster

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// disagreeingMetadata gives each of 3 peers its own metadata
// {"server_port": 800N} and makes the configs disagree about the others:
// p0 and p2 set their own at the top level, p1 in its own peers entry; the
// entries of the others carry none, or a wrong value.
func disagreeingMetadata(c *Config) {
	wrong := map[string]map[string]any{ // what this config says about the others
		"p0": {"p1": nil, "p2": map[string]any{"server_port": 9992}},
		"p1": {"p0": map[string]any{"server_port": 9990}, "p2": nil},
		"p2": {"p0": nil, "p1": map[string]any{"server_port": 9991}},
	}[c.Identifier]
	own := map[string]any{"server_port": 8000 + int(c.Identifier[1]-'0')}
	for i := range c.Peers {
		md, _ := wrong[c.Peers[i].Identifier].(map[string]any)
		c.Peers[i].Metadata = md
	}
	c.Metadata = nil
	if c.Identifier == "p1" {
		c.Peers = append(c.Peers, PeerConfig{Host: c.ListenHost, Port: c.ListenPort, Identifier: c.Identifier, Metadata: own})
	} else {
		c.Metadata = own
	}
}

// ownMeta is the metadata peer id gives itself in disagreeingMetadata, as
// every peer decodes it.
func ownMeta(id string) map[string]any {
	return map[string]any{"server_port": float64(8000 + int(id[1]-'0'))}
}

// TestOwnMetadataWinsOverOtherConfigs: the founders' configs disagree about
// each other's metadata (missing, or wrong); each peer's own config is the
// truth for it. Every peer reports every member with that member's own
// metadata, in Peers, Leader and GET /v1/leader, and keeps doing so across
// a change of leader.
func TestOwnMetadataWinsOverOtherConfigs(t *testing.T) {
	tc := newTestCluster(t, 3, disagreeingMetadata)
	h := newHTTPC(t)
	check := func(what string) {
		t.Helper()
		var last string
		t.Cleanup(func() {
			if t.Failed() && last != "" {
				t.Log("last difference: " + last)
			}
		})
		waitFor(t, 20*time.Second, what, func() bool {
			leader := tc.waitLeader(10 * time.Second)
			for _, p := range tc.peers {
				for _, m := range p.Peers() {
					if !reflect.DeepEqual(m.Metadata, ownMeta(m.Identifier)) {
						last = fmt.Sprintf("%s reports %s with %v", p.cfg.Identifier, m.Identifier, m.Metadata)
						return false
					}
				}
				l, ok := p.Leader()
				if !ok || l.Identifier != leader.cfg.Identifier || !reflect.DeepEqual(l.Metadata, ownMeta(l.Identifier)) {
					last = fmt.Sprintf("%s: Leader() = %+v, %v", p.cfg.Identifier, l, ok)
					return false
				}
				resp, b := h.do(p, "GET", "/v1/leader", "", "")
				var ap api.Peer
				if resp.StatusCode != 200 || json.Unmarshal(b, &ap) != nil || ap.Identifier != leader.cfg.Identifier ||
					!reflect.DeepEqual(ap.Metadata, ownMeta(ap.Identifier)) {
					last = fmt.Sprintf("%s: GET /v1/leader: %s %s", p.cfg.Identifier, resp.Status, b)
					return false
				}
			}
			return true
		})
	}
	check("every peer to report every member's own metadata")
	// Another leader: its metadata, as its followers report it, is its own.
	leader := tc.waitLeader(10 * time.Second)
	if err := leader.Resign(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	check("every peer to report the new leader's own metadata")
	// A peer that restarts with other metadata in its config commits it.
	i := (tc.index(tc.waitLeader(10*time.Second)) + 1) % 3
	tc.stop(i)
	tc.cfgs[i].Metadata = nil
	for j := range tc.cfgs[i].Peers {
		if tc.cfgs[i].Peers[j].Identifier == tc.cfgs[i].Identifier {
			tc.cfgs[i].Peers[j].Metadata = nil
		}
	}
	tc.cfgs[i].Metadata = map[string]any{"server_port": 7000}
	tc.start(i, nil)
	id := tc.cfgs[i].Identifier
	waitFor(t, 20*time.Second, "every peer to report the restarted peer's new metadata", func() bool {
		for _, p := range tc.peers {
			for _, m := range p.Peers() {
				if m.Identifier == id && !reflect.DeepEqual(m.Metadata, map[string]any{"server_port": float64(7000)}) {
					return false
				}
			}
		}
		return true
	})
}
