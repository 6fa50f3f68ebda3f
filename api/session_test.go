package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The fake's sessions: enough for the handler's tests.

var _ SessionBackend = (*fakeBackend)(nil)

func (f *fakeBackend) SessionCreate(ctx context.Context, ttl time.Duration) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvWrites++
	if f.kvErr != nil {
		return Session{}, f.kvErr
	}
	if ttl < time.Second {
		return Session{}, fmt.Errorf("%w: ttl %v under 1s", ErrInvalid, ttl)
	}
	if f.sessions == nil {
		f.sessions = map[uint64]Session{}
	}
	f.kvRev++
	s := Session{ID: f.kvRev, TTL: ttl.String(), Owner: f.st.Identifier}
	f.sessions[s.ID] = s
	return s, nil
}

func (f *fakeBackend) SessionRenew(ctx context.Context, id uint64) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvWrites++
	s, ok := f.sessions[id]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	return s, f.kvErr
}

func (f *fakeBackend) SessionRevoke(ctx context.Context, id uint64) (Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvWrites++
	s, ok := f.sessions[id]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	delete(f.sessions, id)
	for k, kv := range f.kv {
		if kv.Session == id {
			delete(f.kv, k)
		}
	}
	return s, nil
}

func (f *fakeBackend) SessionList(ctx context.Context, stale bool) (SessionList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out SessionList
	for _, s := range f.sessions {
		out.Sessions = append(out.Sessions, s)
	}
	slices.SortFunc(out.Sessions, func(a, b Session) int { return int(a.ID) - int(b.ID) })
	return out, f.kvErr
}

func (f *fakeBackend) LockInSession(ctx context.Context, name string, session uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvWrites++
	if f.kvErr != nil {
		return 0, f.kvErr
	}
	if _, ok := f.sessions[session]; !ok {
		return 0, ErrSessionNotFound
	}
	if f.lockSess == nil {
		f.lockSess = map[string]uint64{}
	}
	f.kvRev++
	f.lockSess[name] = f.kvRev
	return f.kvRev, nil
}

func (f *fakeBackend) LockRelease(ctx context.Context, name string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvWrites++
	if f.lockSess[name] != token {
		return ErrKeyNotFound
	}
	delete(f.lockSess, name)
	return nil
}

// TestSessionEndpoints: create, list, put in a session, lock in a
// session (an answer at once), release, renew, revoke (the key goes),
// and the refusals.
func TestSessionEndpoints(t *testing.T) {
	const tok = "s3cret"
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{Token: tok})
	send := func(method, path, body string) (int, []byte) {
		r := newReq(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		rec := serveReq(h, r)
		return rec.Code, rec.Body.Bytes()
	}
	code, body := send("POST", "/v1/sessions", `{"ttl": "10s"}`)
	var s Session
	if code != 200 || json.Unmarshal(body, &s) != nil || s.ID == 0 || s.TTL != "10s" || s.Owner != "server_a" {
		t.Fatalf("create: %d %s", code, body)
	}
	id := fmt.Sprint(s.ID)
	code, body = send("PUT", "/v1/kv/svc/a?session="+id, `{"value": "eA=="}`)
	var res KVResult
	if code != 200 || json.Unmarshal(body, &res) != nil || res.KV == nil || res.KV.Session != s.ID {
		t.Fatalf("put in session: %d %s", code, body)
	}
	code, body = send("POST", "/v1/locks/job?session="+id, ``)
	var le LockEvent
	if code != 200 || json.Unmarshal(body, &le) != nil || le.Name != "job" || le.Token == 0 || le.Session != s.ID {
		t.Fatalf("lock in session: %d %s", code, body)
	}
	if code, body := send("DELETE", fmt.Sprintf("/v1/locks/job?token=%d", le.Token+1), ``); code != 404 {
		t.Fatalf("release with a wrong token: %d %s", code, body)
	}
	if code, body := send("DELETE", fmt.Sprintf("/v1/locks/job?token=%d", le.Token), ``); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	code, body = send("GET", "/v1/sessions", ``)
	var list SessionList
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Sessions) != 1 || list.Sessions[0] != s {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := send("PUT", "/v1/sessions/"+id+"/renew", ``); code != 200 {
		t.Fatalf("renew: %d %s", code, body)
	}
	if code, body := send("DELETE", "/v1/sessions/"+id, ``); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := send("GET", "/v1/kv/svc/a", ``); code != 404 {
		t.Fatalf("key of a revoked session: %d", code)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"PUT", "/v1/sessions/" + id + "/renew", ``, 404, CodeSessionNotFound},
		{"DELETE", "/v1/sessions/" + id, ``, 404, CodeSessionNotFound},
		{"PUT", "/v1/kv/b?session=" + id, `{}`, 404, CodeSessionNotFound},
		{"POST", "/v1/locks/job?session=" + id, ``, 404, CodeSessionNotFound},
		{"POST", "/v1/sessions", `{"ttl": "1ms"}`, 400, CodeBadRequest},
		{"POST", "/v1/sessions", `{"ttl": "soon"}`, 400, CodeBadRequest},
		{"POST", "/v1/sessions", ``, 400, CodeBadRequest},
		{"PUT", "/v1/sessions/0/renew", ``, 400, CodeBadRequest},
		{"DELETE", "/v1/sessions/x", ``, 400, CodeBadRequest},
		{"PUT", "/v1/kv/b?session=x", `{}`, 400, CodeBadRequest},
		{"PUT", "/v1/kv/b?session=3&ephemeral", `{}`, 400, CodeBadRequest},
		{"DELETE", "/v1/kv/b?session=3", ``, 400, CodeBadRequest},
		{"POST", "/v1/locks/job?session=-1", ``, 400, CodeBadRequest},
		{"DELETE", "/v1/locks/job", ``, 400, CodeBadRequest},
	} {
		code, body := send(c.method, c.path, c.body)
		var e Error
		if code != c.status || json.Unmarshal(body, &e) != nil || e.Code != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, code, body, c.status, c.code)
		}
	}
}

// TestSessionAuthAndUnsupported: the session changes need the token;
// a Backend without sessions answers them, and ?session=, with 501.
func TestSessionAuthAndUnsupported(t *testing.T) {
	const tok = "s3cret"
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{Token: tok})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sessions", `{"ttl": "10s"}`},
		{"PUT", "/v1/sessions/1/renew", ``},
		{"DELETE", "/v1/sessions/1", ``},
		{"DELETE", "/v1/locks/a?token=1", ``},
	} {
		wantError(t, serveReq(h, newReq(c.method, c.path, strings.NewReader(c.body))), http.StatusUnauthorized, CodeUnauthorized)
	}
	if n := f.mutations(); n != 0 {
		t.Fatalf("%d changes without the token", n)
	}
	// A Backend with a KV store but no sessions.
	type kvOnly struct {
		Backend
		KVBackend
	}
	h = NewHandlerWithOptions(kvOnly{f, f}, Options{})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sessions", `{"ttl": "10s"}`},
		{"GET", "/v1/sessions", ``},
		{"PUT", "/v1/kv/a?session=1", `{}`},
		{"POST", "/v1/locks/a?session=1", ``},
		{"DELETE", "/v1/locks/a?token=1", ``},
	} {
		wantError(t, serveReq(h, newReq(c.method, c.path, strings.NewReader(c.body))), http.StatusNotImplemented, CodeUnsupported)
	}
}
