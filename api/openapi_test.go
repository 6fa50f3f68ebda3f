package api

import (
	"bytes"
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/openapicheck"
)

func loadSpec(t *testing.T) *openapicheck.Spec {
	t.Helper()
	spec, err := openapicheck.New(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// allowed returns the methods route takes, from the Allow header of the
// 405 that a method no route takes gets (HEAD left out: it goes with GET).
func allowed(t *testing.T, h http.Handler, route string) []string {
	t.Helper()
	rec := serve(h, "QCLUSTERPROBE", strings.ReplaceAll(route, "{identifier}", "server_b"))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("QCLUSTERPROBE %s: %d, want 405", route, rec.Code)
	}
	var ms []string
	for _, m := range strings.Split(rec.Header().Get("Allow"), ",") {
		if m = strings.TrimSpace(m); m != "" && m != http.MethodHead {
			ms = append(ms, m)
		}
	}
	slices.Sort(ms)
	return ms
}

// TestOpenAPIDescribesEveryRoute: every route the handler registers
// (Routes(), which the handler cannot drift from) is a path of the OpenAPI
// document, with an operation for exactly the methods the route takes, and
// the document describes no path the handler does not serve.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	spec := loadSpec(t)
	h := NewHandlerWithOptions(newFake(leaderB), Options{Metrics: http.NotFoundHandler()})
	var described []string // the routes as the document writes them
	for _, route := range Routes() {
		p := openapicheck.Route(route)
		described = append(described, p)
		if !slices.Contains(spec.Paths(), p) {
			t.Errorf("route %s is not described in api/openapi.json", route)
			continue
		}
		if got, want := spec.Methods(p), allowed(t, h, route); !slices.Equal(got, want) {
			t.Errorf("%s: api/openapi.json describes %v, the handler takes %v", route, got, want)
		}
	}
	for _, p := range spec.Paths() {
		if !slices.Contains(described, p) {
			t.Errorf("api/openapi.json describes %s, which is not a route of the handler", p)
		}
	}
}

// TestOpenAPIErrorCodes: the Error schema's code enum is every Code
// constant of api.go, and only those.
func TestOpenAPIErrorCodes(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if strings.HasPrefix(name.Name, "Code") && i < len(vs.Values) {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
					s, _ := strconv.Unquote(lit.Value)
					codes = append(codes, s)
				}
			}
		}
		return true
	})
	if len(codes) < 10 {
		t.Fatalf("found only %d Code constants in api.go", len(codes))
	}
	slices.Sort(codes)
	got := loadSpec(t).Codes()
	slices.Sort(got)
	if !slices.Equal(got, codes) {
		t.Errorf("api/openapi.json Error.code enum %v, api.go has %v", got, codes)
	}
}

