package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/api/apitest"
	"github.com/qcluster/qcluster/internal/openapicheck"
)

// The KV store and locks over HTTP, against apitest's in-memory store.

const kvToken = "s3cret"

func newKVPeer() *apitest.Backend {
	leader := &api.Peer{Identifier: "server_a", Host: "localhost", Port: 7001}
	return apitest.New(api.Status{Identifier: "server_a", Role: "leader", IsLeader: true, Term: 2, Index: 10, Leader: leader, Voters: []string{"server_a"}, Mode: api.ModeLeader, Joined: true},
		[]api.Member{{Peer: *leader, Voter: true, IsLeader: true, IsSelf: true, Role: "leader", State: "alive"}}, 100)
}

// kvServer serves b's API on a loopback port, with the token.
func kvServer(t *testing.T, b *apitest.Backend) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(api.NewHandlerWithOptions(b, api.Options{Token: kvToken, KeepAlive: 50 * time.Millisecond}))
	t.Cleanup(func() {
		b.Stop()
		srv.Close()
	})
	return srv
}

// do sends a request as the API's clients do (JSON, the token) and
// returns the status, the X-QCluster-Index header and the body.
func do(t *testing.T, method, url, body string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+kvToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get(api.IndexHeader), b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// wantCode checks an error answer's status and code.
func wantCode(t *testing.T, what string, status int, body []byte, wantStatus int, code string) api.Error {
	t.Helper()
	e := decode[api.Error](t, body)
	if status != wantStatus || e.Code != code || e.Error == "" {
		t.Fatalf("%s: %d %s, want %d %s", what, status, body, wantStatus, code)
	}
	return e
}

func TestKVPutGetDelete(t *testing.T) {
	b := newKVPeer()
	srv := kvServer(t, b)
	kv := srv.URL + "/v1/kv/"

	status, idx, body := do(t, "PUT", kv+"config/db", `{"value": "aGVsbG8="}`)
	res := decode[api.KVResult](t, body)
	if status != 200 || res.Revision != 1 || res.KV == nil || string(res.KV.Value) != "hello" || res.KV.Version != 1 || res.KV.CreateRevision != 1 || res.Prev != nil || idx != "1" {
		t.Fatalf("PUT: %d %s (index %s)", status, body, idx)
	}
	status, _, body = do(t, "PUT", kv+"config/db", `{"value": "d29ybGQ="}`)
	res = decode[api.KVResult](t, body)
	if status != 200 || res.Revision != 2 || res.KV.Version != 2 || res.KV.CreateRevision != 1 || res.KV.ModRevision != 2 || res.Prev == nil || string(res.Prev.Value) != "hello" {
		t.Fatalf("second PUT: %d %s", status, body)
	}
	status, idx, body = do(t, "GET", kv+"config/db", "")
	list := decode[api.KVList](t, body)
	if status != 200 || idx != "2" || list.Revision != 2 || len(list.KVs) != 1 || string(list.KVs[0].Value) != "world" {
		t.Fatalf("GET: %d %s", status, body)
	}
	// Keys with slashes, escaped or not, and a list by prefix.
	do(t, "PUT", kv+"config/a%2F%2Fb", `{"value": ""}`)
	do(t, "PUT", kv+"other", `{}`)
	status, _, body = do(t, "GET", kv+"config/?prefix", "")
	list = decode[api.KVList](t, body)
	if status != 200 || len(list.KVs) != 2 || list.KVs[0].Key != "config/a//b" || list.KVs[1].Key != "config/db" {
		t.Fatalf("GET ?prefix: %d %s", status, body)
	}
	status, _, body = do(t, "GET", kv+"?prefix", "")
	if list = decode[api.KVList](t, body); status != 200 || len(list.KVs) != 3 {
		t.Fatalf("GET /v1/kv/?prefix: %d %s", status, body)
	}
	// An absent key: 404, with the store's revision.
	status, idx, body = do(t, "GET", kv+"nokey", "")
	wantCode(t, "GET nokey", status, body, 404, api.CodeKeyNotFound)
	if idx != "4" {
		t.Errorf("404 index %q, want 4", idx)
	}

	// Compare-and-swap.
	status, _, body = do(t, "PUT", kv+"config/db?cas=1", `{"value": "eA=="}`)
	e := wantCode(t, "PUT ?cas=1", status, body, 409, api.CodeCompareFailed)
	if e.KV == nil || e.KV.ModRevision != 2 || string(e.KV.Value) != "world" {
		t.Errorf("failed compare: the current key %+v", e.KV)
	}
	if status, _, body = do(t, "PUT", kv+"config/db?cas=2", `{"value": "eA=="}`); status != 200 {
		t.Fatalf("PUT ?cas=2: %d %s", status, body)
	}
	status, _, body = do(t, "PUT", kv+"config/db?cas=0", `{}`)
	if e := wantCode(t, "PUT ?cas=0 of an existing key", status, body, 409, api.CodeCompareFailed); e.KV == nil {
		t.Error("no current key")
	}
	status, _, body = do(t, "PUT", kv+"fresh?cas=0", `{}`)
	if status != 200 {
		t.Fatalf("PUT ?cas=0 of an absent key: %d %s", status, body)
	}
	status, _, body = do(t, "PUT", kv+"absent?cas=3", `{}`)
	if e := wantCode(t, "PUT ?cas=3 of an absent key", status, body, 409, api.CodeCompareFailed); e.KV != nil {
		t.Errorf("failed compare of an absent key names %+v", e.KV)
	}

	// Ephemeral keys are bound to the answering peer's member.
	status, _, body = do(t, "PUT", kv+"svc/a?ephemeral", `{"value": "MTAuMC4wLjE="}`)
	if res = decode[api.KVResult](t, body); status != 200 || res.KV.Owner != "server_a" {
		t.Fatalf("PUT ?ephemeral: %d %s", status, body)
	}
	if n := b.DropOwner("server_a"); n != 1 {
		t.Fatalf("DropOwner: %d keys", n)
	}

	// Delete, with a compare.
	status, _, body = do(t, "DELETE", kv+"config/db?cas=2", "")
	wantCode(t, "DELETE ?cas=2", status, body, 409, api.CodeCompareFailed)
	status, _, body = do(t, "DELETE", kv+"config/db", "")
	if res = decode[api.KVResult](t, body); status != 200 || res.Prev == nil || string(res.Prev.Value) != "x" || res.KV != nil {
		t.Fatalf("DELETE: %d %s", status, body)
	}
	status, _, body = do(t, "DELETE", kv+"config/db", "")
	wantCode(t, "DELETE again", status, body, 404, api.CodeKeyNotFound)
}

// TestKVRefusals: what the handler refuses before the store sees it.
func TestKVRefusals(t *testing.T) {
	b := newKVPeer()
	srv := kvServer(t, b)
	kv := srv.URL + "/v1/kv/"
	long := strings.Repeat("k", api.MaxKeySize+1)
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		// The store's own keys (locks) are out of reach.
		{"PUT", "%00lock/backup", `{}`, 400, api.CodeBadRequest},
		{"DELETE", "%00lock/backup", ``, 400, api.CodeBadRequest},
		{"GET", "%00lock/backup", ``, 400, api.CodeBadRequest},
		{"GET", "%00lock/?prefix", ``, 400, api.CodeBadRequest},
		{"PUT", "a%00b", `{}`, 400, api.CodeBadRequest},
		{"PUT", long, `{}`, 400, api.CodeBadRequest},
		{"PUT", "", `{}`, 400, api.CodeBadRequest},
		{"PUT", "big", `{"value": "` + strings.Repeat("A", (api.MaxValueSize/3+1)*4) + `"}`, 413, api.CodeTooLarge},
		{"PUT", "big", `{"value": "` + strings.Repeat("A", (api.MaxValueSize+3)/3*4+2048) + `"}`, 413, api.CodeTooLarge},
		{"PUT", "k", ``, 400, api.CodeBadRequest},
		{"PUT", "k", `{"value": "not base64!"}`, 400, api.CodeBadRequest},
		{"PUT", "k", `{"valeu": ""}`, 400, api.CodeBadRequest},
		{"PUT", "k?ephemeral=perhaps", `{}`, 400, api.CodeBadRequest},
		{"PUT", "k?cas=-1", `{}`, 400, api.CodeBadRequest},
		{"DELETE", "k?ephemeral", ``, 400, api.CodeBadRequest},
		{"DELETE", "k?prefix", ``, 400, api.CodeBadRequest},
		{"GET", "k?index=x", ``, 400, api.CodeBadRequest},
	} {
		status, _, body := do(t, c.method, kv+c.path, c.body)
		wantCode(t, c.method+" "+truncate(c.path), status, body, c.status, c.code)
	}
	if n := b.KVWrites(); n != 0 {
		t.Errorf("refused requests reached the store: %d writes", n)
	}
	for _, q := range []string{"?prefix=%00lock/", "?from=x"} {
		status, _, body := do(t, "GET", srv.URL+"/v1/kv-watch"+q, "")
		wantCode(t, "GET /v1/kv-watch"+q, status, body, 400, api.CodeBadRequest)
	}
	for _, name := range []string{strings.Repeat("n", api.MaxLockNameSize+1), "a%0Ab", "%FF"} {
		status, _, body := do(t, "POST", srv.URL+"/v1/locks/"+name, "")
		wantCode(t, "POST /v1/locks/"+truncate(name), status, body, 400, api.CodeBadRequest)
	}
	// The store's quota, and its other errors.
	b.SetKVQuota(10)
	status, _, body := do(t, "PUT", kv+"k", `{"value": "MDEyMzQ1Njc4OQ=="}`)
	wantCode(t, "PUT over the quota", status, body, 507, api.CodeQuota)
	b.SetKVErr(api.ErrNoLeader)
	status, _, body = do(t, "GET", kv+"k", "")
	wantCode(t, "GET without a leader", status, body, 503, api.CodeNoLeader)
	// Masterless: no KV store.
	b.SetKVErr(nil)
	b.Set(func(s *api.Status) { s.Mode, s.Role, s.Leader, s.IsLeader = api.ModeMasterless, "none", nil, false })
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		status, _, body = do(t, m, kv+"k", `{}`)
		wantCode(t, m+" masterless", status, body, 409, api.CodeMasterless)
	}
	status, _, body = do(t, "POST", srv.URL+"/v1/locks/x", "")
	wantCode(t, "POST /v1/locks masterless", status, body, 409, api.CodeMasterless)
}

