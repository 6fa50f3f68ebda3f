package qcluster

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// TestAPIRefusesCrossSiteChanges is issue 16 on real peers without an API
// token: what a web page of another site can make a browser send (a POST
// with a form-like Content-Type, or with its own Origin) neither makes a
// peer leave nor moves leadership; it is refused, counted, and the peer
// works on.
func TestAPIRefusesCrossSiteChanges(t *testing.T) {
	tc := newAPITestCluster(t, 3, "")
	leader := tc.waitLeader(5 * time.Second)
	f := tc.peers[(tc.index(leader)+1)%3]
	term := leader.Term()
	hc := newHTTPC(t).hc
	send := func(c *Cluster, path string, headers ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("POST", "http://"+c.Addr()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		c       *Cluster
		path    string
		headers []string
		status  int
		code    string
	}{
		// The curl of the issue, on a follower and on the leader.
		{f, "/v1/self/leave", []string{"Origin", "http://evil.example", "Content-Type", "text/plain"}, 403, api.CodeCrossOrigin},
		{leader, "/v1/leader/resign", []string{"Origin", "http://evil.example", "Content-Type", "text/plain"}, 403, api.CodeCrossOrigin},
		{leader, "/v1/leader/resign", []string{"Origin", "http://evil.example", "Content-Type", "application/json"}, 403, api.CodeCrossOrigin},
		{leader, "/v1/leader/resign", []string{"Sec-Fetch-Site", "cross-site", "Content-Type", "application/json"}, 403, api.CodeCrossOrigin},
		{f, "/v1/self/leave", []string{"Content-Type", "text/plain"}, 415, api.CodeUnsupportedMediaType},
		{leader, "/v1/leader/resign", nil, 415, api.CodeUnsupportedMediaType},
		{leader, "/v1/leader/resign", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, api.CodeUnsupportedMediaType},
	}
	for _, c := range cases {
		status, body := send(c.c, c.path, c.headers...)
		if status != c.status || !strings.Contains(body, `"code": "`+c.code+`"`) {
			t.Errorf("POST %s %q on %s: %d %s, want %d %s", c.path, c.headers, c.c.cfg.Identifier, status, body, c.status, c.code)
		}
	}
	// Nothing moved: the follower is still a running member, the leader
	// still leads in the same term.
	if !leader.IsLeader() || leader.Term() != term {
		t.Fatalf("refused requests moved leadership: leader %v, term %d -> %d", leader.IsLeader(), term, leader.Term())
	}
	var st api.Status
	newHTTPC(t).get(f, "/v1/status", &st)
	if !st.Joined || st.Leader == nil || st.Leader.Identifier != leader.cfg.Identifier {
		t.Fatalf("the follower after the refused leave: %+v", st)
	}
	// The refusals are counted, by reason, on the peer that refused.
	mc := newMetricsClient(t)
	for _, x := range []struct {
		c            *Cluster
		cross, ctype float64
	}{{leader, 3, 2}, {f, 1, 1}} {
		s := scrapeMetrics(t, mc, x.c)
		if n, ok := s.value("qcluster_api_requests_refused_total", "reason", api.RefusedCrossOrigin); !ok || n != x.cross {
			t.Errorf("%s: api_requests_refused_total{reason=cross_origin} = %v (%v), want %v", x.c.cfg.Identifier, n, ok, x.cross)
		}
		if n, ok := s.value("qcluster_api_requests_refused_total", "reason", api.RefusedContentType); !ok || n != x.ctype {
			t.Errorf("%s: api_requests_refused_total{reason=content_type} = %v (%v), want %v", x.c.cfg.Identifier, n, ok, x.ctype)
		}
		if n, _ := s.value("qcluster_api_requests_total", "route", "/v1/leader/resign", "code", "415"); x.c == leader && n != 2 {
			t.Errorf("api_requests_total{route=/v1/leader/resign,code=415} = %v, want 2", n)
		}
	}
	// As a program sends it, the same change goes through.
	if status, body := send(leader, "/v1/leader/resign", "Content-Type", "application/json"); status != 200 {
		t.Fatalf("POST /v1/leader/resign with JSON: %d %s", status, body)
	}
}