// TestOpenAPIServed: GET /v1/openapi.json serves the document, as JSON,
// behind the token when reads are protected.
func TestOpenAPIServed(t *testing.T) {
	rec := serve(NewHandler(newFake(leaderB)), "GET", "/v1/openapi.json")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || !bytes.Equal(rec.Body.Bytes(), OpenAPI()) {
		t.Fatalf("GET /v1/openapi.json: %d %q, %d bytes", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
	h := NewHandlerWithOptions(newFake(leaderB), Options{Token: "s3cret", ProtectReads: true})
	wantError(t, serve(h, "GET", "/v1/openapi.json"), http.StatusUnauthorized, CodeUnauthorized)
}

// realisticFake is a fake whose members look like a real peer's.
func realisticFake() *fakeBackend {
	f := newFake(leaderB)
	f.setPeers(func([]Member) []Member {
		return []Member{
			{Peer: Peer{Identifier: "server_a", Host: "localhost", Port: 7001}, Voter: true, IsSelf: true, Role: "follower", State: "alive", Check: "none"},
			{Peer: *leaderB, Voter: true, IsLeader: true, Role: "leader", State: "alive", Check: "none"},
			{Peer: Peer{Identifier: "server_c", Host: "localhost", Port: 7003}, Role: "learner", State: "suspect", Check: "none"},
		}
	})
	return f
}

// TestOpenAPIValidatesAnswers sends requests for every operation and many
// of its failures to the handler, and checks each answer against the
// document: status described, headers, content type and body schema
// (strict: an undescribed field fails). Every operation must be seen
// answering 200.
func TestOpenAPIValidatesAnswers(t *testing.T) {
	spec := loadSpec(t)
	const tok = "s3cret"
	type tcase struct {
		method, target, body, token string
		setup                       func(f *fakeBackend)
		opts                        Options
		status                      int
		noKV                        bool // a Backend without a KV store
	}
	seed := func(f *fakeBackend) {
		f.KVPut(context.Background(), "config/db", []byte("hello"), KVWriteOptions{})
		f.KVPut(context.Background(), "config/eph", []byte("x"), KVWriteOptions{Ephemeral: true})
		f.kvWrites = 0
	}
	kvErr := func(err error) func(*fakeBackend) { return func(f *fakeBackend) { f.kvErr = err } }
	bigValue := `{"value": "` + strings.Repeat("A", (MaxValueSize+3)/3*4+4) + `"}`
	internal := errors.New("disk on fire")
	withSession := func(f *fakeBackend) { // session 1
		f.SessionCreate(context.Background(), 10*time.Second)
		f.kvWrites = 0
	}
	withSessionLock := func(f *fakeBackend) { // session 1, lock "backup" at token 2
		withSession(f)
		f.LockInSession(context.Background(), "backup", 1)
	}
	cases := []tcase{
		{method: "GET", target: "/v1/status", status: 200},
		{method: "HEAD", target: "/v1/status", status: 200},
		{method: "GET", target: "/v1/status?index=7&wait=1ms", status: 200},
		{method: "GET", target: "/v1/status?index=abc", status: 400},
		{method: "GET", target: "/v1/status", opts: Options{Token: tok, ProtectReads: true}, status: 401},
		{method: "GET", target: "/v1/status", setup: func(f *fakeBackend) {
			f.set(func(s *Status) {
				s.Mode, s.Role, s.Leader, s.Voters, s.Learners = ModeMasterless, "none", nil, nil, nil
			})
		}, status: 200},
		{method: "GET", target: "/v1/status", setup: func(f *fakeBackend) {
			f.set(func(s *Status) {
				s.Role, s.IsLeader, s.LeaseRemainingMS, s.Learners = "leader", true, 120.5, []string{"server_c"}
			})
		}, status: 200},
		{method: "GET", target: "/v1/status?index=7", setup: func(f *fakeBackend) { f.stop() }, status: 503},
		{method: "GET", target: "/v1/leader", status: 200},
		{method: "GET", target: "/v1/leader", setup: func(f *fakeBackend) { f.set(func(s *Status) { s.Leader = nil }) }, status: 503},
		{method: "GET", target: "/v1/peers", status: 200},
		{method: "GET", target: "/v1/peers?wait=x", status: 400},
		{method: "GET", target: "/v1/peers/server_b", status: 200},
		{method: "GET", target: "/v1/peers/server_x", status: 404},
		{method: "DELETE", target: "/v1/peers/server_c", token: tok, status: 200},
		{method: "DELETE", target: "/v1/peers/server_x", token: tok, setup: func(f *fakeBackend) { f.removeErr = ErrUnknownPeer }, status: 404},
		{method: "DELETE", target: "/v1/peers/server_b", token: tok, setup: func(f *fakeBackend) { f.removeErr = ErrWouldLoseQuorum }, status: 409},
		{method: "DELETE", target: "/v1/peers/server_b", opts: Options{Token: tok}, status: 401},
		{method: "POST", target: "/v1/join", token: tok, body: `{"identifier": "server_d", "host": "10.0.0.4", "port": 7004, "metadata": {"zone": "b"}, "voter": false}`, status: 200},
		{method: "POST", target: "/v1/join", token: tok, body: `{"identifier": 1}`, status: 400},
		{method: "POST", target: "/v1/join", token: tok, body: `{"identifier": "d", "host": "h", "port": 1}`, setup: func(f *fakeBackend) { f.joinErr = ErrNoLeader }, status: 503},
		{method: "POST", target: "/v1/join", token: tok, body: `{"identifier": "d", "host": "h", "port": 1}`, setup: func(f *fakeBackend) { f.joinErr = internal }, status: 500},
		{method: "POST", target: "/v1/join", token: tok, body: `{"identifier": "d", "host": "h", "port": 1}`, setup: func(f *fakeBackend) { f.joinErr = context.DeadlineExceeded }, status: 504},
		{method: "POST", target: "/v1/join", token: tok, body: `{"identifier": "d", "host": "h", "port": 1, "metadata": {"x": "` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}}`, status: 413},
		{method: "PUT", target: "/v1/self/metadata", token: tok, body: `{"metadata": {"server_port": 8012}}`, status: 200},
		{method: "PUT", target: "/v1/self/metadata", token: tok, body: `{"metadata": [1]}`, status: 400},
		{method: "POST", target: "/v1/self/leave", token: tok, status: 200},
		{method: "GET", target: "/ui/", status: 200},
		{method: "PUT", target: "/v1/self/health", token: tok, body: `{"status": "failing", "output": "db down"}`, status: 200},
		{method: "PUT", target: "/v1/self/health", token: tok, body: `{"status": "sideways"}`, setup: func(f *fakeBackend) { f.healthErr = ErrInvalid }, status: 400},
		{method: "POST", target: "/v1/self/leave", token: tok, setup: func(f *fakeBackend) { f.leaveErr = ErrConflict }, status: 409},
		{method: "POST", target: "/v1/leader/transfer?to=server_b", token: tok, status: 200},
		{method: "POST", target: "/v1/leader/transfer", token: tok, setup: func(f *fakeBackend) { f.transferErr = ErrNotLeader }, status: 409},
		{method: "POST", target: "/v1/leader/transfer", token: tok, setup: func(f *fakeBackend) { f.transferErr = ErrUnknownPeer }, status: 400},
		{method: "POST", target: "/v1/leader/resign", token: tok, status: 200},
		{method: "POST", target: "/v1/leader/resign", token: tok, setup: func(f *fakeBackend) { f.transferErr = ErrNoTransferee }, status: 409},
		{method: "GET", target: "/healthz", status: 200},
		{method: "GET", target: "/readyz", status: 200},
		{method: "GET", target: "/readyz", setup: func(f *fakeBackend) { f.set(func(s *Status) { s.Joined = false }) }, status: 503},
		{method: "GET", target: "/readyz", setup: func(f *fakeBackend) {
			f.set(func(s *Status) { s.Mode, s.Role, s.Leader = ModeMasterless, "none", nil })
		}, status: 200},
		{method: "GET", target: "/metrics", status: 200},
		{method: "GET", target: "/v1/openapi.json", status: 200},
		{method: "GET", target: "/v1/kv/config/db", setup: seed, status: 200},
		{method: "HEAD", target: "/v1/kv/config/db", setup: seed, status: 200},
		{method: "GET", target: "/v1/kv/config/db?stale&index=1&wait=1ms", setup: seed, status: 200},
		{method: "GET", target: "/v1/kv/config/?prefix", setup: seed, status: 200},
		{method: "GET", target: "/v1/kv/?prefix=true", setup: seed, status: 200},
		{method: "GET", target: "/v1/kv/?prefix", status: 200},
		{method: "GET", target: "/v1/kv/nokey", status: 404},
		{method: "GET", target: "/v1/kv/", status: 400},
		{method: "GET", target: "/v1/kv/a?stale=maybe", status: 400},
		{method: "GET", target: "/v1/kv/a", setup: kvErr(ErrNoLeader), status: 503},
		{method: "GET", target: "/v1/kv/a", setup: kvErr(ErrNotLeader), status: 409},
		{method: "GET", target: "/v1/kv/a", setup: kvErr(errors.New("disk on fire")), status: 500},
		{method: "GET", target: "/v1/kv/a", noKV: true, status: 501},
		{method: "GET", target: "/v1/kv/a", setup: func(f *fakeBackend) {
			f.set(func(s *Status) { s.Mode, s.Role, s.Leader = ModeMasterless, "none", nil })
		}, status: 409},
		{method: "GET", target: "/v1/kv/a", opts: Options{Token: tok, ProtectReads: true}, status: 401},
		{method: "PUT", target: "/v1/kv/config/db", token: tok, body: `{"value": "aGVsbG8="}`, setup: seed, status: 200},
		{method: "PUT", target: "/v1/kv/config/new?cas=0&ephemeral", token: tok, body: `{"value": "aGVsbG8="}`, status: 200},
		{method: "PUT", target: "/v1/kv/config/db?cas=99", token: tok, body: `{"value": "aGVsbG8="}`, setup: seed, status: 409},
		{method: "PUT", target: "/v1/kv/config/db?cas=x", token: tok, body: `{}`, status: 400},
		{method: "PUT", target: "/v1/kv/config/db", token: tok, body: `{"value": 1}`, status: 400},
		{method: "PUT", target: "/v1/kv/config/db", token: tok, body: bigValue, status: 413},
		{method: "PUT", target: "/v1/kv/config/db", token: tok, body: `{}`, setup: kvErr(ErrQuota), status: 507},
		{method: "PUT", target: "/v1/kv/config/db", token: tok, body: `{}`, setup: kvErr(context.DeadlineExceeded), status: 504},
		{method: "PUT", target: "/v1/kv/config/db", token: tok, body: `{}`, noKV: true, status: 501},
		{method: "PUT", target: "/v1/kv/config/db", opts: Options{Token: tok}, body: `{}`, status: 401},
		{method: "DELETE", target: "/v1/kv/config/db", token: tok, setup: seed, status: 200},
		{method: "DELETE", target: "/v1/kv/config/db", token: tok, status: 404},
		{method: "DELETE", target: "/v1/kv/config/?prefix", token: tok, status: 400},
		{method: "POST", target: "/v1/locks/backup?wait=1s", token: tok, status: 200},
		{method: "POST", target: "/v1/locks/backup?wait=x", token: tok, status: 400},
		{method: "POST", target: "/v1/locks/backup", token: tok, setup: kvErr(context.DeadlineExceeded), status: 408},
		{method: "POST", target: "/v1/locks/backup", token: tok, setup: kvErr(ErrNoLeader), status: 503},
		{method: "POST", target: "/v1/locks/backup", opts: Options{Token: tok}, status: 401},
		{method: "GET", target: "/v1/kv-watch?from=x", status: 400},
		{method: "POST", target: "/v1/sessions", token: tok, body: `{"ttl": "10s"}`, status: 200},
		{method: "POST", target: "/v1/sessions", token: tok, body: `{"ttl": "1ms"}`, status: 400},
		{method: "GET", target: "/v1/sessions", setup: withSession, status: 200},
		{method: "GET", target: "/v1/sessions", noKV: true, status: 501},
		{method: "PUT", target: "/v1/sessions/1/renew", token: tok, setup: withSession, status: 200},
		{method: "PUT", target: "/v1/sessions/2/renew", token: tok, status: 404},
		{method: "DELETE", target: "/v1/sessions/1", token: tok, setup: withSession, status: 200},
		{method: "DELETE", target: "/v1/sessions/x", token: tok, status: 400},
		{method: "PUT", target: "/v1/kv/config/s?session=1", token: tok, body: `{"value": "aGVsbG8="}`, setup: withSession, status: 200},
		{method: "PUT", target: "/v1/kv/config/s?session=2", token: tok, body: `{}`, status: 404},
		{method: "POST", target: "/v1/locks/backup?session=1", token: tok, setup: withSession, status: 200},
		{method: "POST", target: "/v1/locks/backup?session=2", token: tok, status: 404},
		{method: "DELETE", target: "/v1/locks/backup?token=2", token: tok, setup: withSessionLock, status: 200},
		{method: "DELETE", target: "/v1/locks/backup?token=3", token: tok, setup: withSessionLock, status: 404},
		{method: "GET", target: "/v1/kv-watch", setup: kvErr(ErrNoLeader), status: 503},
	}
	seen200 := map[string]bool{}
	for _, c := range cases {
		f := realisticFake()
		if c.setup != nil {
			c.setup(f)
		}
		opts := c.opts
		if opts.Token == "" && c.token != "" {
			opts.Token = c.token
		}
		opts.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = w.Write([]byte("qcluster_is_leader 0\n"))
		})
		var b Backend = f
		if c.noKV {
			b = struct{ Backend }{f}
		}
		h := NewHandlerWithOptions(b, opts)
		var body *strings.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		} else {
			body = strings.NewReader("")
		}
		r := newReq(c.method, c.target, body)
		if c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		rec := serveReq(h, r)
		f.stop()
		name := c.method + " " + c.target
		if rec.Code != c.status {
			t.Errorf("%s: %d %s, want %d", name, rec.Code, rec.Body, c.status)
			continue
		}
		if err := spec.Check(c.method, r.URL.Path, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Error(err)
		}
		if tpl, ok := spec.Template(r.URL.Path); ok && rec.Code == 200 && c.method != "HEAD" {
			seen200[c.method+" "+tpl] = true
		}
	}
	seen200["GET /v1/watch"] = true    // a stream: TestOpenAPIWatchEvents
	seen200["GET /v1/kv-watch"] = true // a stream: TestOpenAPIKVEvents
	for _, p := range spec.Paths() {
		for _, m := range spec.Methods(p) {
			if !seen200[m+" "+p] {
				t.Errorf("%s %s: no answer 200 was checked against the document", m, p)
			}
		}
	}
}

// TestOpenAPIWatchEvents: the data of /v1/watch's leader and member events
// match the Status and MemberEvent schemas.
func TestOpenAPIWatchEvents(t *testing.T) {
	spec := loadSpec(t)
	f := realisticFake()
	srv := httptest.NewServer(NewHandler(f))
	defer srv.Close()
	defer f.stop()
	resp, br := openStream(t, srv.URL+"/v1/watch", "")
	defer resp.Body.Close()
	if err := spec.Check("GET", "/v1/watch", resp.StatusCode, resp.Header, nil); err != nil {
		t.Fatal(err)
	}
	ev := readEvent(t, br)
	for ev.event == "" { // the retry: line, a keep-alive
		ev = readEvent(t, br)
	}
	if ev.event != "leader" {
		t.Fatalf("first event %q, want leader", ev.event)
	}
	if err := spec.CheckSchema("Status", []byte(ev.data)); err != nil {
		t.Error(err)
	}
	waitFor(t, 10*time.Second, "the member subscription", func() bool { return f.numSubs() > 0 })
	m := f.Peers().Peers[2]
	f.emit(MemberEvent{Type: "suspect", Member: m, Time: time.Now()})
	for {
		ev = readEvent(t, br)
		if ev.event == "member" {
			break
		}
	}
	if err := spec.CheckSchema("MemberEvent", []byte(ev.data)); err != nil {
		t.Error(err)
	}
}
