package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// TestPeersBlockingQuery: GET /v1/peers?index=N waits until the membership
// index moves from N, and answers with the new list and index; a
// leadership change alone (Status.Index) does not answer it.
func TestPeersBlockingQuery(t *testing.T) {
	f := newFake(leaderB)
	h := NewHandler(f)
	for _, path := range []string{"/v1/peers", "/v1/peers/server_d"} {
		idx := f.Peers().Index
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() { done <- serve(h, "GET", path+"?index="+strconv.FormatUint(idx, 10)+"&wait=1m") }()
		waitFor(t, 5*time.Second, "the query to wait", func() bool { return f.numWaiters() == 1 })
		f.set(func(s *Status) { s.Term++ }) // leadership: not a membership change
		select {
		case rec := <-done:
			t.Fatalf("%s?index=%d answered a leadership change: %d %s", path, idx, rec.Code, rec.Body)
		case <-time.After(50 * time.Millisecond):
		}
		f.setPeers(func(ms []Member) []Member {
			return append(ms[:len(ms):len(ms)], Member{Peer: Peer{Identifier: "server_d", Host: "localhost", Port: 7004}, Role: "follower", Voter: true})
		})
		var rec *httptest.ResponseRecorder
		select {
		case rec = <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s?index=%d did not answer the membership change", path, idx)
		}
		if rec.Code != 200 || rec.Header().Get(IndexHeader) != strconv.FormatUint(idx+1, 10) {
			t.Fatalf("%s after the change: %d %s %v", path, rec.Code, rec.Body, rec.Header())
		}
		if path == "/v1/peers" {
			var pl PeerList
			if err := json.Unmarshal(rec.Body.Bytes(), &pl); err != nil || pl.Index != idx+1 || len(pl.Peers) != 4 || pl.Peers[3].Identifier != "server_d" {
				t.Fatalf("list after the change: %s (%v)", rec.Body, err)
			}
		} else {
			var m Member
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m.Identifier != "server_d" {
				t.Fatalf("member after the change: %s (%v)", rec.Body, err)
			}
		}
		f.setPeers(func(ms []Member) []Member { return ms[:3] })
	}

	// Another index (an older one, or from before a restart) answers at
	// once; a wait that ends answers the same index.
	idx := f.Peers().Index
	for _, q := range []string{"index=3", "index=" + strconv.FormatUint(idx+100, 10)} {
		rec := serve(h, "GET", "/v1/peers?"+q+"&wait=1h")
		if rec.Code != 200 || rec.Header().Get(IndexHeader) != strconv.FormatUint(idx, 10) {
			t.Errorf("?%s: %d %v", q, rec.Code, rec.Header())
		}
	}
	t0 := time.Now()
	rec := serve(h, "GET", "/v1/peers?index="+strconv.FormatUint(idx, 10)+"&wait=20ms")
	if rec.Code != 200 || rec.Header().Get(IndexHeader) != strconv.FormatUint(idx, 10) || time.Since(t0) < 20*time.Millisecond {
		t.Errorf("timed-out query: %d %v after %v", rec.Code, rec.Header(), time.Since(t0))
	}
	rec = serve(h, "GET", "/v1/peers/nobody?index="+strconv.FormatUint(idx, 10)+"&wait=1ms")
	wantError(t, rec, http.StatusNotFound, CodeUnknownPeer)
	for _, q := range []string{"index=x", "index=-1", "index=1&wait=10", "index=1&wait=-1s"} {
		wantError(t, serve(h, "GET", "/v1/peers?"+q), http.StatusBadRequest, CodeBadRequest)
	}

	// The client leaves: the query ends; the peer stops: 503.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveReq(h, httptest.NewRequestWithContext(ctx, "GET", "/v1/peers?index="+strconv.FormatUint(idx, 10), nil))
	}()
	waitFor(t, 5*time.Second, "the query to wait", func() bool { return f.numWaiters() == 1 })
	cancel()
	<-done
	go f.stop()
	wantError(t, serve(h, "GET", "/v1/peers?index="+strconv.FormatUint(idx, 10)+"&wait=10s"), http.StatusServiceUnavailable, CodeUnavailable)
}

// TestWatchStreamHoldsOneSubscription: a /v1/watch stream reads one Watch
// subscription for its whole life, never one per change, and ends it when
// the client leaves.
func TestWatchStreamHoldsOneSubscription(t *testing.T) {
	f := newFake(leaderB)
	srv := httptest.NewServer(NewHandlerWithOptions(f, Options{KeepAlive: 100 * time.Millisecond}))
	t.Cleanup(srv.Close) // after openStream's cleanup closes the stream
	resp, br := openStream(t, srv.URL+"/v1/watch", "")
	next := func() sseEvent {
		ev := readEvent(t, br)
		for ev.comment != "" {
			ev = readEvent(t, br)
		}
		return ev
	}
	if ev := next(); ev.event != EventLeader {
		t.Fatalf("first event %+v", ev)
	}
	for i := range 200 {
		if n := f.numWatches(); n != 1 {
			t.Fatalf("after %d changes: %d Watch subscriptions, want 1", i, n)
		}
		f.set(func(s *Status) { s.Term++ })
		want := strconv.FormatUint(f.Status().Index, 10)
		if ev := next(); ev.id != want {
			t.Fatalf("change %d: event %+v, want id %s", i, ev, want)
		}
	}
	resp.Body.Close()
	waitFor(t, 5*time.Second, "the subscription to end", func() bool { return f.numWatches() == 0 })
}
