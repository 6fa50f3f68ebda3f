package qcluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// TestAPIMembershipEndpoints drives the membership endpoints against real
// peers: auth, a join through a follower (forwarded to the leader), bad
// joins, a metadata change seen by every peer and on /v1/watch, the removal
// of a member, and a peer leaving through the API.
func TestAPIMembershipEndpoints(t *testing.T) {
	tc := newAPITestCluster(t, 3, testToken)
	leader := tc.waitLeader(10 * time.Second)
	f := tc.peers[(tc.index(leader)+1)%3]
	h := newHTTPC(t)

	// Member events on /v1/watch, from a follower.
	req, err := http.NewRequest("GET", "http://"+f.Addr()+"/v1/watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan api.MemberEvent, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && name == "member":
				var ev api.MemberEvent
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) == nil {
					events <- ev
				}
			}
		}
	}()
	waitEvent := func(typ, id string) api.MemberEvent {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("watch ended before a %s event for %s", typ, id)
				}
				if ev.Type == typ && ev.Member.Identifier == id {
					return ev
				}
			case <-timeout:
				t.Fatalf("no %s event for %s on /v1/watch", typ, id)
			}
		}
	}

	// Mutating endpoints need the token.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/join", `{"identifier":"x","host":"127.0.0.1","port":1}`},
		{"PUT", "/v1/self/metadata", `{"metadata":{}}`},
		{"DELETE", "/v1/peers/p1", ""},
		{"POST", "/v1/self/leave", ""},
	} {
		resp, b := h.do(f, c.method, c.path, "", c.body)
		h.wantErr(resp, b, 401, api.CodeUnauthorized)
	}

	// A join through a follower; the new peer exists (it listens), and
	// its own join then finds itself a member already.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	body := fmt.Sprintf(`{"identifier":"p3","host":"127.0.0.1","port":%d,"metadata":{"server_port":8003}}`, port)
	resp2, b := h.do(f, "POST", "/v1/join", testToken, body)
	if resp2.StatusCode != 200 {
		t.Fatalf("join: %d %s", resp2.StatusCode, b)
	}
	var jr api.JoinResult
	if err := json.Unmarshal(b, &jr); err != nil {
		t.Fatal(err)
	}
	if jr.AlreadyMember || jr.Member.Identifier != "p3" || !jr.Member.Voter || len(jr.Peers) != 4 || jr.Leader == nil || jr.Leader.Identifier != leader.cfg.Identifier {
		t.Errorf("join result %+v", jr)
	}
	waitEvent("joined", "p3")
	// The same join again: already a member.
	resp2, b = h.do(leader, "POST", "/v1/join", testToken, body)
	if err := json.Unmarshal(b, &jr); err != nil || resp2.StatusCode != 200 || !jr.AlreadyMember {
		t.Errorf("second join: %d %s", resp2.StatusCode, b)
	}
	// Bad joins change nothing.
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{fmt.Sprintf(`{"identifier":"p3","host":"127.0.0.1","port":%d}`, port+1), 409, api.CodeConflict},
		{`{"identifier":"p9","host":"127.0.0.1","port":` + fmt.Sprint(tc.cfgs[0].ListenPort) + `}`, 409, api.CodeConflict},
		{`{"identifier":"p9","host":"127.0.0.1","port":7001,"cluster_name":"other"}`, 409, api.CodeWrongCluster},
		{`{"identifier":"p9","host":"","port":7001}`, 400, api.CodeBadRequest},
		{`{"identifier":"p 9","host":"127.0.0.1","port":7001}`, 400, api.CodeBadRequest},
		{`{"identifier":"p9","host":"127.0.0.1","port":0}`, 400, api.CodeBadRequest},
		{`not json`, 400, api.CodeBadRequest},
	} {
		resp, b := h.do(f, "POST", "/v1/join", testToken, c.body)
		h.wantErr(resp, b, c.status, c.code)
	}
	if n := len(registryView(leader)); n != 4 {
		t.Errorf("%d members after the bad joins, want 4", n)
	}

	// Metadata: committed through the leader, seen by every peer.
	resp2, b = h.do(f, "PUT", "/v1/self/metadata", testToken, `{"metadata":{"server_port":9001,"zone":"b"}}`)
	if resp2.StatusCode != 200 {
		t.Fatalf("metadata: %d %s", resp2.StatusCode, b)
	}
	want := map[string]any{"server_port": float64(9001), "zone": "b"}
	ev := waitEvent("updated", f.cfg.Identifier)
	if !reflect.DeepEqual(ev.Member.Metadata, want) {
		t.Errorf("updated event metadata %v", ev.Member.Metadata)
	}
	waitFor(t, 5*time.Second, "every peer to report the new metadata", func() bool {
		for _, p := range tc.peers {
			for _, m := range p.Peers() {
				if m.Identifier == f.cfg.Identifier && !reflect.DeepEqual(m.Metadata, want) {
					return false
				}
			}
		}
		return true
	})
	resp2, b = h.do(f, "PUT", "/v1/self/metadata", testToken, `{"metadata":{"x":"`+strings.Repeat("y", 70<<10)+`"}}`)
	h.wantErr(resp2, b, 413, api.CodeTooLarge)

	// Remove the joined member (it never started): through a follower.
	resp2, b = h.do(f, "DELETE", "/v1/peers/p3", testToken, "")
	if resp2.StatusCode != 200 {
		t.Fatalf("remove: %d %s", resp2.StatusCode, b)
	}
	waitEvent("removed", "p3")
	resp2, b = h.do(f, "DELETE", "/v1/peers/p3", testToken, "")
	h.wantErr(resp2, b, 404, api.CodeUnknownPeer)
	ln.Close()

	// A follower leaves through the API: answered, then it stops; the
	// others keep their leader and see it left.
	leaver := tc.peers[(tc.index(leader)+2)%3]
	resp2, b = h.do(leaver, "POST", "/v1/self/leave", testToken, "")
	if resp2.StatusCode != 200 {
		t.Fatalf("leave: %d %s", resp2.StatusCode, b)
	}
	select {
	case <-leaver.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not stop after leaving")
	}
	tc.peers[tc.index(leaver)] = nil
	view := tc.waitSameRegistry(10*time.Second, 2)
	for _, m := range view {
		if m.ID == leaver.cfg.Identifier {
			t.Errorf("the leaver is still a member: %v", view)
		}
	}
	tc.waitLeader(5 * time.Second)
}
