package qcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// watchers counts the open Watch subscriptions of every running peer.
func (tc *testCluster) watchers() int {
	n := 0
	for _, p := range tc.peers {
		if p != nil {
			n += p.watch.Count()
		}
	}
	return n
}

// waitFlat waits until the open Watch subscriptions are back to watchers
// and the goroutines to at most goroutines+slack (their ends are
// asynchronous), and fails saying how many are left.
func waitFlat(t *testing.T, tc *testCluster, what string, watchers, goroutines int) {
	t.Helper()
	const slack = 40 // connections, gossip probes and timers come and go
	deadline := time.Now().Add(20 * time.Second)
	for {
		w, g := tc.watchers(), runtime.NumGoroutine()
		if w == watchers && g <= goroutines+slack {
			t.Logf("after %s: %d watchers (%d before), %d goroutines (%d before)", what, w, watchers, g, goroutines)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d Watch subscriptions (%d before), %d goroutines (%d before)", what, w, watchers, g, goroutines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// blockingQuery asks h for GET /v1/status?index=index&wait=5m on ctx,
// without a server around the handler (a server would end the request's
// context when it answers: here only the handler can end what it opened).
// It returns the Status answered, or the response when it is not a 200.
func blockingQuery(ctx context.Context, h http.Handler, index uint64) (api.Status, *httptest.ResponseRecorder) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, "GET", fmt.Sprintf("/v1/status?index=%d&wait=5m", index), nil)
	h.ServeHTTP(rec, req)
	var st api.Status
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &st) != nil {
		return api.Status{}, rec
	}
	return st, nil
}

// TestWatchSubscriptionsDoNotLeak: WaitForLeader, the API's blocking
// queries (one Backend.Watch each) and leadership transfers end the Watch
// subscriptions they open, and a /v1/watch stream holds one subscription
// whatever happens: 10,000 WaitForLeader(context.Background()) calls,
// 10,000 Waits and 500 resignations under open streams leave the
// subscriptions and goroutines where they were.
func TestWatchSubscriptionsDoNotLeak(t *testing.T) {
	tc := newAPITestCluster(t, 3, "")
	tc.waitLeader(10 * time.Second)
	h := newHTTPC(t)
	var streams []*sseReader
	for _, p := range tc.peers {
		s := openWatch(t, h, p, "")
		s.nextWithin(t, 10*time.Second) // the current state: the stream has subscribed
		streams = append(streams, s)
	}
	defer func() {
		for _, s := range streams {
			s.close()
		}
	}()
	watchers, goroutines := tc.watchers(), runtime.NumGoroutine()
	if watchers != len(tc.peers) {
		t.Fatalf("%d Watch subscriptions with one stream per peer, want %d", watchers, len(tc.peers))
	}

	t0 := time.Now()
	for i := range 10_000 {
		p := tc.peers[i%len(tc.peers)]
		if _, err := p.WaitForLeader(context.Background()); err != nil {
			t.Fatalf("WaitForLeader on %s: %v", p.cfg.Identifier, err)
		}
	}
	t.Logf("10,000 WaitForLeader calls took %v", time.Since(t0))
	waitFlat(t, tc, "10,000 WaitForLeader calls", watchers, goroutines)

	t0 = time.Now()
	for i := range 10_000 {
		p := tc.peers[i%len(tc.peers)]
		h := api.NewHandler(newAPIBackend(p))
		if _, rec := blockingQuery(context.Background(), h, 0); rec != nil { // index 0: answers at once
			t.Fatalf("blocking query on %s: %d %s", p.cfg.Identifier, rec.Code, rec.Body)
		}
	}
	t.Logf("10,000 blocking queries took %v", time.Since(t0))
	waitFlat(t, tc, "10,000 blocking queries", watchers, goroutines)

	// The resignations get a context that outlives them (as
	// context.Background() would): only Resign itself can end the
	// subscriptions it opens. The watchdog ends a run that hangs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchdog := time.AfterFunc(5*time.Minute, cancel)
	defer watchdog.Stop()
	t0 = time.Now()
	const resigns = 500
	for done := 0; done < resigns; {
		l := tc.waitLeader(10 * time.Second)
		err := l.Resign(ctx)
		for _, s := range streams {
			s.drain()
		}
		switch {
		case err == nil:
			done++
		case errors.Is(err, ErrNotLeader), errors.Is(err, ErrTransferFailed):
			// The lease lapsed, or nobody took over in time (a loaded
			// machine): ask the leader again.
		default:
			t.Fatalf("resignation %d of %s: %v", done+1, l.cfg.Identifier, err)
		}
	}
	t.Logf("%d resignations took %v", resigns, time.Since(t0))
	// The streams are still up, and end on the current leader.
	leader := tc.waitLeader(10 * time.Second)
	for i, s := range streams {
		for seen := s.last; seen.st.Leader == nil || seen.st.Leader.Identifier != leader.cfg.Identifier; {
			if ev := s.nextWithin(t, 10*time.Second); ev.event == api.EventLeader {
				seen = ev
			}
		}
		if s.leaderEvents < resigns/2 {
			t.Errorf("stream of %s: %d leader events during %d resignations", tc.peers[i].cfg.Identifier, s.leaderEvents, resigns)
		}
	}
	waitFlat(t, tc, fmt.Sprintf("%d resignations under 3 open /v1/watch streams", resigns), watchers, goroutines)
}

