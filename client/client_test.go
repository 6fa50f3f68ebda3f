package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/testpeers"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// testPeers runs a cluster of in-process peers on loopback ports.
// testPeers is a test cluster (internal/testpeers) with this package's
// short names.
type testPeers struct {
	*testpeers.Peers
	t     *testing.T
	cfgs  []qcluster.Config
	peers []*qcluster.Cluster // nil while stopped (shared with Peers.Peers)
}

func startPeers(t *testing.T, n int, token string) *testPeers {
	t.Helper()
	p := testpeers.Start(t, n, testpeers.WithToken(token))
	return &testPeers{Peers: p, t: t, cfgs: p.Configs, peers: p.Peers}
}

func (tp *testPeers) start(i int, ln net.Listener) { tp.t.Helper(); tp.StartPeer(i, ln) }
func (tp *testPeers) stop(i int)                   { tp.t.Helper(); tp.Stop(i) }
func (tp *testPeers) addr(i int) string            { return tp.Addr(i) }

// waitLeader waits until one running peer holds the lease and every
// running peer names it; it returns its index.
func (tp *testPeers) waitLeader() int {
	tp.t.Helper()
	leader := -1
	waitFor(tp.t, 10*time.Second, "an agreed leader", func() bool {
		leader = -1
		for i, p := range tp.peers {
			if p != nil && p.IsLeader() {
				leader = i
			}
		}
		if leader < 0 {
			return false
		}
		for _, p := range tp.peers {
			if p == nil {
				continue
			}
			if l, ok := p.Leader(); !ok || l.Identifier != tp.cfgs[leader].Identifier {
				return false
			}
		}
		return true
	})
	return leader
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, opts Options, addrs ...string) *Client {
	t.Helper()
	c, err := NewWithOptions(opts, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7001":          "http://127.0.0.1:7001",
		" localhost:7002 ":        "http://localhost:7002",
		"http://127.0.0.1:7001/":  "http://127.0.0.1:7001",
		"https://db1.example.com": "https://db1.example.com:7001",
		"db1":                     "http://db1:7001",
		"[::1]:7003":              "http://[::1]:7003",
		"::1":                     "http://[::1]:7001",
		"http://proxy/qcluster/":  "http://proxy:7001/qcluster",
	} {
		u, err := ParseAddr(in)
		if err != nil || u.String() != want {
			t.Errorf("ParseAddr(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, in := range []string{"", "ftp://x:1", "http://", "x:0", "x:70000", "x:port", "http://u:p@x:1", "x:1/?q=1", "http://x:1/#f"} {
		if u, err := ParseAddr(in); err == nil {
			t.Errorf("ParseAddr(%q) = %v, want an error", in, u)
		}
	}
	if _, err := New(); err == nil {
		t.Error("New() without addresses succeeded")
	}
	c, err := New("127.0.0.1:7001", "http://127.0.0.1:7001", "127.0.0.1:7002")
	if err != nil || len(c.Addrs()) != 2 || c.Addr() != "http://127.0.0.1:7001" {
		t.Errorf("duplicate addresses: %v %v", c.Addrs(), err)
	}
}

func TestReads(t *testing.T) {
	tp := startPeers(t, 3, "")
	li := tp.waitLeader()
	ctx := ctxTimeout(t, 10*time.Second)
	for i := range tp.peers {
		c := newClient(t, Options{}, tp.addr(i))
		st, err := c.Status(ctx)
		if err != nil || st.Identifier != tp.cfgs[i].Identifier || st.Leader == nil || st.Leader.Identifier != tp.cfgs[li].Identifier || st.IsLeader != (i == li) {
			t.Errorf("Status from p%d: %+v, %v", i, st, err)
		}
		l, err := c.Leader(ctx)
		if err != nil || l.Identifier != tp.cfgs[li].Identifier || l.Port != tp.cfgs[li].ListenPort || l.Metadata["server_port"] != float64(8000+li) {
			t.Errorf("Leader from p%d: %+v, %v", i, l, err)
		}
		peers, err := c.Peers(ctx)
		if err != nil || len(peers) != 3 {
			t.Fatalf("Peers from p%d: %+v, %v", i, peers, err)
		}
		for j, m := range peers {
			if m.Identifier != tp.cfgs[j].Identifier || m.IsSelf != (i == j) || m.IsLeader != (j == li) || m.Port != tp.cfgs[j].ListenPort {
				t.Errorf("Peers from p%d: [%d] = %+v", i, j, m)
			}
		}
		m, err := c.Peer(ctx, "p1")
		if err != nil || m.Identifier != "p1" || m.IsSelf != (i == 1) {
			t.Errorf("Peer(p1) from p%d: %+v, %v", i, m, err)
		}
		_, err = c.Peer(ctx, "nobody/else")
		var ae *APIError
		if !errors.Is(err, ErrUnknownPeer) || !errors.As(err, &ae) || ae.Status != 404 || ae.Addr != "http://"+tp.addr(i) {
			t.Errorf("Peer(nobody/else) from p%d: %v", i, err)
		}
	}
}

func TestRetryAcrossAddresses(t *testing.T) {
	tp := startPeers(t, 3, "")
	li := tp.waitLeader()
	f1, f2 := (li+1)%3, (li+2)%3
	dead := deadAddr(t)
	c := newClient(t, Options{}, dead, tp.addr(f1), tp.addr(f2))
	ctx := ctxTimeout(t, 10*time.Second)

	// The first address is down: the call moves on and remembers.
	l, err := c.Leader(ctx)
	if err != nil || l.Identifier != tp.cfgs[li].Identifier {
		t.Fatalf("Leader with the first address down: %+v, %v", l, err)
	}
	if c.Addr() != "http://"+tp.addr(f1) {
		t.Fatalf("Addr() = %s, want the peer that answered, %s", c.Addr(), tp.addr(f1))
	}
	// The remembered peer stops: the next call goes on to the third.
	tp.stop(f1)
	st, err := c.Status(ctx)
	if err != nil || st.Identifier != tp.cfgs[f2].Identifier {
		t.Fatalf("Status after %s stopped: %+v, %v", tp.cfgs[f1].Identifier, st, err)
	}
	if c.Addr() != "http://"+tp.addr(f2) {
		t.Fatalf("Addr() = %s, want %s", c.Addr(), tp.addr(f2))
	}
	// Nobody answers: ErrUnreachable, naming each address.
	c2 := newClient(t, Options{}, dead, tp.addr(f1))
	_, err = c2.Status(ctx)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Status with every address down: %v", err)
	}
	t.Logf("all down: %v", err)

	// A transfer sent to a dead address first moves on too (nothing was sent).
	c3 := newClient(t, Options{}, dead, tp.addr(f2))
	res, err := c3.Resign(ctx)
	if err != nil || res.From != tp.cfgs[li].Identifier {
		t.Fatalf("Resign via a dead address and a follower: %+v, %v", res, err)
	}
}

func TestContextDeadline(t *testing.T) {
	tp := startPeers(t, 1, "")
	tp.waitLeader()
	c := newClient(t, Options{}, tp.addr(0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Status(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Status with a cancelled context: %v", err)
	}
	// A watch whose context ends closes its channel.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ch, err := c.WatchLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := <-ch
	if !first.HasLeader() || first.Leader.Identifier != "p0" || first.Index == 0 || first.Addr != "http://"+tp.addr(0) {
		t.Fatalf("first watch value %+v", first)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a value without a change")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch channel stayed open after its context ended")
	}
}

func TestNoLeader(t *testing.T) {
	tp := startPeers(t, 3, "")
	tp.waitLeader()
	tp.stop(1)
	tp.stop(2)
	c := newClient(t, Options{}, tp.addr(0))
	ctx := ctxTimeout(t, 10*time.Second)
	// A stopped leader hands over first, so p0 may lead for a moment (a
	// majority elected it before the second peer went) until its lease,
	// without a majority, runs out: wait for the state to settle.
	waitFor(t, 10*time.Second, "p0 to know no leader", func() bool {
		_, err := c.Leader(ctx)
		_, ok := tp.peers[0].Leader()
		return !ok && errors.Is(err, ErrNoLeader)
	})
	_, err := c.Leader(ctx)
	var ae *APIError
	if !errors.Is(err, ErrNoLeader) || !errors.As(err, &ae) || ae.Status != 503 || ae.Code != api.CodeNoLeader {
		t.Fatalf("Leader without a majority: %v", err)
	}
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnreachable) {
		t.Errorf("%v matches the wrong sentinels", err)
	}
	if _, err := c.Resign(ctx); !errors.Is(err, ErrNoLeader) {
		t.Errorf("Resign without a leader: %v", err)
	}
	ch, err := c.WatchLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.HasLeader() || st.Err != nil || st.Index == 0 {
		t.Errorf("watch without a leader: %+v", st)
	}
}

func TestAuthAndTransfer(t *testing.T) {
	const token = "client-test-token"
	tp := startPeers(t, 3, token)
	li := tp.waitLeader()
	ctx := ctxTimeout(t, 20*time.Second)
	follower := (li + 1) % 3

	for _, tok := range []string{"", "wrong"} {
		c := newClient(t, Options{Token: tok}, tp.addr(li))
		_, err := c.Resign(ctx)
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Resign with token %q: %v", tok, err)
		}
	}
	if tp.waitLeader() != li {
		t.Fatal("an unauthorized request moved leadership")
	}

	// Through a follower: the client follows its answer to the leader.
	c := newClient(t, Options{Token: token}, tp.addr(follower))
	var took []time.Duration
	for round := range 4 {
		target := tp.cfgs[(li+1+round%2)%3].Identifier
		start := time.Now()
		res, err := c.Transfer(ctx, target)
		if err != nil {
			t.Fatalf("round %d: Transfer to %s: %v", round, target, err)
		}
		took = append(took, time.Since(start))
		if res.From != tp.cfgs[li].Identifier || res.Leader == nil || res.Leader.Identifier != target {
			t.Fatalf("round %d: Transfer result %+v, want %s -> %s", round, res, tp.cfgs[li].Identifier, target)
		}
		li = tp.waitLeader()
		if tp.cfgs[li].Identifier != target {
			t.Fatalf("round %d: the cluster agrees on %s, want %s", round, tp.cfgs[li].Identifier, target)
		}
	}
	res, err := c.Resign(ctx)
	if err != nil || res.From != tp.cfgs[li].Identifier || res.Leader == nil || res.Leader.Identifier == res.From {
		t.Fatalf("Resign: %+v, %v", res, err)
	}
	t.Logf("client transfer durations (via a follower when it was one): %v", took)

	// Errors from the leader itself.
	li = tp.waitLeader()
	lc := newClient(t, Options{Token: token}, tp.addr(li))
	if _, err := lc.Transfer(ctx, "nobody"); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("Transfer to an unknown peer: %v", err)
	}
	if _, err := lc.Transfer(ctx, tp.cfgs[li].Identifier); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("Transfer to the leader itself: %v", err)
	}
}