func truncate(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// TestKVBlockingQuery: GET ?index= waits for a change of the key (not of
// another) after that revision.
func TestKVBlockingQuery(t *testing.T) {
	b := newKVPeer()
	srv := kvServer(t, b)
	kv := srv.URL + "/v1/kv/"
	do(t, "PUT", kv+"a", `{"value": "MQ=="}`)
	_, idx, _ := do(t, "GET", kv+"a", "")

	type answer struct {
		status int
		index  string
		list   api.KVList
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", kv+"a?index="+idx+"&wait=60s", nil)
		req.Header.Set("Authorization", "Bearer "+kvToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- answer{}
			return
		}
		defer resp.Body.Close()
		var l api.KVList
		_ = json.NewDecoder(resp.Body).Decode(&l)
		got <- answer{resp.StatusCode, resp.Header.Get(api.IndexHeader), l}
	}()
	waitUntil(t, "the blocking query's watch", func() bool { return b.KVWatches() == 1 })
	do(t, "PUT", kv+"ab", `{"value": "eA=="}`) // another key under the same prefix
	do(t, "PUT", kv+"a", `{"value": "Mg=="}`)
	select {
	case a := <-got:
		if a.status != 200 || a.index != "3" || len(a.list.KVs) != 1 || string(a.list.KVs[0].Value) != "2" {
			t.Fatalf("blocking GET: %+v", a)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking query did not answer after the change")
	}
	// An index the key has changed since answers at once, as does one
	// ahead of the store; ?prefix waits for any key under it.
	for _, q := range []string{"a?index=2&wait=60s", "a?index=99&wait=60s", "?prefix&index=2&wait=60s"} {
		status, idx, body := do(t, "GET", kv+q, "")
		if status != 200 || idx != "3" {
			t.Errorf("GET %s: %d %s %s", q, status, idx, body)
		}
	}
	// A wait that passes answers with the key as it is.
	status, idx, body := do(t, "GET", kv+"a?index=3&wait=10ms", "")
	if status != 200 || idx != "3" {
		t.Errorf("a wait that passes: %d %s %s", status, idx, body)
	}
	waitUntil(t, "the watches to end", func() bool { return b.KVWatches() == 0 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sse is one event of a stream.
type sse struct{ id, event, data string }

// stream is an open event stream.
type stream struct {
	resp   *http.Response
	br     *bufio.Reader
	cancel context.CancelFunc // ends the request
}

// openSSE sends a request for an event stream and checks the answer is
// one.
func openSSE(t *testing.T, method, url, lastID string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+kvToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
	return &stream{resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel}
}

// next returns the next event (comments and the retry hint skipped); ok
// is false at the end of the stream.
func (s *stream) next(t *testing.T) (ev sse, ok bool) {
	t.Helper()
	if s.cancel != nil {
		// Nothing for 30s: the stream ends (and the test says so).
		timer := time.AfterFunc(30*time.Second, s.cancel)
		defer timer.Stop()
	}
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			if ev.event != "" {
				t.Fatalf("the stream ended inside an event: %+v", ev)
			}
			return ev, false
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if ev.event != "" {
				return ev, true
			}
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "id":
			ev.id = v
		case "event":
			ev.event = v
		case "data":
			ev.data = v
		}
	}
}

func (s *stream) must(t *testing.T) sse {
	t.Helper()
	ev, ok := s.next(t)
	if !ok {
		t.Fatal("the stream ended")
	}
	return ev
}

// wantEvent checks a put or delete event of key at revision id.
func wantEvent(t *testing.T, ev sse, id, typ, key string) api.KVEvent {
	t.Helper()
	e := decode[api.KVEvent](t, []byte(ev.data))
	if ev.id != id || ev.event != typ || e.Type != typ || e.KV.Key != key {
		t.Fatalf("event %+v, want id %s, %s of %q", ev, id, typ, key)
	}
	return e
}

// TestKVWatchStream: every change under the prefix, in order, from a
// revision; resumable with Last-Event-ID without a gap, also inside a
// revision of several events; "compacted" when the history is gone.
func TestKVWatchStream(t *testing.T) {
	b := newKVPeer()
	srv := kvServer(t, b)
	kv := srv.URL + "/v1/kv/"
	watch := srv.URL + "/v1/kv-watch?prefix=svc/"
	do(t, "PUT", kv+"svc/a", `{"value": "MQ=="}`) // 1
	do(t, "PUT", kv+"other", `{}`)                // 2

	// From now: only what comes next.
	now := openSSE(t, "GET", watch, "")
	if idx := now.resp.Header.Get(api.IndexHeader); idx != "2" {
		t.Errorf("a watch from now starts after %q, want 2", idx)
	}
	// From revision 1: the history first.
	s := openSSE(t, "GET", watch+"&from=1", "")
	wantEvent(t, s.must(t), "1", "put", "svc/a")
	do(t, "PUT", kv+"svc/b?ephemeral", `{}`)  // 3
	do(t, "PUT", kv+"svc/c?ephemeral", `{}`)  // 4
	do(t, "DELETE", kv+"svc/a", ``)           // 5
	b.DropOwner("server_a")                   // 6: svc/b and svc/c at once
	do(t, "PUT", kv+"svc/d", `{"value": ""}`) // 7
	wantEvent(t, now.must(t), "3", "put", "svc/b")
	for _, w := range []struct{ id, typ, key string }{
		{"3", "put", "svc/b"}, {"4", "put", "svc/c"}, {"5", "delete", "svc/a"},
		{"6", "delete", "svc/b"}, {"6.1", "delete", "svc/c"}, {"7", "put", "svc/d"},
	} {
		e := wantEvent(t, s.must(t), w.id, w.typ, w.key)
		if w.typ == "delete" && (e.Prev == nil || e.KV.ModRevision != e.Revision) {
			t.Errorf("delete event %+v", e)
		}
	}
	// Resumed after each id: the stream goes on exactly after it.
	for _, c := range []struct{ last, id, typ, key string }{
		{"5", "6", "delete", "svc/b"}, {"6", "6.1", "delete", "svc/c"}, {"6.1", "7", "put", "svc/d"}, {"1", "3", "put", "svc/b"},
	} {
		r := openSSE(t, "GET", watch, c.last)
		wantEvent(t, r.must(t), c.id, c.typ, c.key)
	}
	// A bad Last-Event-ID.
	req, _ := http.NewRequest("GET", watch, nil)
	req.Header.Set("Last-Event-ID", "6.x")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad Last-Event-ID: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The history before 6 is dropped: a watch from 5 is told so.
	b.Compact(6)
	c := openSSE(t, "GET", watch+"&from=5", "")
	ev := c.must(t)
	if cd := decode[api.KVCompacted](t, []byte(ev.data)); ev.event != "compacted" || cd.Oldest != 6 {
		t.Fatalf("from a compacted revision: %+v", ev)
	}
	if _, ok := c.next(t); ok {
		t.Fatal("the stream goes on after compacted")
	}
	// A reader that had not read that far is told so too: s read up to
	// 7, and the history it would go on from is still there; now drop it
	// all and make a change.
	b.Compact(100)
	do(t, "PUT", kv+"svc/e", `{}`) // 8
	ev = s.must(t)
	if ev.event != "put" && ev.event != "compacted" {
		t.Fatalf("after a compaction: %+v", ev)
	}
	// The peer stops: the streams end.
	b.Stop()
	for _, st := range []*stream{now, s} {
		for {
			if _, ok := st.next(t); !ok {
				break
			}
		}
	}
}

// TestKVWatchResumesAReaderThatFellBehind: when the store ends a watch
// (its reader fell behind), the stream goes on from where the client is,
// or says "compacted" when that history is gone.
func TestKVWatchResumesAReaderThatFellBehind(t *testing.T) {
	b := newKVPeer()
	srv := kvServer(t, b)
	kv := srv.URL + "/v1/kv/"
	do(t, "PUT", kv+"k", `{}`) // 1
	s := openSSE(t, "GET", srv.URL+"/v1/kv-watch?from=1", "")
	wantEvent(t, s.must(t), "1", "put", "k")
	b.EndWatches()
	do(t, "PUT", kv+"k", `{}`) // 2
	wantEvent(t, s.must(t), "2", "put", "k")
	b.Compact(3)
	b.EndWatches()
	ev := s.must(t)
	if cd := decode[api.KVCompacted](t, []byte(ev.data)); ev.event != "compacted" || cd.Oldest != 3 {
		t.Fatalf("resumed after the history: %+v", ev)
	}
	if _, ok := s.next(t); ok {
		t.Fatal("the stream goes on after compacted")
	}
}

// TestLock: POST /v1/locks/{name} holds the lock while the request is
// open, releases it when the client goes, and says "lost" when it is lost.
func TestLock(t *testing.T) {
	b := newKVPeer()
	srv := kvServer(t, b)
	url := srv.URL + "/v1/locks/backup"

	first := openSSE(t, "POST", url, "")
	ev := first.must(t)
	le := decode[api.LockEvent](t, []byte(ev.data))
	if ev.event != "acquired" || le.Name != "backup" || le.Token == 0 || first.resp.Header.Get(api.IndexHeader) != strconv.FormatUint(le.Token, 10) {
		t.Fatalf("first holder: %+v %+v", ev, le)
	}
	if got := b.Locks(); len(got) != 1 || got[0] != "backup" {
		t.Fatalf("locks held: %v", got)
	}
	// A second holder waits; within its ?wait=, it gets 408.
	status, _, body := do(t, "POST", url+"?wait=50ms", "")
	wantCode(t, "a second holder", status, body, 408, api.CodeTimeout)

	// One that waits longer gets it when the first goes away.
	second := make(chan *stream, 1)
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	go func() {
		req, _ := http.NewRequestWithContext(ctx2, "POST", url+"?wait=60s", nil)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+kvToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			second <- nil
			return
		}
		second <- &stream{resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel2}
	}()
	first.resp.Body.Close() // the client goes away: the lock is released
	var s2 *stream
	select {
	case s2 = <-second:
	case <-time.After(30 * time.Second):
		t.Fatal("the second holder did not get the lock after the first went away")
	}
	if s2 == nil || s2.resp.StatusCode != 200 {
		t.Fatalf("second holder: %+v", s2)
	}
	defer s2.resp.Body.Close()
	ev = s2.must(t)
	le2 := decode[api.LockEvent](t, []byte(ev.data))
	if ev.event != "acquired" || le2.Token <= le.Token {
		t.Fatalf("second holder: %+v (first token %d)", le2, le.Token)
	}
	// The lock is lost (its member removed, say): "lost", and the end.
	if !b.LoseLock("backup") {
		t.Fatal("the lock was not held")
	}
	ev = s2.must(t)
	if lost := decode[api.LockEvent](t, []byte(ev.data)); ev.event != "lost" || lost.Token != le2.Token {
		t.Fatalf("after LoseLock: %+v", ev)
	}
	if _, ok := s2.next(t); ok {
		t.Fatal("the stream goes on after lost")
	}
	waitUntil(t, "no lock held", func() bool { return len(b.Locks()) == 0 })
}

// TestLockReleasedWhenTheClientGoes: the lock goes with the request, also
// while nothing else happens.
func TestLockReleasedWhenTheClientGoes(t *testing.T) {
	b := newKVPeer()
	srv := kvServer(t, b)
	for i := range 3 {
		s := openSSE(t, "POST", srv.URL+"/v1/locks/job", "")
		if ev := s.must(t); ev.event != "acquired" {
			t.Fatalf("round %d: %+v", i, ev)
		}
		s.resp.Body.Close()
		waitUntil(t, "the lock released", func() bool { return len(b.Locks()) == 0 })
	}
}

// TestOpenAPIKVEvents: the data of the KV watch and lock events match
// their schemas, and the streams' answers the document.
func TestOpenAPIKVEvents(t *testing.T) {
	spec, err := openapicheck.New(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	b := newKVPeer()
	srv := kvServer(t, b)
	do(t, "PUT", srv.URL+"/v1/kv/a?ephemeral", `{"value": "MQ=="}`)
	do(t, "PUT", srv.URL+"/v1/kv/a", `{"value": "Mg=="}`)
	do(t, "DELETE", srv.URL+"/v1/kv/a", ``)
	s := openSSE(t, "GET", srv.URL+"/v1/kv-watch?from=1", "")
	if err := spec.Check("GET", "/v1/kv-watch", 200, s.resp.Header, nil); err != nil {
		t.Error(err)
	}
	for range 3 {
		if err := spec.CheckSchema("KVEvent", []byte(s.must(t).data)); err != nil {
			t.Error(err)
		}
	}
	b.Compact(3)
	c := openSSE(t, "GET", srv.URL+"/v1/kv-watch?from=1", "")
	if err := spec.CheckSchema("KVCompacted", []byte(c.must(t).data)); err != nil {
		t.Error(err)
	}
	l := openSSE(t, "POST", srv.URL+"/v1/locks/x", "")
	if err := spec.Check("POST", "/v1/locks/x", 200, l.resp.Header, nil); err != nil {
		t.Error(err)
	}
	if err := spec.CheckSchema("LockEvent", []byte(l.must(t).data)); err != nil {
		t.Error(err)
	}
	b.LoseLock("x")
	if err := spec.CheckSchema("LockEvent", []byte(l.must(t).data)); err != nil {
		t.Error(err)
	}
	// Error answers of the KV routes.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/kv/nokey", ""},
		{"PUT", "/v1/kv/a?cas=7", "{}"},
		{"PUT", "/v1/kv/%00x", "{}"},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+kvToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := spec.Check(c.method, req.URL.Path, resp.StatusCode, resp.Header, body); err != nil {
			t.Error(err)
		}
	}
}
