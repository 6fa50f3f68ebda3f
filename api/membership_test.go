package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// do sends a request with an optional body and bearer token.
func do(h http.Handler, method, target, body, token string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := newReq(method, target, rd)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return serveReq(h, r)
}

// backendErrorCases are the Backend errors of the membership calls and the
// answers they must get.
var backendErrorCases = []struct {
	err    error
	status int
	code   string
}{
	{fmt.Errorf("%w: port 0", ErrInvalid), 400, CodeBadRequest},
	{fmt.Errorf("%w: server_b already has that address", ErrConflict), 409, CodeConflict},
	{fmt.Errorf("%w: cannot remove %q", ErrWouldLoseQuorum, "server_b"), 409, CodeWouldLoseQuorum},
	{fmt.Errorf("%w: it says %q, this is %q", ErrWrongCluster, "blue", "green"), 409, CodeWrongCluster},
	{ErrNoLeader, 503, CodeNoLeader},
	{ErrMasterless, 409, CodeMasterless},
	{ErrUnavailable, 503, CodeUnavailable},
	{fmt.Errorf("the change did not commit in time: %w", context.DeadlineExceeded), 504, CodeTimeout},
	{errors.New("disk on fire"), 500, CodeInternal},
}

func TestJoin(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{MaxBodyBytes: 1024})

	rec := do(h, "POST", "/v1/join", `{"identifier": "server_d", "host": "10.0.0.4", "port": 7004, "metadata": {"server_port": 8004}, "cluster_name": "blue"}`, "")
	var res JoinResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 {
		t.Fatalf("POST /v1/join: %d %s (%v)", rec.Code, rec.Body, err)
	}
	if res.Member.Identifier != "server_d" || res.Member.Port != 7004 || !res.Member.Voter || res.Member.Role != "follower" ||
		res.Leader == nil || res.Leader.Identifier != "server_b" || len(res.Peers) != 4 || res.Member.Metadata["server_port"] != 8004.0 {
		t.Errorf("join result %+v", res)
	}
	if len(f.joins) != 1 || f.joins[0].ClusterName != "blue" || f.joins[0].Voter != nil {
		t.Errorf("Join called with %+v", f.joins)
	}
	rec = do(h, "POST", "/v1/join", `{"identifier": "server_e", "host": "db5.example.com", "port": 7005, "voter": false}`, "")
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 || res.Member.Voter || res.Member.Role != "learner" {
		t.Fatalf("POST /v1/join as a learner: %d %s", rec.Code, rec.Body)
	}

	// Bad requests never reach the backend.
	f.joins = nil
	for _, tc := range []struct{ body, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{`["server_d"]`, "JSON object"},
		{`{"identifier": "server_d", "host": "h", "port": 7004`, "JSON object"},
		{`{"identifier": "server_d", "host": "h", "port": "7004"}`, "port"},
		{`{"identifier": "server_d", "host": "h", "port": 7004, "learner": true}`, `unknown field "learner"`},
		{`{"identifier": "server_d", "host": "h", "port": 7004} {}`, "one JSON object"},
		{`{"host": "h", "port": 7004}`, "identifier: missing"},
		{`{"identifier": "server d", "host": "h", "port": 7004}`, "identifier: \"server d\" contains whitespace"},
		{`{"identifier": "server\u0007", "host": "h", "port": 7004}`, "identifier: \"server\\a\" contains a control"},
		{`{"identifier": "` + strings.Repeat("x", 256) + `", "host": "h", "port": 7004}`, "identifier: is 256 bytes long"},
		{`{"identifier": "server_d", "port": 7004}`, "host: missing"},
		{`{"identifier": "server_d", "host": "http://h", "port": 7004}`, "looks like a URL"},
		{`{"identifier": "server_d", "host": "a b", "port": 7004}`, "host: \"a b\" contains whitespace"},
		{`{"identifier": "server_d", "host": "h"}`, "port: 0 is not a port"},
		{`{"identifier": "server_d", "host": "h", "port": 65536}`, "port: 65536"},
		{`{"identifier": "server_d", "host": "h", "port": -1}`, "port: -1"},
		{`{"identifier": "server_d", "host": "h", "port": 7004, "cluster_name": "a\nb"}`, "cluster_name"},
	} {
		e := wantError(t, do(h, "POST", "/v1/join", tc.body, ""), http.StatusBadRequest, CodeBadRequest)
		if !strings.Contains(e.Error, tc.want) {
			t.Errorf("POST /v1/join %q: message %q does not contain %q", tc.body, e.Error, tc.want)
		}
	}
	wantError(t, do(h, "POST", "/v1/join", `{"identifier": "server_d", "host": "`+strings.Repeat("h", 2000)+`", "port": 7004}`, ""), http.StatusRequestEntityTooLarge, CodeTooLarge)
	if len(f.joins) != 0 {
		t.Errorf("bad requests reached the backend: %+v", f.joins)
	}
	rec = do(h, "GET", "/v1/join", "", "")
	wantError(t, rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if rec.Header().Get("Allow") != "POST" {
		t.Errorf("Allow %q", rec.Header().Get("Allow"))
	}

	for _, tc := range backendErrorCases {
		f.joinErr = tc.err
		e := wantError(t, do(h, "POST", "/v1/join", `{"identifier": "server_d", "host": "h", "port": 7004}`, ""), tc.status, tc.code)
		if e.Error != tc.err.Error() {
			t.Errorf("%v: message %q", tc.err, e.Error)
		}
	}
}

