package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/qcluster/qcluster/internal/latest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeBackend is a Backend whose state the test sets; every set publishes a
// new index and wakes waiters.
type fakeBackend struct {
	mu      sync.Mutex
	st      Status
	changed chan struct{} // closed and replaced by every set
	stopped bool
	waiters int
	watches map[*latest.Slot[Status]]bool // Watch subscribers

	peers       []Member
	peersIndex  uint64
	transferErr error
	transferTo  []string // targets Transfer was called with

	// The membership calls: the error each returns, and what it was
	// called with.
	metaErr, joinErr, removeErr, leaveErr, healthErr error
	metaSet                                          []map[string]any
	health                                           []HealthReport
	joins                                            []JoinRequest
	removed                                          []string
	leaves                                           int
	subs                                             map[chan MemberEvent]bool // Events subscribers

	// The KV store (kvfake_test.go).
	kv       map[string]KeyValue
	kvRev    uint64
	kvErr    error
	kvWrites int

	// Sessions (session_test.go).
	sessions map[uint64]Session
	lockSess map[string]uint64 // lock name: the token it is held with in a session
}

func newFake(leader *Peer) *fakeBackend {
	f := &fakeBackend{
		st:         Status{Identifier: "server_a", Role: "follower", Term: 3, Leader: leader, Index: 7, Voters: []string{"server_a", "server_b"}, Mode: ModeLeader, Joined: true, Check: "none"},
		changed:    make(chan struct{}),
		watches:    map[*latest.Slot[Status]]bool{},
		peersIndex: 70,
		peers: []Member{
			{Peer: Peer{Identifier: "a/b", Host: "localhost", Port: 7009}, Voter: true},
			{Peer: Peer{Identifier: "server_a", Host: "localhost", Port: 7001}, Voter: true, IsSelf: true},
			{Peer: Peer{Identifier: "server_b", Host: "localhost", Port: 7002, Metadata: map[string]any{"server_port": 8002.0}}, Voter: true, IsLeader: leader != nil},
		},
	}
	return f
}

var leaderB = &Peer{Identifier: "server_b", Host: "localhost", Port: 7002, Metadata: map[string]any{"server_port": 8002.0}}

// set changes the state and publishes it with the next index.
func (f *fakeBackend) set(change func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.st)
	f.st.Index++
	close(f.changed)
	f.changed = make(chan struct{})
	for s := range f.watches {
		s.Set(f.st)
	}
}

// setPeers changes the members and publishes them with the next
// membership index.
func (f *fakeBackend) setPeers(change func([]Member) []Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = change(f.peers)
	f.peersIndex++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeBackend) numWatches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watches)
}

func (f *fakeBackend) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	close(f.changed)
	f.changed = make(chan struct{})
	for s := range f.watches {
		delete(f.watches, s)
		s.Close()
	}
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
}

func (f *fakeBackend) numWaiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiters
}

func (f *fakeBackend) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// Watch subscribes until ctx ends or the fake stops.
func (f *fakeBackend) Watch(ctx context.Context) <-chan Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := latest.New[Status]()
	if f.stopped {
		s.Close()
		return s.C()
	}
	s.Set(f.st)
	f.watches[s] = true
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.watches[s] {
			delete(f.watches, s)
			s.Close()
		}
	})
	return s.C()
}

func (f *fakeBackend) Peers() PeerList {
	f.mu.Lock()
	defer f.mu.Unlock()
	return PeerList{Index: f.peersIndex, Peers: f.peers}
}

func (f *fakeBackend) WaitPeers(ctx context.Context, index uint64) (PeerList, error) {
	f.mu.Lock()
	f.waiters++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.waiters--
		f.mu.Unlock()
	}()
	for {
		f.mu.Lock()
		pl, ch, stopped := PeerList{Index: f.peersIndex, Peers: f.peers}, f.changed, f.stopped
		f.mu.Unlock()
		if stopped {
			return PeerList{}, ErrUnavailable
		}
		if pl.Index != index {
			return pl, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return PeerList{}, ctx.Err()
		}
	}
}

