package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMetricsRoute(t *testing.T) {
	f := newFake(leaderB)
	wantError(t, serve(NewHandler(f), "GET", "/metrics"), http.StatusNotFound, CodeNotFound)

	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("qcluster_term 3\n"))
	})
	h := NewHandlerWithOptions(f, Options{Metrics: metrics, Token: "s3cret"})
	rec := serve(h, "GET", "/metrics")
	if rec.Code != 200 || rec.Body.String() != "qcluster_term 3\n" {
		t.Fatalf("GET /metrics: %d %q", rec.Code, rec.Body)
	}
	wantError(t, serve(h, "POST", "/metrics"), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
}

func TestOnRequestRoutesAndCodes(t *testing.T) {
	f := newFake(leaderB)
	var (
		mu  sync.Mutex
		got []RequestInfo
	)
	h := NewHandlerWithOptions(f, Options{
		Token:     "s3cret",
		KeepAlive: 20 * time.Millisecond,
		Metrics:   http.NotFoundHandler(),
		OnRequest: func(ri RequestInfo) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, ri)
		},
	})
	cases := []struct {
		method, target string
		want           RequestInfo
	}{
		{"GET", "/v1/leader", RequestInfo{Route: "/v1/leader", Code: 200}},
		{"GET", "/v1/peers/server_b", RequestInfo{Route: "/v1/peers/{identifier}", Code: 200}},
		{"GET", "/v1/peers/nobody", RequestInfo{Route: "/v1/peers/{identifier}", Code: 404}},
		{"DELETE", "/v1/status", RequestInfo{Route: "/v1/status", Code: 405}},
		{"POST", "/v1/leader/resign", RequestInfo{Route: "/v1/leader/resign", Code: 401}},
		{"GET", "/v1/leader?index=1", RequestInfo{Route: "/v1/leader", Code: 200, Waited: true}},
		{"GET", "/v1/leader?index=x", RequestInfo{Route: "/v1/leader", Code: 400}},
		{"GET", "/no/such/path/42", RequestInfo{Route: RouteOther, Code: 404}},
		{"GET", "/metrics", RequestInfo{Route: "/metrics", Code: 404}},
		{"GET", "/healthz", RequestInfo{Route: "/healthz", Code: 200}},
		{"DELETE", "/v1/peers/server_b", RequestInfo{Route: "/v1/peers/{identifier}", Code: 401}},
		{"POST", "/v1/join", RequestInfo{Route: "/v1/join", Code: 401}},
		{"PUT", "/v1/self/metadata", RequestInfo{Route: "/v1/self/metadata", Code: 401}},
		{"GET", "/v1/self/metadata", RequestInfo{Route: "/v1/self/metadata", Code: 405}},
		{"POST", "/v1/self/leave", RequestInfo{Route: "/v1/self/leave", Code: 401}},
		{"GET", "/v1/self", RequestInfo{Route: RouteOther, Code: 404}},
	}
	for _, c := range cases {
		serve(h, c.method, c.target)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(cases) {
		t.Fatalf("%d requests observed, want %d", len(got), len(cases))
	}
	routes := Routes()
	for i, c := range cases {
		g := got[i]
		if g.Duration <= 0 {
			t.Errorf("%s %s: duration %v", c.method, c.target, g.Duration)
		}
		g.Duration = 0
		if g != c.want {
			t.Errorf("%s %s: observed %+v, want %+v", c.method, c.target, g, c.want)
		}
		if g.Route != RouteOther && !slices.Contains(routes, g.Route) {
			t.Errorf("route %q missing from Routes()", g.Route)
		}
	}
}

// TestOnRequestKeepsStreaming checks that the recording ResponseWriter
// still lets /v1/watch flush its events.
func TestOnRequestKeepsStreaming(t *testing.T) {
	f := newFake(leaderB)
	seen := make(chan RequestInfo, 1)
	srv := httptest.NewServer(NewHandlerWithOptions(f, Options{
		KeepAlive: 20 * time.Millisecond,
		OnRequest: func(ri RequestInfo) { seen <- ri },
	}))
	defer srv.Close()
	resp, br := openStream(t, srv.URL+"/v1/watch", "")
	if ev := readEvent(t, br); ev.id != "7" {
		t.Fatalf("first event %+v", ev)
	}
	resp.Body.Close()
	select {
	case ri := <-seen:
		if ri.Route != "/v1/watch" || ri.Code != 200 || !ri.Waited {
			t.Errorf("observed %+v", ri)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream's end was not observed")
	}
}

// TestRoutesAreTheRouteLabels checks that every route of Routes() is the
// label its endpoint's requests get.
func TestRoutesAreTheRouteLabels(t *testing.T) {
	var got RequestInfo
	h := NewHandlerWithOptions(newFake(leaderB), Options{
		Metrics:   http.NotFoundHandler(),
		OnRequest: func(ri RequestInfo) { got = ri },
	})
	for _, route := range Routes() {
		path := strings.ReplaceAll(route, "{identifier}", "server_b")
		serve(h, "HEAD", path) // HEAD: /v1/watch answers at once
		if got.Route != route {
			t.Errorf("HEAD %s: route %q, want %q", path, got.Route, route)
		}
	}
}
