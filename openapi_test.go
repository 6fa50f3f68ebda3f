package qcluster

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// TestOpenAPIRealPeers: the answers of real peers to every operation of
// api/openapi.json that can be sent without ending the cluster, and some of
// their failures, are what the document describes (httpc.do checks every
// answer against it; the watch reader checks every event's data).
func TestOpenAPIRealPeers(t *testing.T) {
	tc := newAPITestCluster(t, 3, testToken)
	leader := tc.waitLeader(10 * time.Second)
	follower := tc.peers[(tc.index(leader)+1)%3]
	h := newHTTPC(t)
	type call struct {
		on           *Cluster
		method, path string
		token, body  string
		status       int
	}
	calls := []call{
		{follower, "GET", "/v1/status", "", "", 200},
		{leader, "GET", "/v1/status", "", "", 200},
		{follower, "HEAD", "/v1/status", "", "", 200},
		{follower, "GET", "/v1/status?index=abc", "", "", 400},
		{follower, "GET", "/v1/leader", "", "", 200},
		{follower, "GET", "/v1/peers", "", "", 200},
		{follower, "GET", "/v1/peers/" + leader.cfg.Identifier, "", "", 200},
		{follower, "GET", "/v1/peers/nobody", "", "", 404},
		{follower, "GET", "/healthz", "", "", 200},
		{follower, "GET", "/readyz", "", "", 200},
		{follower, "GET", "/metrics", "", "", 200},
		{follower, "GET", "/v1/openapi.json", "", "", 200},
		{follower, "PUT", "/v1/self/metadata", testToken, `{"metadata": {"zone": "b", "n": 1}}`, 200},
		{follower, "PUT", "/v1/self/metadata", "", `{"metadata": {}}`, 401},
		{follower, "POST", "/v1/leader/transfer", testToken, "", 409},
		{leader, "POST", "/v1/leader/transfer?to=nobody", testToken, "", 400},
		{follower, "POST", "/v1/join", testToken, `{"identifier": "p9"}`, 400},
		{follower, "POST", "/v1/join", testToken, `{"identifier": "p1", "host": "127.0.0.1", "port": 1}`, 409},
		{follower, "DELETE", "/v1/peers/nobody", testToken, "", 404},
		{leader, "POST", "/v1/leader/resign", testToken, "", 200},
	}
	seen := map[string]bool{}
	for _, c := range calls {
		resp, b := h.do(c.on, c.method, c.path, c.token, c.body)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s on %s: %s %s, want %d", c.method, c.path, c.on.cfg.Identifier, resp.Status, b, c.status)
		}
		seen[c.method+" "+c.path] = true
	}
	spec, err := openAPISpec()
	if err != nil {
		t.Fatal(err)
	}
	// The operations the calls above do not reach with a 200 on purpose
	// (they would end the cluster or take a while): join and remove of a
	// real member, leave, watch (below), are covered by the API tests of
	// this package, which check their answers too.
	for _, p := range []string{"/v1/status", "/v1/leader", "/v1/peers", "/healthz", "/readyz", "/metrics", "/v1/openapi.json"} {
		if !slices.Contains(spec.Paths(), p) || !seen["GET "+p] {
			t.Errorf("GET %s: not described, or not sent", p)
		}
	}
	// Every event's data is checked by the reader.
	w := openWatch(t, h, follower, "")
	defer w.close()
	if ev := w.nextWithin(t, 10*time.Second); ev.event != "leader" {
		t.Errorf("first event %q", ev.event)
	}
}

// TestDocsAPITableListsEveryOperation: the endpoint table of docs/api.md
// has a row for every operation of api/openapi.json (which in turn
// describes every route of api.Routes()), and the document names docs/api.md
// as its guide.
func TestDocsAPITableListsEveryOperation(t *testing.T) {
	spec, err := openAPISpec()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range spec.Paths() {
		for _, m := range spec.Methods(p) {
			if !strings.Contains(string(b), "| [`"+m+" "+p+"`](") {
				t.Errorf("docs/api.md's endpoint table has no row for %s %s", m, p)
			}
		}
	}
	if !strings.Contains(string(api.OpenAPI()), "docs/api.md") || !strings.Contains(string(b), "(../api/openapi.json)") {
		t.Error("api/openapi.json and docs/api.md do not point to each other")
	}
}