// TestErrorMapping checks the typed errors for answers a real cluster
// gives only in races (not_leader from the leader named by a follower).
func TestErrorMapping(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path)
		mu.Unlock()
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		// Always "not the leader; ask 127.0.0.1 (me)".
		w.Header().Set(api.IndexHeader, "3")
		api.WriteJSON(w, http.StatusConflict, api.Error{Error: "not the leader", Code: api.CodeNotLeader,
			Leader: &api.Peer{Identifier: "x", Host: "127.0.0.1", Port: p}})
	}))
	defer srv.Close()
	c := newClient(t, Options{}, srv.URL)
	_, err := c.Transfer(context.Background(), "y")
	var ae *APIError
	if !errors.Is(err, ErrNotLeader) || !errors.As(err, &ae) || ae.Leader == nil || ae.Leader.Identifier != "x" {
		t.Fatalf("Transfer answered not_leader twice: %v", err)
	}
	mu.Lock()
	if len(hits) != 2 {
		t.Errorf("requests %v, want the original and one forward", hits)
	}
	mu.Unlock()

	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer plain.Close()
	_, err = newClient(t, Options{}, plain.URL).Status(context.Background())
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "" || ae.Message != "bad gateway" {
		t.Errorf("a non-QCluster error answer: %v", err)
	}
	if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnauthorized) {
		t.Errorf("%v matches a sentinel", err)
	}
}

