package qcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/apibackend"
	"github.com/qcluster/qcluster/internal/openapicheck"
)

const testToken = "test-token-0123456789"

// newAPITestCluster is newTestCluster with an API token in every config.
func newAPITestCluster(t testing.TB, n int, token string) *testCluster {
	t.Helper()
	return newTestCluster(t, n, func(c *Config) { c.APIToken = token })
}

// httpc is a small HTTP client for the tests, with its own connections.
type httpc struct {
	t  testing.TB
	hc *http.Client
}

func newHTTPC(t testing.TB) *httpc {
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	return &httpc{t: t, hc: &http.Client{Transport: tr}}
}

// do sends a request to peer c and returns the response (body read) .
func (h *httpc) do(c *Cluster, method, path, token, body string) (*http.Response, []byte) {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+c.Addr()+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("Content-Type", "application/json") // as every client of the API
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	checkOpenAPI(h.t, req, resp, b)
	return resp, b
}

// openAPISpec is api/openapi.json, parsed once for every test.
var openAPISpec = sync.OnceValues(func() (*openapicheck.Spec, error) { return openapicheck.New(api.OpenAPI()) })

// checkOpenAPI checks a real peer's answer against the OpenAPI document:
// its status, headers and body must be described there. Answers to paths
// or methods the API does not have (404 not_found, 405) are not operations
// of the document and are left to the tests that send them.
func checkOpenAPI(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	spec, err := openAPISpec()
	if err != nil {
		t.Fatal(err)
	}
	tpl, ok := spec.Template(req.URL.Path)
	if !ok || resp.StatusCode == http.StatusMethodNotAllowed {
		return
	}
	m := req.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	if !slices.Contains(spec.Methods(tpl), m) {
		return
	}
	if err := spec.Check(req.Method, req.URL.Path, resp.StatusCode, resp.Header, body); err != nil {
		t.Errorf("the answer of a real peer is not what api/openapi.json describes: %v", err)
	}
}