func TestSetMetadata(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{MaxBodyBytes: 256})

	rec := do(h, "PUT", "/v1/self/metadata", `{"metadata": {"server_port": 8004, "zone": "b", "tags": ["x"]}}`, "")
	var m Member
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || rec.Code != 200 || !m.IsSelf || m.Identifier != "server_a" || m.Metadata["server_port"] != 8004.0 || m.Metadata["zone"] != "b" {
		t.Fatalf("PUT /v1/self/metadata: %d %s (%v)", rec.Code, rec.Body, err)
	}
	// {} clears the metadata: the backend gets an empty map, not nil.
	if rec := do(h, "PUT", "/v1/self/metadata", `{"metadata": {}}`, ""); rec.Code != 200 {
		t.Fatalf("clearing the metadata: %d %s", rec.Code, rec.Body)
	}
	if len(f.metaSet) != 2 || f.metaSet[1] == nil || len(f.metaSet[1]) != 0 {
		t.Errorf("SetMetadata called with %#v", f.metaSet)
	}

	f.metaSet = nil
	for _, tc := range []struct{ body, want string }{
		{"", "empty"},
		{"[]", "JSON object"},
		{`"server_port"`, "JSON object"},
		{"42", "JSON object"},
		{"{}", "metadata: missing"},
		{`{"metadata": null}`, "metadata: not a JSON object: null"},
		{`{"metadata": [1, 2]}`, "metadata: not a JSON object: [1, 2]"},
		{`{"metadata": "x"}`, "not a JSON object"},
		{`{"metadata": 5}`, "not a JSON object"},
		{`{"server_port": 8004}`, `unknown field "server_port"`},
		{`{"metadata": {"a": 1}`, "JSON object"},
		{`{"metadata": {}} {}`, "one JSON object"},
	} {
		e := wantError(t, do(h, "PUT", "/v1/self/metadata", tc.body, ""), http.StatusBadRequest, CodeBadRequest)
		if !strings.Contains(e.Error, tc.want) {
			t.Errorf("PUT %q: message %q does not contain %q", tc.body, e.Error, tc.want)
		}
	}
	wantError(t, do(h, "PUT", "/v1/self/metadata", `{"metadata": {"blob": "`+strings.Repeat("x", 300)+`"}}`, ""), http.StatusRequestEntityTooLarge, CodeTooLarge)
	if len(f.metaSet) != 0 {
		t.Errorf("bad requests reached the backend: %v", f.metaSet)
	}
	for _, method := range []string{"GET", "POST"} {
		rec := do(h, method, "/v1/self/metadata", "", "")
		wantError(t, rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
		if rec.Header().Get("Allow") != "PUT" {
			t.Errorf("Allow %q", rec.Header().Get("Allow"))
		}
	}
	for _, tc := range backendErrorCases {
		f.metaErr = tc.err
		wantError(t, do(h, "PUT", "/v1/self/metadata", `{"metadata": {"a": 1}}`, ""), tc.status, tc.code)
	}
}