func (f *fakeBackend) SetMetadata(ctx context.Context, md map[string]any) (Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metaSet = append(f.metaSet, md)
	if f.metaErr != nil {
		return Member{}, f.metaErr
	}
	return Member{Peer: Peer{Identifier: f.st.Identifier, Host: "localhost", Port: 7001, Metadata: md}, Voter: true, IsSelf: true, Role: "follower", State: "alive", Check: "none"}, nil
}

func (f *fakeBackend) SetHealth(ctx context.Context, report HealthReport) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.health = append(f.health, report)
	if f.healthErr != nil {
		return Status{}, f.healthErr
	}
	st := f.st
	st.Check, st.CheckOutput = report.Status, report.Output
	return st, nil
}

func (f *fakeBackend) Join(ctx context.Context, req JoinRequest) (JoinResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins = append(f.joins, req)
	if f.joinErr != nil {
		return JoinResult{}, f.joinErr
	}
	voter := req.Voter == nil || *req.Voter
	role := "follower"
	if !voter {
		role = "learner"
	}
	m := Member{Peer: Peer{Identifier: req.Identifier, Host: req.Host, Port: req.Port, Metadata: req.Metadata}, Voter: voter, Role: role, State: "unknown", Check: "none"}
	return JoinResult{Member: m, Leader: leaderB, Peers: append(append([]Member(nil), f.peers...), m)}, nil
}

func (f *fakeBackend) RemovePeer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	return f.removeErr
}

func (f *fakeBackend) Leave(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaves++
	return f.leaveErr
}

// Events subscribes until ctx ends or the fake stops.
func (f *fakeBackend) Events(ctx context.Context) <-chan MemberEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan MemberEvent, 16)
	if f.stopped {
		close(ch)
		return ch
	}
	if f.subs == nil {
		f.subs = map[chan MemberEvent]bool{}
	}
	f.subs[ch] = true
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.subs[ch] {
			delete(f.subs, ch)
			close(ch)
		}
	})
	return ch
}

// emit sends ev to every subscriber (dropping it for a full one).
func (f *fakeBackend) emit(ev MemberEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// mutations counts the calls that change the cluster (Transfer, SetMetadata,
// Join, RemovePeer, Leave, and the KV store's KVPut, KVDelete, Lock and
// Unlock), whatever they returned.
func (f *fakeBackend) mutations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.transferTo) + len(f.metaSet) + len(f.joins) + len(f.removed) + f.leaves + f.kvWrites
}

func (f *fakeBackend) numSubs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *fakeBackend) Transfer(ctx context.Context, id string) (TransferResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transferTo = append(f.transferTo, id)
	if f.transferErr != nil {
		return TransferResult{}, f.transferErr
	}
	to := id
	if to == "" {
		to = "server_b"
	}
	return TransferResult{From: "server_a", Leader: &Peer{Identifier: to, Host: "localhost", Port: 7002}, Term: 4, Index: 9, DurationMS: 1.5}, nil
}

func serve(h http.Handler, method, target string) *httptest.ResponseRecorder {
	return serveReq(h, newReq(method, target, nil))
}

// newReq is a request as the API's clients send it: with
// Content-Type: application/json when the method changes the cluster.
func newReq(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	if mutatingMethod(method) {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

// mutatingMethod reports whether method may change the cluster.
func mutatingMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return false
	}
	return true
}

