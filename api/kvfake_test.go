package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// The fake's KV store: enough for the handler's own tests (routes,
// refusals, the OpenAPI document); the full fake is apitest.Backend, which
// the tests of kv_test.go (package api_test) use.

var _ KVBackend = (*fakeBackend)(nil)

// kvInit makes the store on first use; f.mu is held.
func (f *fakeBackend) kvInit() {
	if f.kv == nil {
		f.kv = map[string]KeyValue{}
	}
}

func (f *fakeBackend) KVGet(ctx context.Context, key string, stale bool) (KVList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvInit()
	list := KVList{Revision: f.kvRev}
	if kv, ok := f.kv[key]; ok {
		list.KVs = []KeyValue{kv}
	}
	return list, f.kvErr
}

func (f *fakeBackend) KVList(ctx context.Context, prefix string, stale bool) (KVList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvInit()
	list := KVList{Revision: f.kvRev}
	for k, kv := range f.kv {
		if strings.HasPrefix(k, prefix) {
			list.KVs = append(list.KVs, kv)
		}
	}
	slices.SortFunc(list.KVs, func(a, b KeyValue) int { return strings.Compare(a.Key, b.Key) })
	return list, f.kvErr
}

func (f *fakeBackend) KVPut(ctx context.Context, key string, value []byte, opts KVWriteOptions) (KVResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvInit()
	f.kvWrites++
	if f.kvErr != nil {
		return KVResult{}, f.kvErr
	}
	prev, ok := f.kv[key]
	if opts.Compare && (ok && prev.ModRevision != opts.ModRevision || !ok && opts.ModRevision != 0) {
		res := KVResult{Revision: f.kvRev}
		if ok {
			res.KV = &prev
		}
		return res, ErrCompareFailed
	}
	f.kvRev++
	kv := KeyValue{Key: key, Value: value, CreateRevision: f.kvRev, ModRevision: f.kvRev, Version: 1}
	if opts.Ephemeral {
		kv.Owner = f.st.Identifier
	}
	if opts.Session != 0 {
		if _, ok := f.sessions[opts.Session]; !ok {
			return KVResult{Revision: f.kvRev}, ErrSessionNotFound
		}
		kv.Owner, kv.Session = f.st.Identifier, opts.Session
	}
	res := KVResult{Revision: f.kvRev, KV: &kv}
	if ok {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		res.Prev = &prev
	}
	f.kv[key] = kv
	return res, nil
}

func (f *fakeBackend) KVDelete(ctx context.Context, key string, opts KVWriteOptions) (KVResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvInit()
	f.kvWrites++
	if f.kvErr != nil {
		return KVResult{}, f.kvErr
	}
	prev, ok := f.kv[key]
	if !ok {
		return KVResult{Revision: f.kvRev}, ErrKeyNotFound
	}
	delete(f.kv, key)
	f.kvRev++
	return KVResult{Revision: f.kvRev, Prev: &prev}, nil
}

// KVWatch sends nothing: its channel is closed when ctx ends.
func (f *fakeBackend) KVWatch(ctx context.Context, prefix string, from uint64) (<-chan KVEvent, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kvErr != nil {
		return nil, 0, f.kvErr
	}
	if from == 0 {
		from = f.kvRev + 1
	}
	ch := make(chan KVEvent)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch, from, nil
}

// Lock takes the lock at once, and loses it at once (so that a request
// served with a context that never ends, as the table tests make them,
// answers: "acquired", then "lost").
func (f *fakeBackend) Lock(ctx context.Context, name string) (uint64, <-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvWrites++
	if f.kvErr != nil {
		return 0, nil, f.kvErr
	}
	f.kvRev++
	lost := make(chan struct{})
	close(lost)
	return f.kvRev, lost, nil
}

func (f *fakeBackend) Unlock(ctx context.Context, name string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kvWrites++
	return nil
}

// TestKVAuth: the KV changes and locks need the token; KV reads do not,
// unless reads are protected.
func TestKVAuth(t *testing.T) {
	const token = "s3cret-token"
	f := newFake(leaderB)
	h := NewHandlerWithOptions(f, Options{Token: token})
	send := func(method, path, body, auth string) *httptest.ResponseRecorder {
		r := newReq(method, path, strings.NewReader(body))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return serveReq(h, r)
	}
	changes := []struct{ method, path, body string }{
		{"PUT", "/v1/kv/a", `{"value": "eA=="}`},
		{"DELETE", "/v1/kv/a", ``},
		{"POST", "/v1/locks/a", ``},
	}
	for _, c := range changes {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + token} {
			wantError(t, send(c.method, c.path, c.body, auth), http.StatusUnauthorized, CodeUnauthorized)
		}
	}
	if n := f.mutations(); n != 0 {
		t.Fatalf("%d changes reached the store without the token", n)
	}
	for _, c := range changes {
		if rec := send(c.method, c.path, c.body, "Bearer "+token); rec.Code != 200 {
			t.Errorf("%s %s with the token: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if rec := serve(h, "GET", "/v1/kv/?prefix"); rec.Code != 200 {
		t.Errorf("GET /v1/kv/?prefix without the token: %d", rec.Code)
	}
	h = NewHandlerWithOptions(f, Options{Token: token, ProtectReads: true})
	for _, path := range []string{"/v1/kv/a", "/v1/kv/?prefix", "/v1/kv-watch"} {
		// A stream served by mistake ends with the request.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		wantError(t, serveReq(h, newReq("GET", path, nil).WithContext(ctx)), http.StatusUnauthorized, CodeUnauthorized)
		cancel()
	}
}