func TestRemovePeer(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandler(f)
	for target, id := range map[string]string{"/v1/peers/server_b": "server_b", "/v1/peers/a%2Fb": "a/b"} {
		rec := do(h, "DELETE", target, "", "")
		var res RemoveResult
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 || res.Removed != id {
			t.Fatalf("DELETE %s: %d %s", target, rec.Code, rec.Body)
		}
	}
	if rec := do(h, "DELETE", "/v1/peers/server_c", "{}", ""); rec.Code != 200 {
		t.Errorf("DELETE with {}: %d %s", rec.Code, rec.Body)
	}
	if len(f.removed) != 3 || f.removed[2] != "server_c" {
		t.Errorf("RemovePeer called with %q", f.removed)
	}
	wantError(t, do(h, "DELETE", "/v1/peers/server_c", `{"force": true}`, ""), http.StatusBadRequest, CodeBadRequest)
	wantError(t, do(h, "DELETE", "/v1/peers/", "", ""), http.StatusNotFound, CodeNotFound)
	rec := do(h, "PATCH", "/v1/peers/server_c", "", "")
	wantError(t, rec, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if rec.Header().Get("Allow") != "GET, HEAD, DELETE" {
		t.Errorf("Allow %q", rec.Header().Get("Allow"))
	}

	// An unknown member is a 404 here (not the 400 of a transfer target).
	f.removeErr = ErrUnknownPeer
	e := wantError(t, do(h, "DELETE", "/v1/peers/nobody", "", ""), http.StatusNotFound, CodeUnknownPeer)
	if !strings.Contains(e.Error, `"nobody"`) {
		t.Errorf("unknown peer message %q", e.Error)
	}
	f.removeErr = fmt.Errorf("%w: %q is not a member", ErrUnknownPeer, "nobody")
	e = wantError(t, do(h, "DELETE", "/v1/peers/nobody", "", ""), http.StatusNotFound, CodeUnknownPeer)
	if !strings.HasPrefix(e.Error, `unknown peer: "nobody" is not a member`) {
		t.Errorf("wrapped unknown peer message %q", e.Error)
	}
	for _, tc := range backendErrorCases {
		f.removeErr = tc.err
		wantError(t, do(h, "DELETE", "/v1/peers/server_b", "", ""), tc.status, tc.code)
	}
	// GET on the same route still reads.
	if rec := do(h, "GET", "/v1/peers/server_b", "", ""); rec.Code != 200 {
		t.Errorf("GET after DELETEs: %d", rec.Code)
	}
}

func TestLeave(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandler(f)
	for _, body := range []string{"", "{}"} {
		rec := do(h, "POST", "/v1/self/leave", body, "")
		var res LeaveResult
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 || res.Left != "server_a" {
			t.Fatalf("POST /v1/self/leave %q: %d %s", body, rec.Code, rec.Body)
		}
		if rec.Header().Get("Connection") != "close" {
			t.Errorf("leave answer without Connection: close: %v", rec.Header())
		}
	}
	wantError(t, do(h, "POST", "/v1/self/leave", `{"now": true}`, ""), http.StatusBadRequest, CodeBadRequest)
	wantError(t, do(h, "GET", "/v1/self/leave", "", ""), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if f.leaves != 2 {
		t.Errorf("Leave called %d times, want 2", f.leaves)
	}
	for _, tc := range backendErrorCases {
		f.leaveErr = tc.err
		wantError(t, do(h, "POST", "/v1/self/leave", "", ""), tc.status, tc.code)
	}
}

// TestMembershipAuth checks the token on every new mutating endpoint, and
// that the 401 comes before the body is read.
func TestMembershipAuth(t *testing.T) {
	const token = "s3cret"
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{Token: token})
	calls := []struct{ method, target, body string }{
		{"POST", "/v1/join", `{"identifier": "server_d", "host": "h", "port": 7004}`},
		{"PUT", "/v1/self/metadata", `{"metadata": {"a": 1}}`},
		{"DELETE", "/v1/peers/server_b", ""},
		{"POST", "/v1/self/leave", ""},
	}
	for _, c := range calls {
		for _, tok := range []string{"", "wrong", token + "x"} {
			rec := do(h, c.method, c.target, c.body, tok)
			wantError(t, rec, http.StatusUnauthorized, CodeUnauthorized)
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.target)
			}
		}
		big := strings.Repeat("x", 1<<20)
		wantError(t, do(h, c.method, c.target, big, ""), http.StatusUnauthorized, CodeUnauthorized)
	}
	if len(f.joins)+len(f.metaSet)+len(f.removed)+f.leaves != 0 {
		t.Fatal("an unauthorized request reached the backend")
	}
	for _, c := range calls {
		if rec := do(h, c.method, c.target, c.body, token); rec.Code != 200 {
			t.Errorf("%s %s with the token: %d %s", c.method, c.target, rec.Code, rec.Body)
		}
	}
	if len(f.joins) != 1 || len(f.metaSet) != 1 || len(f.removed) != 1 || f.leaves != 1 {
		t.Errorf("calls with the token: joins %d, metadata %d, removed %d, leaves %d", len(f.joins), len(f.metaSet), len(f.removed), f.leaves)
	}
	// A GET of the DELETE route needs no token (reads are not protected).
	if rec := do(h, "GET", "/v1/peers/server_b", "", ""); rec.Code != 200 {
		t.Errorf("GET /v1/peers/server_b: %d", rec.Code)
	}
}