// watchTimes records the States a peer's own Watch saw, and when.
type watchTimes struct {
	mu     sync.Mutex
	states []qcluster.State
	times  []time.Time
}

func recordWatch(t *testing.T, c *qcluster.Cluster) *watchTimes {
	w := &watchTimes{}
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Watch(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st := range ch {
			now := time.Now()
			w.mu.Lock()
			w.states = append(w.states, st)
			w.times = append(w.times, now)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// firstNaming returns when the peer's watcher first saw leader id after
// time after.
func (w *watchTimes) firstNaming(t *testing.T, id string, after time.Time) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, 2*time.Second, "the peer's watcher to see leader "+id, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for i, st := range w.states {
			if w.times[i].After(after) && st.HasLeader && st.Leader.Identifier == id {
				at = w.times[i]
				return true
			}
		}
		return false
	})
	return at
}

// transferTo moves leadership to peer i through the SDK.
func (tp *testPeers) transferTo(i int) {
	tp.t.Helper()
	li := tp.waitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.peers[li].Transfer(ctx, tp.cfgs[i].Identifier); err != nil {
		tp.t.Fatalf("transfer to p%d: %v", i, err)
	}
}

// stamped is a watch value and when it arrived.
type stamped struct {
	st LeaderState
	at time.Time
}

