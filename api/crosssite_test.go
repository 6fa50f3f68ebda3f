package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// mutatingMethods are the methods that may change the cluster.
var mutatingMethods = []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// refusal is a header set a browser may send on behalf of another site,
// and the answer it must get.
type refusal struct {
	name    string
	headers map[string][]string // nil value: header absent
	status  int
	code    string
	reason  string
}

const jsonCT = "application/json"

var refusals = []refusal{
	// The curl of issue 16: a form-like POST from a page of another site.
	{"issue-16", map[string][]string{"Origin": {"http://evil.example"}, "Content-Type": {"text/plain"}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"no-content-type", map[string][]string{}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"text/plain", map[string][]string{"Content-Type": {"text/plain"}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"text/plain-json-body-type", map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"form", map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"multipart", map[string][]string{"Content-Type": {"multipart/form-data; boundary=x"}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"json-lookalike", map[string][]string{"Content-Type": {"application/jsonp"}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"json-suffix", map[string][]string{"Content-Type": {"application/json-patch+json"}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"bad-media-type", map[string][]string{"Content-Type": {"application/json; ="}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"two-content-types", map[string][]string{"Content-Type": {jsonCT, "text/plain"}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"empty-content-type", map[string][]string{"Content-Type": {""}}, 415, CodeUnsupportedMediaType, RefusedContentType},
	{"other-origin", map[string][]string{"Origin": {"http://evil.example"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"null-origin", map[string][]string{"Origin": {"null"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"empty-origin", map[string][]string{"Origin": {""}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"other-port", map[string][]string{"Origin": {"http://example.com:8080"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"other-scheme", map[string][]string{"Origin": {"https://example.com"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"sub-domain", map[string][]string{"Origin": {"http://evil.example.com"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"origin-with-path", map[string][]string{"Origin": {"http://example.com/x"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"origin-with-user", map[string][]string{"Origin": {"http://u@example.com"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"two-origins", map[string][]string{"Origin": {"http://example.com", "http://evil.example"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"cross-site", map[string][]string{"Sec-Fetch-Site": {"cross-site"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"same-site", map[string][]string{"Sec-Fetch-Site": {"same-site"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
	{"cross-site-own-origin", map[string][]string{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://example.com"}, "Content-Type": {jsonCT}}, 403, CodeCrossOrigin, RefusedCrossOrigin},
}

// accepted are header sets that must pass the cross-site checks
// (httptest requests reach http://example.com).
var accepted = []struct {
	name    string
	headers map[string][]string
}{
	{"json", map[string][]string{"Content-Type": {jsonCT}}},
	{"json-charset", map[string][]string{"Content-Type": {"application/json; charset=utf-8"}}},
	{"json-upper-case", map[string][]string{"Content-Type": {"Application/JSON"}}},
	{"own-origin", map[string][]string{"Origin": {"http://example.com"}, "Content-Type": {jsonCT}}},
	{"own-origin-default-port", map[string][]string{"Origin": {"http://EXAMPLE.com:80"}, "Content-Type": {jsonCT}}},
	{"same-origin", map[string][]string{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://example.com"}, "Content-Type": {jsonCT}}},
	{"typed-by-user", map[string][]string{"Sec-Fetch-Site": {"none"}, "Content-Type": {jsonCT}}},
}

// TestMutatingRoutesRefuseCrossSiteRequests sends every mutating method to
// every route of Routes() (so a new route cannot be left out): where the
// route takes the method, requests a browser could send for another site
// are refused before the Backend sees them, with the right answer and
// RequestInfo.Refused, and requests as programs send them pass.
func TestMutatingRoutesRefuseCrossSiteRequests(t *testing.T) {
	const token = "s3cret"
	var (
		f    *fakeBackend
		last RequestInfo
	)
	for _, withToken := range []bool{false, true} {
		f = newFake(leaderB)
		opts := Options{Metrics: http.NotFoundHandler(), OnRequest: func(ri RequestInfo) { last = ri }}
		if withToken {
			opts.Token = token
		}
		h := NewHandlerWithOptions(f, opts)
		send := func(method, path string, headers map[string][]string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(method, path, strings.NewReader("{}"))
			for k, vs := range headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if withToken {
				r.Header.Set("Authorization", "Bearer "+token)
			}
			last = RequestInfo{}
			return serveReq(h, r)
		}
		var covered []string
		for _, route := range Routes() {
			path := strings.ReplaceAll(route, "{identifier}", "server_b")
			for _, method := range mutatingMethods {
				probe := send(method, path, accepted[0].headers)
				if probe.Code == http.StatusMethodNotAllowed {
					// The route does not take the method: neither may a
					// browser's request reach a handler.
					before := f.mutations()
					for _, rf := range refusals {
						if rec := send(method, path, rf.headers); rec.Code != http.StatusMethodNotAllowed {
							t.Errorf("%s %s (%s): %d, want 405 like a request with JSON", method, path, rf.name, rec.Code)
						}
					}
					if f.mutations() != before {
						t.Errorf("%s %s: a refused method reached the Backend", method, path)
					}
					continue
				}
				covered = append(covered, method+" "+route)
				for _, rf := range refusals {
					before := f.mutations()
					rec := send(method, path, rf.headers)
					e := wantError(t, rec, rf.status, rf.code)
					if f.mutations() != before {
						t.Errorf("%s %s (%s): refused with %d, but the Backend was called", method, path, rf.name, rec.Code)
					}
					if last.Refused != rf.reason || last.Code != rf.status || last.Route != route {
						t.Errorf("%s %s (%s): RequestInfo %+v, want refused %q, code %d, route %q", method, path, rf.name, last, rf.reason, rf.status, route)
					}
					if e.Error == "" {
						t.Errorf("%s %s (%s): no message", method, path, rf.name)
					}
				}
				for _, ok := range accepted {
					rec := send(method, path, ok.headers)
					if rec.Code == http.StatusForbidden || rec.Code == http.StatusUnsupportedMediaType || last.Refused != "" {
						t.Errorf("%s %s (%s): refused: %d %s", method, path, ok.name, rec.Code, rec.Body)
					}
				}
			}
		}
		// The probe found the endpoints that change the cluster.
		for _, want := range []string{
			"POST /v1/join", "DELETE /v1/peers/{identifier}", "PUT /v1/self/metadata", "POST /v1/self/leave",
			"POST /v1/leader/transfer", "POST /v1/leader/resign",
			"PUT /v1/kv/{key...}", "DELETE /v1/kv/{key...}", "POST /v1/locks/{name}",
		} {
			if !slices.Contains(covered, want) {
				t.Errorf("token %v: %s was not found taking its method (covered: %q)", withToken, want, covered)
			}
		}
	}
}

// TestCrossSiteChecksComeAfterTheToken: without the token a request is a
// 401 whatever else it carries, and reads are not affected.
func TestCrossSiteChecksComeAfterTheToken(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{Token: "s3cret"})
	r := httptest.NewRequest("POST", "/v1/self/leave", strings.NewReader("{}"))
	r.Header.Set("Origin", "http://evil.example")
	r.Header.Set("Content-Type", "text/plain")
	wantError(t, serveReq(h, r), http.StatusUnauthorized, CodeUnauthorized)
	if f.mutations() != 0 {
		t.Fatal("the Backend was called")
	}
	// Reads from a page of another origin are answered as before.
	for _, path := range []string{"/v1/status", "/v1/leader", "/v1/peers", "/healthz", "/readyz"} {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Origin", "http://evil.example")
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		if rec := serveReq(h, r); rec.Code != 200 {
			t.Errorf("GET %s from another origin: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// TestOwnOrigin pins what counts as the peer's own origin: the scheme and
// host:port the request reached.
func TestOwnOrigin(t *testing.T) {
	for _, c := range []struct {
		tls          bool
		host, origin string
		same         bool
	}{
		{false, "localhost:7001", "http://localhost:7001", true},
		{false, "localhost:7001", "http://LocalHost:7001", true},
		{false, "localhost:7001", "http://localhost:7002", false},
		{false, "localhost:7001", "http://localhost", false},
		{false, "localhost:7001", "https://localhost:7001", false},
		{false, "localhost:7001", "http://127.0.0.1:7001", false},
		{false, "localhost:7001", "http://localhost:7001/", false},
		{false, "localhost:7001", "http://localhost:7001?x", false},
		{false, "localhost:7001", "http://localhost:7001#x", false},
		{false, "localhost:7001", "ftp://localhost:7001", false},
		{false, "localhost:7001", "localhost:7001", false},
		{false, "localhost:7001", "//localhost:7001", false},
		{false, "localhost:7001", "http://localhost:7001:7001", false},
		{false, "localhost", "http://localhost:80", true},
		{false, "localhost:80", "http://localhost", true},
		{false, "[::1]:7001", "http://[::1]:7001", true},
		{false, "[::1]:7001", "http://[::2]:7001", false},
		{false, "[::1]", "http://[::1]:80", true},
		{false, "::1", "http://[::1]:80", false}, // not a Host header
		{false, "", "http://localhost", false},
		{true, "localhost:7001", "https://localhost:7001", true},
		{true, "localhost:7001", "http://localhost:7001", false},
		{true, "localhost", "https://localhost:443", true},
	} {
		r := httptest.NewRequest("POST", "/v1/self/leave", nil)
		r.Host = c.host
		if !c.tls {
			r.TLS = nil
		} else if r.TLS == nil {
			r = httptest.NewRequest("POST", "https://"+c.host+"/v1/self/leave", nil)
			r.Host = c.host
		}
		r.Header.Set("Origin", c.origin)
		r.Header.Set("Content-Type", jsonCT)
		reason, _, _, _ := crossSite(r)
		if got := reason == ""; got != c.same {
			t.Errorf("tls %v, Host %q, Origin %q: same origin %v, want %v", c.tls, c.host, c.origin, got, c.same)
		}
	}
}