func TestProtectReads(t *testing.T) {
	const token = "s3cret"
	f := newFake(leaderB)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "qcluster_term 3\n") })
	h := NewHandlerWithOptions(f, Options{Token: token, ProtectReads: true, Metrics: metrics, KeepAlive: 10 * time.Millisecond})
	reads := []string{"/v1/status", "/v1/leader", "/v1/peers", "/v1/peers/server_b", "/v1/watch", "/metrics", "/v1/leader?index=7&wait=1ms"}
	for _, path := range reads {
		for _, method := range []string{"GET", "HEAD"} {
			rec := do(h, method, path, "", "")
			if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s without the token: %d", method, path, rec.Code)
			}
			if method == "GET" {
				wantError(t, rec, http.StatusUnauthorized, CodeUnauthorized)
			}
			if rec := do(h, method, path, "", "nope"); rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with a wrong token: %d", method, path, rec.Code)
			}
		}
	}
	for _, path := range reads {
		if path == "/v1/watch" {
			// A stream runs until the client leaves: HEAD answers at once.
			if rec := do(h, "HEAD", path, "", token); rec.Code != 200 {
				t.Errorf("HEAD %s with the token: %d", path, rec.Code)
			}
			continue
		}
		if rec := do(h, "GET", path, "", token); rec.Code != 200 {
			t.Errorf("GET %s with the token: %d %s", path, rec.Code, rec.Body)
		}
	}
	// Probes stay open.
	for _, path := range []string{"/healthz", "/readyz"} {
		if rec := do(h, "GET", path, "", ""); rec.Code != 200 {
			t.Errorf("GET %s without the token: %d %s", path, rec.Code, rec.Body)
		}
	}
	// Unknown paths are 404 either way; mutations still need the token.
	wantError(t, do(h, "GET", "/v1/nothing", "", ""), http.StatusNotFound, CodeNotFound)
	wantError(t, do(h, "POST", "/v1/leader/resign", "", ""), http.StatusUnauthorized, CodeUnauthorized)

	// ProtectReads without a token protects nothing.
	h = NewHandlerWithOptions(f, Options{ProtectReads: true})
	for _, path := range []string{"/v1/status", "/v1/peers"} {
		if rec := do(h, "GET", path, "", ""); rec.Code != 200 {
			t.Errorf("GET %s with ProtectReads but no token: %d", path, rec.Code)
		}
	}
}

