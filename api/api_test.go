package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type fakeBackend struct {
	leader    Peer
	hasLeader bool
}

func (f fakeBackend) Status() Status {
	st := Status{Identifier: "server_a", Role: "follower", Term: 3, Voters: []string{"server_a", "server_b"}}
	if f.hasLeader {
		p := f.leader
		st.Leader = &p
	}
	return st
}

func (f fakeBackend) Leader() (Peer, bool) { return f.leader, f.hasLeader }

func serve(h http.Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestLeaderAndStatus(t *testing.T) {
	b := fakeBackend{leader: Peer{Identifier: "server_b", Host: "localhost", Port: 7002, Metadata: map[string]any{"server_port": 8002.0}}, hasLeader: true}
	h := NewHandler(b)

	rec := serve(h, "GET", "/v1/leader")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/leader: %d %s", rec.Code, rec.Body)
	}
	var p Peer
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Identifier != "server_b" || p.Port != 7002 || p.Metadata["server_port"] != 8002.0 {
		t.Fatalf("leader body %s (%v)", rec.Body, err)
	}

	rec = serve(h, "GET", "/v1/status")
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 200 || st.Leader == nil || st.Leader.Identifier != "server_b" || st.Term != 3 {
		t.Fatalf("status %d %s (%v)", rec.Code, rec.Body, err)
	}
}

func TestNoLeaderIs503WithJSONError(t *testing.T) {
	h := NewHandler(fakeBackend{})
	rec := serve(h, "GET", "/v1/leader")
	var e Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusServiceUnavailable || e.Code != CodeNoLeader || e.Error == "" {
		t.Fatalf("GET /v1/leader without leader: %d %s", rec.Code, rec.Body)
	}
	rec = serve(h, "GET", "/v1/status")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"leader": null`) {
		t.Fatalf("status without leader: %d %s", rec.Code, rec.Body)
	}
}

func TestUnknownEndpointAndMethod(t *testing.T) {
	h := NewHandler(fakeBackend{})
	rec := serve(h, "GET", "/v2/nothing")
	var e Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusNotFound || e.Code != CodeNotFound {
		t.Fatalf("unknown path: %d %s", rec.Code, rec.Body)
	}
	rec = serve(h, "DELETE", "/v1/leader")
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE /v1/leader: %d %s", rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != CodeMethodNotAllowed {
		t.Fatalf("405 body is not a JSON error: %s", rec.Body)
	}
}

// FuzzRequest feeds raw HTTP requests to the handler: it must never panic
// and always answer with a JSON body and a sane status.
func FuzzRequest(f *testing.F) {
	f.Add([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/leader?index=5&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /v1/leader HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/../v1/status HTTP/1.0\r\n\r\n"))
	h := NewHandler(fakeBackend{leader: Peer{Identifier: "a"}, hasLeader: true})
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // the server would have answered 400 before routing
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Code >= 300 && rec.Code < 400 {
			return // ServeMux redirects unclean paths
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%d with a non-JSON body %q for %q", rec.Code, rec.Body, raw)
		}
	})
}