func serveReq(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// wantError checks an error response's status and code.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) Error {
	t.Helper()
	var e Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != status || e.Code != code || e.Error == "" {
		t.Fatalf("got %d %s, want %d with code %q", rec.Code, rec.Body, status, code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return e
}

func TestLeaderAndStatus(t *testing.T) {
	h := NewHandler(newFake(leaderB))

	rec := serve(h, "GET", "/v1/leader")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/leader: %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get(IndexHeader); got != "7" {
		t.Errorf("%s = %q, want 7", IndexHeader, got)
	}
	var p Peer
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Identifier != "server_b" || p.Port != 7002 || p.Metadata["server_port"] != 8002.0 {
		t.Fatalf("leader body %s (%v)", rec.Body, err)
	}

	rec = serve(h, "GET", "/v1/status")
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 200 || st.Leader == nil || st.Leader.Identifier != "server_b" || st.Term != 3 || st.Index != 7 {
		t.Fatalf("status %d %s (%v)", rec.Code, rec.Body, err)
	}
	if got := rec.Header().Get(IndexHeader); got != "7" {
		t.Errorf("status %s = %q, want 7", IndexHeader, got)
	}
	if rec := serve(h, "HEAD", "/v1/status"); rec.Code != 200 {
		t.Errorf("HEAD /v1/status: %d", rec.Code)
	}
}

func TestNoLeaderIs503WithJSONError(t *testing.T) {
	h := NewHandler(newFake(nil))
	rec := serve(h, "GET", "/v1/leader")
	wantError(t, rec, http.StatusServiceUnavailable, CodeNoLeader)
	if rec.Header().Get(IndexHeader) != "7" {
		t.Errorf("503 without %s", IndexHeader)
	}
	rec = serve(h, "GET", "/v1/status")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"leader": null`) {
		t.Fatalf("status without leader: %d %s", rec.Code, rec.Body)
	}
}

func TestUnknownEndpointAndMethod(t *testing.T) {
	h := NewHandler(newFake(nil))
	wantError(t, serve(h, "GET", "/v2/nothing"), http.StatusNotFound, CodeNotFound)
	wantError(t, serve(h, "GET", "/v1/peers/"), http.StatusNotFound, CodeNotFound)
	rec := serve(h, "DELETE", "/v1/leader")
	wantError(t, rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", rec.Header().Get("Allow"))
	}
	for _, path := range []string{"/v1/leader/transfer", "/v1/leader/resign"} {
		rec := serve(h, "GET", path)
		wantError(t, rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
		if rec.Header().Get("Allow") != "POST" {
			t.Errorf("%s Allow %q", path, rec.Header().Get("Allow"))
		}
	}
	for _, path := range []string{"/v1/status", "/v1/peers", "/v1/peers/server_a", "/v1/watch", "/healthz", "/readyz"} {
		wantError(t, serve(h, "POST", path), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	}
	req := httptest.NewRequest("OPTIONS", "/", nil)
	req.URL.Path, req.RequestURI = "*", "*"
	wantError(t, serveReq(h, req), http.StatusBadRequest, CodeBadRequest)
}

func TestPeers(t *testing.T) {
	h := NewHandler(newFake(leaderB))
	rec := serve(h, "GET", "/v1/peers")
	var list PeerList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != 200 || len(list.Peers) != 3 || list.Index != 70 {
		t.Fatalf("GET /v1/peers: %d %s (%v)", rec.Code, rec.Body, err)
	}
	// The index is the membership index, not the leadership one.
	if got := rec.Header().Get(IndexHeader); got != "70" {
		t.Errorf("GET /v1/peers: %s %q, want the membership index 70", IndexHeader, got)
	}
	// Member's Peer fields are at the top level of each object.
	if !strings.Contains(rec.Body.String(), `"identifier": "server_b",`) || !strings.Contains(rec.Body.String(), `"is_leader": true`) {
		t.Errorf("peers JSON shape: %s", rec.Body)
	}
	b := list.Peers[2]
	if b.Identifier != "server_b" || b.Port != 7002 || !b.IsLeader || b.IsSelf || !b.Voter || b.Metadata["server_port"] != 8002.0 {
		t.Errorf("server_b: %+v", b)
	}

	rec = serve(h, "GET", "/v1/peers/server_a")
	var m Member
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || rec.Code != 200 || m.Identifier != "server_a" || !m.IsSelf {
		t.Fatalf("GET /v1/peers/server_a: %d %s", rec.Code, rec.Body)
	}
	// An identifier with a slash, escaped in the path.
	rec = serve(h, "GET", "/v1/peers/a%2Fb")
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || rec.Code != 200 || m.Identifier != "a/b" {
		t.Fatalf("GET /v1/peers/a%%2Fb: %d %s", rec.Code, rec.Body)
	}
	e := wantError(t, serve(h, "GET", "/v1/peers/nobody"), http.StatusNotFound, CodeUnknownPeer)
	if !strings.Contains(e.Error, `"nobody"`) {
		t.Errorf("unknown peer message %q", e.Error)
	}
}

func TestHealthAndReady(t *testing.T) {
	f := newFake(nil)
	h := NewHandler(f)
	rec := serve(h, "GET", "/healthz")
	var hl Health
	if err := json.Unmarshal(rec.Body.Bytes(), &hl); err != nil || rec.Code != 200 || hl.Status != "ok" {
		t.Fatalf("healthz: %d %s", rec.Code, rec.Body)
	}
	wantError(t, serve(h, "GET", "/readyz"), http.StatusServiceUnavailable, CodeNoLeader)
	f.set(func(s *Status) { s.Leader = leaderB })
	rec = serve(h, "GET", "/readyz")
	if err := json.Unmarshal(rec.Body.Bytes(), &hl); err != nil || rec.Code != 200 || hl.Status != "ready" || hl.Leader != "server_b" {
		t.Fatalf("readyz with a leader: %d %s", rec.Code, rec.Body)
	}
}

func TestBlockingQueryParameters(t *testing.T) {
	h := NewHandler(newFake(leaderB))
	for _, q := range []string{
		"index=abc", "index=-1", "index=1.5", "index=", "index=99999999999999999999",
		"index=7&wait=5", "index=7&wait=abc", "index=7&wait=-1s", "wait=fast", "index=7&wait=",
		"index=%zz",
	} {
		for _, path := range []string{"/v1/leader", "/v1/status"} {
			rec := serve(h, "GET", path+"?"+q)
			e := wantError(t, rec, http.StatusBadRequest, CodeBadRequest)
			if strings.Contains(q, "wait") && !strings.Contains(q, "zz") && !strings.Contains(e.Error, "wait") {
				t.Errorf("%s?%s: message %q does not name wait", path, q, e.Error)
			}
		}
	}
	// A wait without an index, or an index that differs, answers at once.
	for _, q := range []string{"wait=1h", "index=0", "index=6&wait=1h", "index=8&wait=1h"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec := serveReq(h, httptest.NewRequestWithContext(ctx, "GET", "/v1/leader?"+q, nil))
		cancel()
		if rec.Code != 200 || rec.Header().Get(IndexHeader) != "7" {
			t.Errorf("?%s: %d %s", q, rec.Code, rec.Body)
		}
	}
}

func TestBlockingQueryWaitsForChange(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandler(f)
	for _, path := range []string{"/v1/leader", "/v1/status"} {
		idx := f.Status().Index
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() {
			done <- serve(h, "GET", fmt.Sprintf("%s?index=%d&wait=30s", path, idx))
		}()
		waitFor(t, 5*time.Second, "the query to wait", func() bool { return f.numWatches() == 1 })
		select {
		case rec := <-done:
			t.Fatalf("%s answered before a change: %d %s", path, rec.Code, rec.Body)
		default:
		}
		f.set(func(s *Status) { s.Term++ })
		select {
		case rec := <-done:
			if rec.Code != 200 || rec.Header().Get(IndexHeader) != strconv.FormatUint(idx+1, 10) {
				t.Fatalf("%s after a change: %d %s %v", path, rec.Code, rec.Body, rec.Header())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not answer after a change", path)
		}
	}

	// The change is to "no leader": the leader query answers 503.
	idx := f.Status().Index
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- serve(h, "GET", fmt.Sprintf("/v1/leader?index=%d", idx)) }()
	waitFor(t, 5*time.Second, "the query to wait", func() bool { return f.numWatches() == 1 })
	f.set(func(s *Status) { s.Leader = nil })
	rec := <-done
	wantError(t, rec, http.StatusServiceUnavailable, CodeNoLeader)
	if rec.Header().Get(IndexHeader) != strconv.FormatUint(idx+1, 10) {
		t.Errorf("503 index %q", rec.Header().Get(IndexHeader))
	}
}

func TestBlockingQueryTimesOutAndIsCapped(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{MaxWait: 50 * time.Millisecond})
	start := time.Now()
	// Each query waits at least as long as asked (timers never fire
	// early); a 1h wait that were not capped would hang the test.
	timed := func(target string, atLeast time.Duration) *httptest.ResponseRecorder {
		t.Helper()
		t0 := time.Now()
		rec := serve(h, "GET", target)
		if d := time.Since(t0); d < atLeast {
			t.Errorf("%s answered after %v, before its wait of %v", target, d, atLeast)
		}
		return rec
	}
	rec := timed("/v1/leader?index=7&wait=20ms", 20*time.Millisecond)
	if rec.Code != 200 || rec.Header().Get(IndexHeader) != "7" {
		t.Fatalf("timed-out query: %d %s", rec.Code, rec.Body)
	}
	rec = timed("/v1/leader?index=7&wait=1h", 50*time.Millisecond) // capped at MaxWait
	if rec.Code != 200 || rec.Header().Get(IndexHeader) != "7" {
		t.Fatalf("capped query: %d %s", rec.Code, rec.Body)
	}
	rec = timed("/v1/leader?index=7", 50*time.Millisecond) // default wait is MaxWait
	if rec.Code != 200 {
		t.Fatalf("default-wait query: %d %s", rec.Code, rec.Body)
	}
	t.Logf("three timed-out queries (20ms, capped 1h, default) took %v", time.Since(start))

	// The client leaves: the handler returns without an answer.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveReq(NewHandler(f), httptest.NewRequestWithContext(ctx, "GET", "/v1/status?index=7", nil))
	}()
	waitFor(t, 5*time.Second, "the query to wait", func() bool { return f.numWatches() == 1 })
	cancel()
	<-done
	waitFor(t, 5*time.Second, "the query's subscription to end", func() bool { return f.numWatches() == 0 })

	// The peer stops: 503 unavailable.
	go func() { f.stop() }()
	wantError(t, serve(h, "GET", "/v1/status?index=7&wait=10s"), http.StatusServiceUnavailable, CodeUnavailable)
}

func TestTransferAndResign(t *testing.T) {
	f := newFake(&Peer{Identifier: "server_a", Host: "localhost", Port: 7001})
	h := NewHandlerWithOptions(f, Options{MaxBodyBytes: 64})
	post := func(target, body string) *httptest.ResponseRecorder {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		return serveReq(h, newReq("POST", target, r))
	}
	for _, tc := range []struct{ target, body, want string }{
		{"/v1/leader/transfer", `{"identifier": "server_c"}`, "server_c"},
		{"/v1/leader/transfer?to=server_c", "", "server_c"},
		{"/v1/leader/transfer?to=server_c", `{"identifier": "server_c"}`, "server_c"},
		{"/v1/leader/transfer", "", ""},
		{"/v1/leader/transfer", "{}", ""},
		{"/v1/leader/resign", "", ""},
		{"/v1/leader/resign", " {} ", ""},
	} {
		f.transferTo = nil
		rec := post(tc.target, tc.body)
		var res TransferResult
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 || res.From != "server_a" || res.Leader == nil {
			t.Fatalf("POST %s %q: %d %s", tc.target, tc.body, rec.Code, rec.Body)
		}
		if len(f.transferTo) != 1 || f.transferTo[0] != tc.want {
			t.Errorf("POST %s %q: Transfer called with %q, want %q", tc.target, tc.body, f.transferTo, tc.want)
		}
		if rec.Header().Get(IndexHeader) != "9" {
			t.Errorf("transfer index header %q", rec.Header().Get(IndexHeader))
		}
	}

	f.transferTo = nil
	for _, tc := range []struct{ target, body string }{
		{"/v1/leader/transfer?to=server_b", `{"identifier": "server_c"}`},
		{"/v1/leader/transfer?to=", ""},
		{"/v1/leader/transfer", `{"identifer": "server_c"}`},
		{"/v1/leader/transfer", `{"identifier": 3}`},
		{"/v1/leader/transfer", `["server_c"]`},
		{"/v1/leader/transfer", `{"identifier": "a"} {}`},
		{"/v1/leader/transfer", `{"identifier": `},
		{"/v1/leader/transfer?to=%zz", ""},
		{"/v1/leader/resign", `{"identifier": "server_c"}`},
	} {
		wantError(t, post(tc.target, tc.body), http.StatusBadRequest, CodeBadRequest)
	}
	wantError(t, post("/v1/leader/transfer", `{"identifier": "`+strings.Repeat("x", 100)+`"}`), http.StatusRequestEntityTooLarge, CodeTooLarge)
	wantError(t, post("/v1/leader/resign", strings.Repeat(" ", 100)), http.StatusRequestEntityTooLarge, CodeTooLarge)
	if len(f.transferTo) != 0 {
		t.Errorf("bad requests reached the backend: %q", f.transferTo)
	}

	// Backend errors.
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: %q is not another member", ErrUnknownPeer, "x"), 400, CodeUnknownPeer},
		{ErrNoTransferee, 409, CodeNoTransferee},
		{ErrUnavailable, 503, CodeUnavailable},
		{fmt.Errorf("leadership did not move: %w", context.DeadlineExceeded), 504, CodeTimeout},
		{errors.New("disk on fire"), 500, CodeInternal},
	} {
		f.transferErr = tc.err
		wantError(t, post("/v1/leader/transfer?to=x", ""), tc.status, tc.code)
	}

	// On a follower: 409 with the leader, or 503 when there is none.
	f.transferErr = ErrNotLeader
	f.set(func(s *Status) { s.Leader = leaderB })
	e := wantError(t, post("/v1/leader/resign", ""), http.StatusConflict, CodeNotLeader)
	if e.Leader == nil || e.Leader.Identifier != "server_b" || e.Leader.Port != 7002 || !strings.Contains(e.Error, "server_b") {
		t.Errorf("not_leader error: %+v", e)
	}
	f.set(func(s *Status) { s.Leader = nil })
	wantError(t, post("/v1/leader/transfer", ""), http.StatusServiceUnavailable, CodeNoLeader)
}

func TestAuth(t *testing.T) {
	const token = "s3cret-token"
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{Token: token})
	post := func(path, auth string) *httptest.ResponseRecorder {
		r := newReq("POST", path, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return serveReq(h, r)
	}
	for _, path := range []string{"/v1/leader/transfer", "/v1/leader/resign"} {
		for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Basic " + token, token, "Bearer " + token + "x", "Bearer " + token[:5]} {
			rec := post(path, auth)
			e := wantError(t, rec, http.StatusUnauthorized, CodeUnauthorized)
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: %v", rec.Header())
			}
			if strings.Contains(e.Error, token) {
				t.Errorf("401 message leaks the token: %q", e.Error)
			}
		}
		for _, auth := range []string{"Bearer " + token, "bearer " + token, "Bearer  " + token} {
			if rec := post(path, auth); rec.Code != 200 {
				t.Errorf("POST %s with %q: %d %s", path, auth, rec.Code, rec.Body)
			}
		}
	}
	if n := len(f.transferTo); n != 6 {
		t.Errorf("Transfer called %d times, want 6 (only with the token)", n)
	}
	// The 401 comes before the body is looked at.
	r := httptest.NewRequest("POST", "/v1/leader/transfer", strings.NewReader(strings.Repeat("x", 1<<20)))
	wantError(t, serveReq(h, r), http.StatusUnauthorized, CodeUnauthorized)
	// Reads need no token.
	for _, path := range []string{"/v1/status", "/v1/leader", "/v1/peers", "/healthz", "/readyz"} {
		if rec := serve(h, "GET", path); rec.Code != 200 {
			t.Errorf("GET %s with a token configured: %d", path, rec.Code)
		}
	}
	// Without a configured token, POST needs none.
	if rec := serveReq(NewHandler(f), newReq("POST", "/v1/leader/resign", nil)); rec.Code != 200 {
		t.Errorf("POST without a configured token: %d %s", rec.Code, rec.Body)
	}
}

// sseEvent is one event (or comment block) read from a stream.
type sseEvent struct {
	id, event, data, comment string
	retry                    string
}

// readEvent reads lines up to the next blank line.
func readEvent(t *testing.T, br *bufio.Reader) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v (partial %+v)", err, ev)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return ev
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "":
			ev.comment = v
		case "id":
			ev.id = v
		case "event":
			ev.event = v
		case "data":
			ev.data = v
		case "retry":
			ev.retry = v
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
}

func openStream(t *testing.T, url, lastID string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/watch: %s %v", resp.Status, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	if ev := readEvent(t, br); ev.retry == "" {
		t.Fatalf("first block %+v, want a retry hint", ev)
	}
	return resp, br
}

func TestWatchStream(t *testing.T) {
	f := newFake(leaderB)
	srv := httptest.NewServer(NewHandlerWithOptions(f, Options{KeepAlive: 30 * time.Millisecond}))
	defer srv.Close()
	url := srv.URL + "/v1/watch"

	// A new client gets the current state at once, then every change.
	resp, br := openStream(t, url, "")
	if resp.Header.Get(IndexHeader) != "7" {
		t.Errorf("stream %s %q", IndexHeader, resp.Header.Get(IndexHeader))
	}
	ev := readEvent(t, br)
	var st Status
	if ev.event != EventLeader || ev.id != "7" || json.Unmarshal([]byte(ev.data), &st) != nil || st.Leader == nil || st.Index != 7 {
		t.Fatalf("first event %+v", ev)
	}
	f.set(func(s *Status) { s.Leader = nil })
	for ev = readEvent(t, br); ev.comment != ""; ev = readEvent(t, br) {
	}
	if ev.id != "8" || json.Unmarshal([]byte(ev.data), &st) != nil || st.Leader != nil {
		t.Fatalf("change event %+v", ev)
	}
	// Nothing changes: keep-alive comments.
	if ev = readEvent(t, br); ev.comment != "keep-alive" {
		t.Fatalf("want a keep-alive comment, got %+v", ev)
	}

	// A client that reconnects up to date gets no event until a change.
	_, br2 := openStream(t, url, "8")
	if ev := readEvent(t, br2); ev.comment != "keep-alive" {
		t.Fatalf("up-to-date reconnect got %+v, want a keep-alive first", ev)
	}
	f.set(func(s *Status) { s.Leader = leaderB })
	for ev = readEvent(t, br2); ev.comment != ""; ev = readEvent(t, br2) {
	}
	if ev.id != "9" {
		t.Fatalf("after reconnect: %+v", ev)
	}
	// A client that reconnects behind (or from before a restart) gets the
	// current state at once.
	for _, last := range []string{"3", "1000"} {
		_, br3 := openStream(t, url, last)
		if ev := readEvent(t, br3); ev.id != "9" || ev.event != EventLeader {
			t.Fatalf("reconnect with Last-Event-ID %s got %+v, want the current state", last, ev)
		}
	}

	// A bad Last-Event-ID is a 400.
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Last-Event-ID", "x")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 400 {
		t.Errorf("bad Last-Event-ID: %s", r.Status)
	}

	// The peer stops: every stream ends.
	f.stop()
	for _, b := range []*bufio.Reader{br, br2} {
		if _, err := io.ReadAll(b); err != nil {
			t.Errorf("stream did not end cleanly: %v", err)
		}
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// FuzzRequest feeds raw HTTP requests to the handler: it must never panic
// and always answer with a JSON body (or an event stream) and a sane status.
// It serves each request twice, with and without an API token, and checks
// that no request reaches a Backend call that changes the cluster without
// the token (when one is set), without a JSON Content-Type, or from a web
// page of another origin.
func FuzzRequest(f *testing.F) {
	f.Add([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/leader?index=5&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/leader?index=7&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/peers?index=7&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /v1/leader HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("POST /v1/leader/transfer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"identifier\": \"b\"}\n"))
	f.Add([]byte("POST /v1/leader/resign?to=x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("GET /v1/peers/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/watch HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n"))
	f.Add([]byte("GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /v1/join HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"identifier\": \"d\", \"host\": \"h\", \"port\": 7004}\n"))
	f.Add([]byte("PUT /v1/self/metadata HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 24\r\n\r\n{\"metadata\": {\"a\": 1}}\n"))
	f.Add([]byte("DELETE /v1/peers/server_b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\n\r\n"))
	f.Add([]byte("POST /v1/self/leave HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("POST /v1/self/leave HTTP/1.1\r\nHost: x:7001\r\nOrigin: http://x:7001\r\nContent-Type: application/json\r\n\r\n"))
	// Issue 16: what a page of another site makes a browser send.
	f.Add([]byte("POST /v1/self/leave HTTP/1.1\r\nHost: 127.0.0.1:7003\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("POST /v1/leader/resign HTTP/1.1\r\nHost: 127.0.0.1:7003\r\nOrigin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b"))
	f.Add([]byte("POST /v1/leader/resign HTTP/1.1\r\nHost: 127.0.0.1:7003\r\nSec-Fetch-Site: same-site\r\nContent-Type: application/json\r\n\r\n"))
	f.Add([]byte("GET /v1/../v1/status HTTP/1.0\r\n\r\n"))
	f.Add([]byte("PUT /v1/kv/config/db?cas=0&ephemeral HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{\"value\": \"aGVsbG8=\"}"))
	f.Add([]byte("PUT /v1/kv/a%2Fb HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("DELETE /v1/kv/config/db?cas=3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\n\r\n"))
	f.Add([]byte("DELETE /v1/kv/x HTTP/1.1\r\nHost: x:7001\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\n\r\n"))
	f.Add([]byte("GET /v1/kv/config/?prefix&stale&index=3&wait=1s HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /v1/kv-watch?prefix=config/&from=2 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 6.1\r\n\r\n"))
	f.Add([]byte("POST /v1/locks/backup?wait=1s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\n\r\n"))
	f.Add([]byte("POST /v1/locks/backup HTTP/1.1\r\nHost: x\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\n\r\n"))
	withToken := newFake(leaderB)
	open := newFake(leaderB)
	handlers := []struct {
		fb    *fakeBackend
		h     http.Handler
		token bool
	}{
		{withToken, NewHandlerWithOptions(withToken, Options{Token: "t", MaxWait: time.Millisecond, KeepAlive: time.Millisecond}), true},
		{open, NewHandlerWithOptions(open, Options{MaxWait: time.Millisecond, KeepAlive: time.Millisecond}), false},
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, hc := range handlers {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil {
				return // the server would have answered 400 before routing
			}
			// Streams run until the client leaves: leave soon.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			defer cancel()
			rec := httptest.NewRecorder()
			before := hc.fb.mutations()
			hc.h.ServeHTTP(rec, req.WithContext(ctx))
			if hc.fb.mutations() != before {
				if hc.token && !fuzzHasToken(req, "t") {
					t.Fatalf("a change reached the Backend without the token: %q", raw)
				}
				if why := fuzzCrossSite(req); why != "" {
					t.Fatalf("a change reached the Backend %s: %q", why, raw)
				}
			}
			if rec.Code < 200 || rec.Code > 599 {
				t.Fatalf("status %d", rec.Code)
			}
			if rec.Code >= 300 && rec.Code < 400 {
				continue // ServeMux redirects unclean paths
			}
			if rec.Header().Get("Content-Type") == "text/event-stream" {
				continue
			}
			if ctx.Err() != nil && rec.Body.Len() == 0 {
				continue // the client left (the machine is slow): no answer is due
			}
			if !json.Valid(rec.Body.Bytes()) && req.Method != http.MethodHead {
				t.Fatalf("%d with a non-JSON body %q for %q", rec.Code, rec.Body, raw)
			}
		}
	})
}

// fuzzHasToken is FuzzRequest's own reading of the bearer token.
func fuzzHasToken(r *http.Request, token string) bool {
	auth := r.Header.Values("Authorization")
	if len(auth) == 0 {
		return false
	}
	scheme, tok, ok := strings.Cut(auth[0], " ")
	return ok && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(tok) == token
}

// fuzzCrossSite is FuzzRequest's own reading of the cross-site rules: it
// says why r must not change the cluster, or "".
func fuzzCrossSite(r *http.Request) string {
	ct := r.Header.Values("Content-Type")
	if len(ct) != 1 {
		return "without exactly one Content-Type"
	}
	mt, _, _ := strings.Cut(ct[0], ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		return "without Content-Type: application/json"
	}
	for _, site := range r.Header.Values("Sec-Fetch-Site") {
		if site != "same-origin" && site != "none" {
			return "with Sec-Fetch-Site: " + site
		}
	}
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return ""
	}
	if len(origins) > 1 {
		return "with two Origin headers"
	}
	// The peer's own origin, as http://host[:port] (the fuzzed requests
	// are not TLS); the default port may be written or not.
	strip := func(s string) string { return strings.TrimSuffix(strings.ToLower(s), ":80") }
	if strip(origins[0]) != strip("http://"+r.Host) {
		return "from the origin " + origins[0] + " (the peer is http://" + r.Host + ")"
	}
	return ""
}