func TestReadiness(t *testing.T) {
	f := newFake(nil)
	h := NewHandler(f)
	ready := func(wantLeader, wantMode string) {
		t.Helper()
		rec := do(h, "GET", "/readyz", "", "")
		var hl Health
		if err := json.Unmarshal(rec.Body.Bytes(), &hl); err != nil || rec.Code != 200 || hl.Status != "ready" || hl.Leader != wantLeader || hl.Mode != wantMode || hl.Identifier != "server_a" {
			t.Fatalf("readyz: %d %s, want ready with leader %q, mode %q", rec.Code, rec.Body, wantLeader, wantMode)
		}
	}
	// Leader mode: a member that knows a leader.
	wantError(t, do(h, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, CodeNoLeader)
	f.set(func(s *Status) { s.Joined = false })
	e := wantError(t, do(h, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, CodeNotJoined)
	if !strings.Contains(e.Error, "server_a is not a member") {
		t.Errorf("not joined message %q", e.Error)
	}
	f.set(func(s *Status) { s.Leader = leaderB })
	wantError(t, do(h, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, CodeNotJoined)
	f.set(func(s *Status) { s.Joined = true })
	ready("server_b", ModeLeader)
	f.set(func(s *Status) { s.Mode = "" }) // an older backend: leader mode
	ready("server_b", ModeLeader)

	// Masterless: joined is enough; there is never a leader.
	f.set(func(s *Status) { s.Mode, s.Leader, s.Role, s.Joined = ModeMasterless, nil, "none", false })
	e = wantError(t, do(h, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, CodeNotJoined)
	if !strings.Contains(e.Error, "masterless") {
		t.Errorf("masterless not joined message %q", e.Error)
	}
	f.set(func(s *Status) { s.Joined = true })
	ready("", ModeMasterless)
	if rec := do(h, "GET", "/readyz", "", ""); rec.Header().Get(IndexHeader) == "" {
		t.Errorf("readyz without %s", IndexHeader)
	}
}

func TestWatchMemberEvents(t *testing.T) {
	f := newFake(leaderB)
	srv := httptest.NewServer(NewHandlerWithOptions(f, Options{KeepAlive: time.Hour}))
	defer srv.Close()
	url := srv.URL + "/v1/watch"

	_, br := openStream(t, url, "")
	if ev := readEvent(t, br); ev.event != EventLeader || ev.id != "7" {
		t.Fatalf("first event %+v", ev)
	}
	waitFor(t, 5*time.Second, "the stream to subscribe to member events", func() bool { return f.numSubs() == 1 })
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	sent := MemberEvent{Type: "joined", Time: at, Member: Member{Peer: Peer{Identifier: "server_d", Host: "10.0.0.4", Port: 7004, Metadata: map[string]any{"note": "a\nb <&>"}}, Voter: true, Role: "follower", State: "alive"}}
	f.emit(sent)
	ev := readEvent(t, br)
	var got MemberEvent
	if ev.event != EventMember || ev.id != "" || json.Unmarshal([]byte(ev.data), &got) != nil {
		t.Fatalf("member event %+v", ev)
	}
	if got.Type != "joined" || !got.Time.Equal(at) || got.Member.Identifier != "server_d" || got.Member.State != "alive" || got.Member.Metadata["note"] != "a\nb <&>" {
		t.Errorf("member event data %+v", got)
	}

	// Leader and member events interleave; each comes whole.
	f.set(func(s *Status) { s.Leader = nil })
	f.emit(MemberEvent{Type: "failed", Member: Member{Peer: Peer{Identifier: "server_b"}, State: "dead"}})
	var sawLeader, sawMember bool
	for !sawLeader || !sawMember {
		ev := readEvent(t, br)
		switch ev.event {
		case EventLeader:
			var st Status
			if ev.id != "8" || json.Unmarshal([]byte(ev.data), &st) != nil || st.Leader != nil {
				t.Fatalf("leader event %+v", ev)
			}
			sawLeader = true
		case EventMember:
			if json.Unmarshal([]byte(ev.data), &got) != nil || got.Type != "failed" || got.Member.State != "dead" {
				t.Fatalf("member event %+v", ev)
			}
			sawMember = true
		default:
			t.Fatalf("unexpected %+v", ev)
		}
	}

	// The backend ends its member events: leader events go on.
	f.mu.Lock()
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
	f.mu.Unlock()
	f.set(func(s *Status) { s.Leader = leaderB })
	if ev := readEvent(t, br); ev.event != EventLeader || ev.id != "9" {
		t.Fatalf("after the member events ended: %+v", ev)
	}

	// A reconnection resumes leader events only; the member events
	// between are not replayed.
	_, br2 := openStream(t, url, "9")
	waitFor(t, 5*time.Second, "the new stream to subscribe", func() bool { return f.numSubs() == 1 })
	f.emit(MemberEvent{Type: "left", Member: Member{Peer: Peer{Identifier: "server_d"}, State: "left"}})
	if ev := readEvent(t, br2); ev.event != EventMember || !strings.Contains(ev.data, `"type":"left"`) {
		t.Fatalf("after reconnecting: %+v, want the member event (no leader event: up to date)", ev)
	}

	// The client leaves: the handler drops its subscription.
	srv.CloseClientConnections()
	waitFor(t, 5*time.Second, "the subscriptions to end", func() bool { return f.numSubs() == 0 })
}

// TestWatchEndsWhenPeerStops checks that a stream with a member
// subscription ends, and releases it, when the peer stops.
func TestWatchEndsWhenPeerStops(t *testing.T) {
	f := newFake(leaderB)
	srv := httptest.NewServer(NewHandlerWithOptions(f, Options{KeepAlive: 5 * time.Millisecond}))
	defer srv.Close()
	_, br := openStream(t, srv.URL+"/v1/watch", "")
	if ev := readEvent(t, br); ev.event != EventLeader {
		t.Fatalf("first event %+v", ev)
	}
	waitFor(t, 5*time.Second, "the subscription", func() bool { return f.numSubs() == 1 })
	f.stop()
	if _, err := io.ReadAll(br); err != nil {
		t.Errorf("stream did not end cleanly: %v", err)
	}
}