// stamp reads ch in its own goroutine, stamping each value with its arrival
// time (the test's goroutine may be busy when it arrives); the returned
// channel closes when ch does.
func stamp(ch <-chan LeaderState) <-chan stamped {
	out := make(chan stamped, 1000)
	go func() {
		defer close(out)
		for st := range ch {
			out <- stamped{st, time.Now()}
		}
	}()
	return out
}

// next reads the next watch value within d.
func next(t *testing.T, ch <-chan stamped, d time.Duration) (LeaderState, time.Time) {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("the watch channel closed")
		}
		return v.st, v.at
	case <-time.After(d):
		t.Fatalf("no watch value within %v", d)
	}
	panic("unreachable")
}

func TestWatchLeaderSeesChanges(t *testing.T) {
	tp := startPeers(t, 3, "")
	li := tp.waitLeader()
	obs := (li + 1) % 3
	w := recordWatch(t, tp.peers[obs])
	c := newClient(t, Options{}, tp.addr(obs))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch, err := c.WatchLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := stamp(wch)
	st, _ := next(t, ch, 5*time.Second)
	if !st.HasLeader() || st.Leader.Identifier != tp.cfgs[li].Identifier {
		t.Fatalf("first value %+v", st)
	}
	var lat []time.Duration
	other := 3 - li - obs
	prev := st
	for range 5 {
		start := time.Now()
		tp.transferTo(other)
		li, other = other, li
		for {
			var at time.Time
			st, at = next(t, ch, 5*time.Second)
			if st.Err != nil {
				t.Fatalf("watch error: %v", st.Err)
			}
			// WatchLeader promises a value only when the leader changes.
			if sameLeader(prev, st) {
				t.Fatalf("a value that repeats the previous leader: %+v after %+v", st, prev)
			}
			prev = st
			if st.HasLeader() && st.Leader.Identifier == tp.cfgs[li].Identifier {
				lat = append(lat, at.Sub(w.firstNaming(t, st.Leader.Identifier, start)))
				break
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("WatchLeader: latency from the peer's own Watch to the client's value (sorted): %v", lat)
	cancel()
	for range ch {
	}
}

func TestWatchLeaderMovesToAnotherPeer(t *testing.T) {
	tp := startPeers(t, 3, "")
	li := tp.waitLeader()
	a, b := (li+1)%3, (li+2)%3
	c := newClient(t, Options{}, tp.addr(a), tp.addr(b))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch, err := c.WatchLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := stamp(wch)
	st, _ := next(t, ch, 5*time.Second)
	if st.Addr != "http://"+tp.addr(a) || st.Leader.Identifier != tp.cfgs[li].Identifier {
		t.Fatalf("first value %+v", st)
	}
	// The watched peer stops: the watch moves to the other address and,
	// with the same leader, reports nothing — unless b itself lost the
	// leader for a moment (a starved machine can delay heartbeats past an
	// election timeout), which b's own Watch then shows too.
	var mu sync.Mutex
	bLost := false
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	bw := tp.peers[b].Watch(bctx)
	go func() {
		for st := range bw {
			if !st.HasLeader {
				mu.Lock()
				bLost = true
				mu.Unlock()
			}
		}
	}()
	tp.stop(a)
	waitFor(t, 5*time.Second, "the client to move to "+tp.addr(b), func() bool { return c.Addr() == "http://"+tp.addr(b) })
	select {
	case st := <-ch:
		// b's own Watch delivered the same change at publication; give
		// its reader a moment to record it.
		lost := false
		for deadline := time.Now().Add(time.Second); !lost && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			mu.Lock()
			lost = bLost
			mu.Unlock()
		}
		if st.st.HasLeader() || !lost {
			t.Fatalf("a value without a leadership change: %+v (b lost its leader: %v)", st, lost)
		}
		t.Logf("b itself lost the leader for a moment and the client reported it: %+v", st)
	default:
	}
	// The leader moves to b: reported from b.
	tp.transferTo(b)
	for {
		st, _ = next(t, ch, 5*time.Second)
		if st.HasLeader() && st.Leader.Identifier == tp.cfgs[b].Identifier {
			break
		}
	}
	if st.Addr != "http://"+tp.addr(b) {
		t.Errorf("reported by %s, want %s", st.Addr, tp.addr(b))
	}
}

func TestWatchLeaderReportsErrorsAndResumes(t *testing.T) {
	tp := startPeers(t, 1, "")
	tp.waitLeader()
	c := newClient(t, Options{}, tp.addr(0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch, err := c.WatchLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := stamp(wch)
	if st, _ := next(t, ch, 5*time.Second); !st.HasLeader() {
		t.Fatalf("first value %+v", st)
	}
	tp.stop(0)
	// Closing reports "no leader" (the peer publishes it as it stops) or
	// goes straight to an error; an error comes in any case.
	for {
		st, _ := next(t, ch, 10*time.Second)
		if st.Err != nil {
			if !errors.Is(st.Err, ErrUnreachable) {
				t.Errorf("watch error %v, want ErrUnreachable", st.Err)
			}
			break
		}
		if st.HasLeader() {
			t.Fatalf("a leader reported while the only peer stops: %+v", st)
		}
	}
	tp.start(0, nil)
	for {
		st, _ := next(t, ch, 10*time.Second)
		if st.HasLeader() && st.Leader.Identifier == "p0" {
			break
		}
		if st.Err != nil {
			t.Fatalf("a second error value in a row: %v", st.Err)
		}
	}
	// And WatchLeader itself fails when nobody answers.
	if _, err := newClient(t, Options{}, deadAddr(t)).WatchLeader(ctx); !errors.Is(err, ErrUnreachable) {
		t.Errorf("WatchLeader with nobody to ask: %v", err)
	}
}