// drain takes the events received so far, keeping the last leader event.
func (r *sseReader) drain() {
	for {
		select {
		case ev := <-r.events:
			if ev.event == api.EventLeader {
				r.last = ev
				r.leaderEvents++
			}
		default:
			return
		}
	}
}

// TestWaitForLeaderEndsItsWatch: WaitForLeader and the API's blocking
// queries, given a context that never ends, end the Watch subscription
// they open before they return (a narrow, quick form of TestWatchSubscriptionsDoNotLeak).
func TestWaitForLeaderEndsItsWatch(t *testing.T) {
	tc := newTestCluster(t, 1)
	c := tc.waitLeader(10 * time.Second)
	h := api.NewHandler(newAPIBackend(c))
	before := c.watch.Count()
	for range 1000 {
		if _, err := c.WaitForLeader(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, rec := blockingQuery(context.Background(), h, 0); rec != nil {
			t.Fatalf("blocking query: %d %s", rec.Code, rec.Body)
		}
	}
	// The subscriptions end on their context's AfterFunc: moments later.
	waitFor(t, 10*time.Second, "the Watch subscriptions to end", func() bool { return c.watch.Count() == before })
}

// TestAPIBackendEndsWithThePeer: when the peer closes, a blocking query in
// flight ends with 503 unavailable and a /v1/watch stream
// (Backend.Watch) ends, rather than reporting the "no leader" State that
// Close publishes: the peer stopping is not the cluster losing its leader.
// (Other changes before Close, such as a lease lapsing on a loaded
// machine, are reported as usual.)
func TestAPIBackendEndsWithThePeer(t *testing.T) {
	tc := newTestCluster(t, 1)
	c := tc.waitLeader(10 * time.Second)
	b := newAPIBackend(c)
	h := api.NewHandler(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := b.Watch(ctx)
	first := <-stream
	waited := make(chan []api.Status, 1)
	waitErr := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		var got []api.Status
		idx := first.Index
		for {
			st, rec := blockingQuery(ctx, h, idx)
			if rec != nil {
				waited <- got
				waitErr <- rec
				return
			}
			got = append(got, st)
			idx = st.Index
		}
	}()
	waitFor(t, 10*time.Second, "the Wait to subscribe", func() bool { return c.watch.Count() >= 2 })
	tc.stop(0)
	closing := b.base + c.watch.Index() // what Close published last
	var got []api.Status
	select {
	case got = <-waited:
		if rec := <-waitErr; rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"code": "`+api.CodeUnavailable+`"`) {
			t.Errorf("blocking query as the peer closed: %d %s; want 503 unavailable", rec.Code, rec.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query outlived the peer")
	}
	for st := range stream {
		got = append(got, st)
	}
	for _, st := range got {
		if st.Index == closing {
			t.Errorf("the State Close published was reported: %+v", st)
		}
	}
}