// get decodes a 200 answer into v.
func (h *httpc) get(c *Cluster, path string, v any) *http.Response {
	h.t.Helper()
	resp, b := h.do(c, "GET", path, "", "")
	if resp.StatusCode != 200 {
		h.t.Fatalf("GET %s on %s: %s %s", path, c.cfg.Identifier, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		h.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
	return resp
}

// wantErr checks an error answer and returns it.
func (h *httpc) wantErr(resp *http.Response, b []byte, status int, code string) api.Error {
	h.t.Helper()
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != status || e.Code != code {
		h.t.Fatalf("%s %s: got %s %s, want %d %q", resp.Request.Method, resp.Request.URL.Path, resp.Status, b, status, code)
	}
	return e
}

func indexOf(t testing.TB, resp *http.Response) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(resp.Header.Get(api.IndexHeader), 10, 64)
	if err != nil {
		t.Fatalf("%s %s: bad %s header %q", resp.Request.Method, resp.Request.URL.Path, api.IndexHeader, resp.Header.Get(api.IndexHeader))
	}
	return n
}

func TestAPIReadEndpoints(t *testing.T) {
	tc := newAPITestCluster(t, 3, testToken)
	leader := tc.waitLeader(5 * time.Second)
	h := newHTTPC(t)
	for i, p := range tc.peers {
		var st api.Status
		resp := h.get(p, "/v1/status", &st)
		if st.Identifier != p.cfg.Identifier || st.Leader == nil || st.Leader.Identifier != leader.cfg.Identifier ||
			st.IsLeader != (p == leader) || st.Term == 0 || !slices.Equal(st.Voters, []string{"p0", "p1", "p2"}) {
			t.Errorf("%s status %+v", p.cfg.Identifier, st)
		}
		if idx := indexOf(t, resp); idx < st.Index || st.Index == 0 {
			t.Errorf("%s: header index %d, body index %d", p.cfg.Identifier, idx, st.Index)
		}
		if p == leader && (st.LeaseRemainingMS <= 0 || st.LeaseRemainingMS > float64(time.Duration(p.cfg.ElectionTimeout).Milliseconds())) {
			t.Errorf("leader lease_remaining_ms %v", st.LeaseRemainingMS)
		}

		var lp api.Peer
		resp = h.get(p, "/v1/leader", &lp)
		indexOf(t, resp)
		if lp.Identifier != leader.cfg.Identifier || lp.Port != leader.cfg.ListenPort || lp.Host != "127.0.0.1" ||
			lp.Metadata["index"] != float64(tc.index(leader)) {
			t.Errorf("%s leader %+v", p.cfg.Identifier, lp)
		}

		var list api.PeerList
		resp = h.get(p, "/v1/peers", &list)
		if len(list.Peers) != 3 || indexOf(t, resp) != list.Index {
			t.Fatalf("%s peers %+v", p.cfg.Identifier, list)
		}
		for j, m := range list.Peers {
			want := tc.cfgs[j]
			if m.Identifier != want.Identifier || m.Port != want.ListenPort || m.Host != "127.0.0.1" || !m.Voter ||
				m.IsSelf != (j == i) || m.IsLeader != (tc.peers[j] == leader) || m.Metadata["index"] != float64(j) {
				t.Errorf("%s peers[%d] = %+v", p.cfg.Identifier, j, m)
			}
		}
		var m api.Member
		h.get(p, "/v1/peers/p2", &m)
		if m.Identifier != "p2" || m.Port != tc.cfgs[2].ListenPort || m.IsSelf != (i == 2) {
			t.Errorf("GET /v1/peers/p2 on %s: %+v", p.cfg.Identifier, m)
		}
		resp, b := h.do(p, "GET", "/v1/peers/p9", "", "")
		h.wantErr(resp, b, 404, api.CodeUnknownPeer)

		var hl api.Health
		h.get(p, "/healthz", &hl)
		if hl.Status != "ok" || hl.Identifier != p.cfg.Identifier {
			t.Errorf("healthz %+v", hl)
		}
		h.get(p, "/readyz", &hl)
		if hl.Status != "ready" || hl.Leader != leader.cfg.Identifier {
			t.Errorf("readyz %+v", hl)
		}
	}

	f := tc.peers[(tc.index(leader)+1)%3]
	for _, q := range []string{"index=x", "index=1&wait=10", "index=1&wait=-5s", "wait=soon"} {
		resp, b := h.do(f, "GET", "/v1/leader?"+q, "", "")
		h.wantErr(resp, b, 400, api.CodeBadRequest)
	}
	resp, b := h.do(f, "GET", "/v2/leader", "", "")
	h.wantErr(resp, b, 404, api.CodeNotFound)
	resp, b = h.do(f, "PUT", "/v1/leader", "", "")
	h.wantErr(resp, b, 405, api.CodeMethodNotAllowed)
}

func TestAPIMutatingEndpointsAuthAndErrors(t *testing.T) {
	tc := newAPITestCluster(t, 3, testToken)
	leader := tc.waitLeader(5 * time.Second)
	f := tc.peers[(tc.index(leader)+1)%3]
	h := newHTTPC(t)
	for _, path := range []string{"/v1/leader/transfer", "/v1/leader/resign"} {
		for _, p := range []*Cluster{leader, f} {
			for _, tok := range []string{"", "wrong", testToken + "0"} {
				resp, b := h.do(p, "POST", path, tok, "")
				h.wantErr(resp, b, 401, api.CodeUnauthorized)
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
			}
		}
		// A follower refuses with the leader to ask instead.
		resp, b := h.do(f, "POST", path, testToken, "")
		e := h.wantErr(resp, b, 409, api.CodeNotLeader)
		if e.Leader == nil || e.Leader.Identifier != leader.cfg.Identifier || e.Leader.Port != leader.cfg.ListenPort {
			t.Errorf("not_leader names %+v, want %s", e.Leader, leader.cfg.Identifier)
		}
	}
	// Bad requests to the leader change nothing.
	term := leader.Term()
	for _, tcase := range []struct {
		path, body string
		status     int
		code       string
	}{
		{"/v1/leader/transfer", `{"identifier": "p9"}`, 400, api.CodeUnknownPeer},
		{"/v1/leader/transfer?to=" + leader.cfg.Identifier, "", 400, api.CodeUnknownPeer},
		{"/v1/leader/transfer", `{"identifier": 1}`, 400, api.CodeBadRequest},
		{"/v1/leader/transfer", `{"target": "p1"}`, 400, api.CodeBadRequest},
		{"/v1/leader/transfer", `{"identifier": "` + strings.Repeat("p", 70<<10) + `"}`, 413, api.CodeTooLarge},
		{"/v1/leader/resign", `{"identifier": "p1"}`, 400, api.CodeBadRequest},
	} {
		resp, b := h.do(leader, "POST", tcase.path, testToken, tcase.body)
		h.wantErr(resp, b, tcase.status, tcase.code)
	}
	if !leader.IsLeader() || leader.Term() != term {
		t.Fatalf("bad requests moved leadership: leader %v, term %d -> %d", leader.IsLeader(), term, leader.Term())
	}
}

// TestAPIWithoutLeader: with no majority, reads say so and readyz fails.
func TestAPIWithoutLeader(t *testing.T) {
	tc := newAPITestCluster(t, 3, "")
	tc.waitLeader(5 * time.Second)
	tc.stop(1)
	tc.stop(2)
	p := tc.peers[0]
	h := newHTTPC(t)
	// A stopped leader hands over first, so p0 may lead for a moment (a
	// majority elected it before the second peer went) until its lease,
	// without a majority, runs out: wait for the state to settle.
	waitFor(t, 10*time.Second, "p0 to know no leader", func() bool {
		_, ok := p.Leader()
		resp, _ := h.do(p, "GET", "/v1/leader", "", "")
		return !ok && resp.StatusCode == 503
	})
	resp, b := h.do(p, "GET", "/v1/leader", "", "")
	h.wantErr(resp, b, 503, api.CodeNoLeader)
	indexOf(t, resp)
	resp, b = h.do(p, "GET", "/readyz", "", "")
	h.wantErr(resp, b, 503, api.CodeNoLeader)
	resp, b = h.do(p, "POST", "/v1/leader/resign", "", "")
	h.wantErr(resp, b, 503, api.CodeNoLeader)
	var hl api.Health
	h.get(p, "/healthz", &hl) // alive all the same
	var st api.Status
	h.get(p, "/v1/status", &st)
	if st.Leader != nil || st.IsLeader {
		t.Errorf("status without a majority: %+v", st)
	}
}

// leaseSampler records, every 200µs, which peers hold the lease, to measure
// how long nobody does during a hand-over.
type leaseSampler struct {
	stop, done chan struct{}
	maxGap     time.Duration
	two        bool
}

func sampleLeases(tc *testCluster) *leaseSampler {
	s := &leaseSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		lastHeld := time.Now()
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			n := 0
			for _, p := range tc.peers {
				if p != nil && p.IsLeader() {
					n++
				}
			}
			now := time.Now()
			if n > 1 {
				s.two = true
			}
			if n > 0 {
				lastHeld = now
			} else if gap := now.Sub(lastHeld); gap > s.maxGap {
				s.maxGap = gap
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return s
}

func (s *leaseSampler) end() { close(s.stop); <-s.done }

func TestAPITransferAndResignMoveLeadership(t *testing.T) {
	tc := newAPITestCluster(t, 3, testToken)
	leader := tc.waitLeader(5 * time.Second)
	h := newHTTPC(t)
	var durations, gaps []time.Duration
	for round := range 6 {
		target := tc.peers[(tc.index(leader)+1+round%2)%3]
		path, body := "/v1/leader/transfer", fmt.Sprintf(`{"identifier": %q}`, target.cfg.Identifier)
		switch round % 3 {
		case 1:
			path, body = "/v1/leader/transfer?to="+target.cfg.Identifier, ""
		case 2:
			path, body = "/v1/leader/resign", ""
		}
		s := sampleLeases(tc)
		start := time.Now()
		resp, b := h.do(leader, "POST", path, testToken, body)
		took := time.Since(start)
		if resp.StatusCode != 200 {
			s.end()
			t.Fatalf("round %d: POST %s on %s: %s %s", round, path, leader.cfg.Identifier, resp.Status, b)
		}
		var res api.TransferResult
		if err := json.Unmarshal(b, &res); err != nil || res.From != leader.cfg.Identifier || res.Leader == nil || res.Leader.Identifier == leader.cfg.Identifier {
			s.end()
			t.Fatalf("round %d: result %s", round, b)
		}
		if body != "" || strings.Contains(path, "?to=") {
			if res.Leader.Identifier != target.cfg.Identifier {
				t.Fatalf("round %d: leadership went to %s, want %s", round, res.Leader.Identifier, target.cfg.Identifier)
			}
		}
		next := tc.waitLeader(5 * time.Second)
		s.end()
		if s.two {
			t.Fatalf("round %d: two peers held the lease at once", round)
		}
		if next.cfg.Identifier != res.Leader.Identifier {
			t.Fatalf("round %d: result names %s, the cluster agrees on %s", round, res.Leader.Identifier, next.cfg.Identifier)
		}
		if res.Term == 0 {
			t.Errorf("round %d: term %d", round, res.Term)
		}
		durations = append(durations, took)
		gaps = append(gaps, s.maxGap)
		leader = next
	}
	t.Logf("transfer/resign request durations: %v", durations)
	t.Logf("longest interval with no lease holder per hand-over (sampled every 200µs): %v (heartbeat %v)",
		gaps, time.Duration(tc.cfgs[0].HeartbeatInterval))
}

// watchTimes records when a peer's own Watch saw each index.
type watchTimes struct {
	mu   sync.Mutex
	seen map[uint64]time.Time
	last State
}

func recordWatch(t *testing.T, c *Cluster) *watchTimes {
	w := &watchTimes{seen: map[uint64]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Watch(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st := range ch {
			now := time.Now()
			w.mu.Lock()
			w.seen[st.Index] = now
			w.last = st
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func (w *watchTimes) at(index uint64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.seen[index]
	return at, ok
}

// latencyOf returns how long after the peer's own watcher the HTTP client
// saw index.
func latencyOf(t *testing.T, w *watchTimes, c *Cluster, index uint64, got time.Time) time.Duration {
	t.Helper()
	index -= apiIndexBase(c) // the API's index to the SDK's
	var at time.Time
	waitFor(t, 2*time.Second, fmt.Sprintf("the peer's watcher to see index %d", index), func() bool {
		var ok bool
		at, ok = w.at(index)
		return ok
	})
	return got.Sub(at)
}

func TestAPIBlockingQuerySeesChangesQuickly(t *testing.T) {
	tc := newAPITestCluster(t, 3, "")
	leader := tc.waitLeader(5 * time.Second)
	// Watch a peer that stays a follower through the transfers.
	obs := tc.peers[(tc.index(leader)+1)%3]
	w := recordWatch(t, obs)
	h := newHTTPC(t)
	var lat []time.Duration
	for range 5 {
		var st api.Status
		resp := h.get(obs, "/v1/status", &st)
		idx := indexOf(t, resp)
		type answer struct {
			resp *http.Response
			body []byte
			at   time.Time
		}
		got := make(chan answer, 1)
		go func() {
			resp, b := h.do(obs, "GET", fmt.Sprintf("/v1/leader?index=%d&wait=30s", idx), "", "")
			got <- answer{resp, b, time.Now()}
		}()
		if tc.index(leader) == tc.index(obs) {
			t.Fatal("the observer leads")
		}
		// Move leadership between the two others; the observer sees it.
		leader = transferAwayAvoiding(t, tc, obs)
		var a answer
		select {
		case a = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("blocking query did not answer after a leadership change")
		}
		n := indexOf(t, a.resp)
		if n == idx {
			t.Fatalf("blocking query answered with the same index %d", n)
		}
		lat = append(lat, latencyOf(t, w, obs, n, a.at))
	}
	t.Logf("blocking query: latency from the peer's own Watch to the HTTP answer: %v", lat)
}

// transferAwayAvoiding moves leadership to the peer that is neither the
// leader nor keep, and returns the new leader.
//
// A transfer can fail (raft gives up when the target does not win in an
// election timeout), and on a starved machine an election can follow it;
// neither is what these tests are about, so it tries again until the target
// leads.
func transferAwayAvoiding(t *testing.T, tc *testCluster, keep *Cluster) *Cluster {
	t.Helper()
	leader := tc.waitLeader(5 * time.Second)
	var target *Cluster
	for _, p := range tc.peers {
		if p != leader && p != keep {
			target = p
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := leader.Transfer(ctx, target.cfg.Identifier)
		cancel()
		if err == nil {
			leader = tc.waitLeader(5 * time.Second)
			if leader == target {
				return target
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfer to %s did not succeed in %d attempts: %v", target.cfg.Identifier, attempt, err)
		}
		t.Logf("transfer attempt %d to %s: %v; leader now %s", attempt, target.cfg.Identifier, err, leader.cfg.Identifier)
		leader = tc.waitLeader(5 * time.Second)
		if leader == target {
			return target
		}
	}
}

// sseReader reads a /v1/watch stream in its own goroutine, stamping each
// event with its arrival time (the test's goroutine may be busy when it
// arrives).
type sseReader struct {
	resp   *http.Response
	events chan sseEvent
	done   chan error // the stream's end

	last         sseEvent // the last leader event drain took
	leaderEvents int      // how many drain took
}

type sseEvent struct {
	id    uint64
	event string
	st    api.Status
	at    time.Time
}

func openWatch(t *testing.T, h *httpc, c *Cluster, lastID string) *sseReader {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+c.Addr()+"/v1/watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("GET /v1/watch: %s", resp.Status)
	}
	r := &sseReader{resp: resp, events: make(chan sseEvent, 1000), done: make(chan error, 1)}
	go r.read(bufio.NewReader(resp.Body))
	t.Cleanup(func() { r.close(); <-r.done })
	return r
}

func (r *sseReader) close() { r.resp.Body.Close() }

// read parses events until the stream ends (comments and retry hints are
// skipped).
func (r *sseReader) read(br *bufio.Reader) {
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			r.done <- err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if ev.event != "" {
				ev.at = time.Now()
				r.events <- ev
			}
			ev = sseEvent{}
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "id":
			ev.id, _ = strconv.ParseUint(v, 10, 64)
		case "event":
			ev.event = v
		case "data":
			if err := json.Unmarshal([]byte(v), &ev.st); err != nil {
				r.done <- fmt.Errorf("event data %q: %w", v, err)
				return
			}
			// The data must be what api/openapi.json describes.
			schema := map[string]string{"leader": "Status", "member": "MemberEvent"}[ev.event]
			if spec, err := openAPISpec(); err != nil || schema != "" && spec.CheckSchema(schema, []byte(v)) != nil {
				if err == nil {
					err = spec.CheckSchema(schema, []byte(v))
				}
				r.done <- fmt.Errorf("a %q event is not what api/openapi.json describes: %w", ev.event, err)
				return
			}
		}
	}
}

// nextWithin returns the next event, failing the test after d or when the
// stream ends.
func (r *sseReader) nextWithin(t *testing.T, d time.Duration) sseEvent {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case err := <-r.done:
		r.done <- err
		t.Fatalf("the /v1/watch stream ended: %v", err)
	case <-time.After(d):
		t.Fatalf("no /v1/watch event within %v", d)
	}
	panic("unreachable")
}

func TestAPIWatchStreamSeesChangesAndResumes(t *testing.T) {
	tc := newAPITestCluster(t, 3, "")
	leader := tc.waitLeader(5 * time.Second)
	obs := tc.peers[(tc.index(leader)+1)%3]
	w := recordWatch(t, obs)
	h := newHTTPC(t)

	s := openWatch(t, h, obs, "")
	ev := s.nextWithin(t, 5*time.Second)
	if ev.event != api.EventLeader || ev.id == 0 || ev.id != ev.st.Index || ev.st.Identifier != obs.cfg.Identifier ||
		ev.st.Leader == nil || ev.st.Leader.Identifier != leader.cfg.Identifier {
		t.Fatalf("first event %+v", ev)
	}
	var lat []time.Duration
	for range 5 {
		newLeader := transferAwayAvoiding(t, tc, obs)
		// Read until the observer names the new leader; every event is
		// newer than the one before.
		for {
			prev := ev.id
			ev = s.nextWithin(t, 5*time.Second)
			if ev.id <= prev {
				t.Fatalf("event id %d after %d", ev.id, prev)
			}
			lat = append(lat, latencyOf(t, w, obs, ev.id, ev.at))
			if ev.st.Leader != nil && ev.st.Leader.Identifier == newLeader.cfg.Identifier {
				break
			}
		}
	}
	t.Logf("SSE: latency from the peer's own Watch to the event, per event: %v", lat)

	// The client drops; leadership moves meanwhile; on reconnecting with
	// its Last-Event-ID it gets the current state at once.
	lastID := ev.id
	s.close()
	newLeader := transferAwayAvoiding(t, tc, obs)
	waitFor(t, 5*time.Second, "the observer to name the new leader", func() bool {
		l, ok := obs.Leader()
		return ok && l.Identifier == newLeader.cfg.Identifier
	})
	s = openWatch(t, h, obs, strconv.FormatUint(lastID, 10))
	ev = s.nextWithin(t, 2*time.Second)
	if ev.id <= lastID || ev.st.Leader == nil || ev.st.Leader.Identifier != newLeader.cfg.Identifier {
		t.Fatalf("after reconnecting with Last-Event-ID %d: %+v, want the current state naming %s", lastID, ev, newLeader.cfg.Identifier)
	}

	// Closing the peer ends the stream.
	tc.stop(tc.index(obs))
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the peer closed")
	}
}

// TestAPIBlockingQueryEndsOnClose: a pending blocking query does not keep a
// closing peer, or its goroutines, around.
func TestAPIBlockingQueryEndsOnClose(t *testing.T) {
	tc := newAPITestCluster(t, 3, "")
	leader := tc.waitLeader(5 * time.Second)
	// A follower: closing a leader hands leadership over first, which
	// changes what /v1/leader says before the peer closes.
	pi := (tc.index(leader) + 1) % len(tc.peers)
	p := tc.peers[pi]
	h := newHTTPC(t)
	var st api.Status
	idx := indexOf(t, h.get(p, "/v1/status", &st))
	errc := make(chan error, 1)
	go func() {
		resp, err := h.hc.Get(fmt.Sprintf("http://%s/v1/leader?index=%d&wait=5m", p.Addr(), idx))
		if err != nil {
			errc <- nil // the connection closed with the peer
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// The peer closing is not the cluster losing its leader.
		if resp.StatusCode != 503 || !strings.Contains(string(b), `"code": "unavailable"`) {
			err = fmt.Errorf("the blocking query got %s %s as the peer closed, want 503 unavailable or no answer", resp.Status, b)
		}
		errc <- err
	}()
	waitFor(t, 5*time.Second, "the query to wait", func() bool {
		return p.watch.Count() > 0
	})
	start := time.Now()
	tc.stop(pi)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("blocking query ended %v after Close began", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("the blocking query outlived the peer")
	}
}

func TestConfigAPIToken(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"identifier": "a", "listen_port": 7001, "api_token": "s3cret"}`))
	if err != nil || cfg.APIToken != "s3cret" {
		t.Fatalf("api_token: %q, %v", cfg.APIToken, err)
	}
	for _, key := range []string{"api_tokn", "apiToken", "API-Token"} {
		_, err := ParseConfig([]byte(`{"identifier": "a", "listen_port": 7001, "` + key + `": "s3cret"}`))
		if err == nil || !strings.Contains(err.Error(), `did you mean "api_token"`) {
			t.Errorf("%s: %v, want a suggestion of api_token", key, err)
		}
	}
	if _, err := ParseConfig([]byte(`{"identifier": "a", "listen_port": 7001, "api_token": 5}`)); err == nil {
		t.Error("a numeric api_token was accepted")
	}
	b, err := json.Marshal(cfg)
	if err != nil || !strings.Contains(string(b), `"api_token":"s3cret"`) {
		t.Errorf("marshal: %s %v", b, err)
	}
	b, _ = json.Marshal(Config{Identifier: "a", ListenPort: 1})
	if strings.Contains(string(b), "api_token") {
		t.Errorf("an empty api_token is written: %s", b)
	}
}

// TestAPIErrorsBothWays: the SDK's errors go out with the API's codes
// (api.CodeOf of apibackend.ToAPIError) and another peer's codes come back as the
// SDK's errors (apibackend.FromAPIError), through the one table of codes.
func TestAPIErrorsBothWays(t *testing.T) {
	for _, tt := range []struct {
		sdk  error  // what this peer's SDK returns
		code string // what the API answers
		back error  // what a peer reading that answer gets
	}{
		{ErrInvalidMember, api.CodeBadRequest, ErrInvalidMember},
		{ErrInvalidMetadata, api.CodeBadRequest, ErrInvalidMember},
		{ErrWouldLoseQuorum, api.CodeWouldLoseQuorum, ErrWouldLoseQuorum},
		{ErrConflict, api.CodeConflict, ErrConflict},
		{ErrWrongCluster, api.CodeWrongCluster, ErrWrongCluster},
		{ErrNoLeader, api.CodeNoLeader, ErrNoLeader},
		{ErrMasterless, api.CodeMasterless, ErrMasterless},
		{ErrUnknownPeer, api.CodeUnknownPeer, ErrUnknownPeer},
		{ErrNotLeader, api.CodeNotLeader, ErrNotLeader},
		{ErrClosed, api.CodeUnavailable, ErrClosed},
		{ErrNotStarted, api.CodeUnavailable, ErrClosed},
		{context.DeadlineExceeded, api.CodeTimeout, context.DeadlineExceeded},
		{ErrUnauthorized, api.CodeInternal, nil}, // a peer refusing our token is not the caller's fault
	} {
		code, _ := api.CodeOf(apibackend.ToAPIError(fmt.Errorf("detail: %w", tt.sdk)))
		if code != tt.code {
			t.Errorf("%v goes out as %q, want %q", tt.sdk, code, tt.code)
		}
		if tt.back == nil {
			continue
		}
		if got := apibackend.FromAPIError(api.Error{Code: code, Error: "detail"}); !errors.Is(got, tt.back) {
			t.Errorf("%q comes back as %v, want %v", code, got, tt.back)
		}
	}
	if got := apibackend.FromAPIError(api.Error{Code: api.CodeUnauthorized, Error: "token"}); !errors.Is(got, ErrUnauthorized) {
		t.Errorf("unauthorized comes back as %v", got)
	}
	if got := apibackend.FromAPIError(api.Error{Code: api.CodeNoTransferee, Error: "alone"}); got.Error() != "qcluster: alone (no_transferee)" {
		t.Errorf("a code the SDK has no error for: %v", got)
	}
}
