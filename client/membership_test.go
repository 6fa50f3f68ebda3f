package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/api/apitest"
)

// newFakeBackend returns a fake peer named id, following server_a, whose
// answers the test sets.
func newFakeBackend(id string) *apitest.Backend {
	return apitest.New(
		api.Status{Identifier: id, Role: "follower", Term: 2, Index: 100, Leader: &api.Peer{Identifier: "server_a", Host: "localhost", Port: 7001}, Mode: api.ModeLeader, Joined: true},
		[]api.Member{{Peer: api.Peer{Identifier: id, Host: "localhost", Port: 7001}, IsSelf: true, Voter: true, Role: "follower", State: "alive"}},
		500)
}

// counts returns how many changes f was asked for.
func counts(f *apitest.Backend) (joins, metas, removed, leaves int) {
	c := f.Calls()
	return len(c.Joins), len(c.Metadata), len(c.Removed), c.Leaves
}

// fakeServer serves the API over f on a loopback port.
func fakeServer(t *testing.T, f *apitest.Backend, opts api.Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(api.NewHandlerWithOptions(f, opts))
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func TestJoinAndRemovePeer(t *testing.T) {
	f := newFakeBackend("server_b")
	srv := fakeServer(t, f, api.Options{Token: "tok"})
	ctx := ctxTimeout(t, 10*time.Second)
	dead := deadAddr(t)
	c := newClient(t, Options{Token: "tok"}, dead, hostOf(srv))

	// The first address is down: the join moves on (nothing was sent).
	learner := false
	res, err := c.Join(ctx, api.JoinRequest{Identifier: "server_d", Host: "10.0.0.4", Port: 7004, Metadata: map[string]any{"server_port": 8004}, Voter: &learner, ClusterName: "blue"})
	if err != nil || res.Member.Identifier != "server_d" || res.Member.Voter || res.Leader == nil || res.Leader.Identifier != "server_a" || len(res.Peers) != 2 {
		t.Fatalf("Join: %+v, %v", res, err)
	}
	if len(f.Calls().Joins) != 1 || f.Calls().Joins[0].ClusterName != "blue" || f.Calls().Joins[0].Voter == nil || *f.Calls().Joins[0].Voter || f.Calls().Joins[0].Metadata["server_port"] != 8004.0 {
		t.Errorf("the peer got %+v", f.Calls().Joins)
	}
	if c.Addr() != srv.URL {
		t.Errorf("Addr() = %s after the join, want %s", c.Addr(), srv.URL)
	}
	f.SetPeers(func(ms []api.Member) []api.Member { return append(ms, api.Member{Peer: api.Peer{Identifier: "a/b"}}) })
	if err := c.RemovePeer(ctx, "a/b"); err != nil {
		t.Fatalf("RemovePeer: %v", err)
	}
	if len(f.Calls().Removed) != 1 || f.Calls().Removed[0] != "a/b" {
		t.Errorf("removed %q", f.Calls().Removed)
	}
	if err := c.RemovePeer(ctx, ""); !errors.Is(err, ErrBadRequest) {
		t.Errorf("RemovePeer(\"\"): %v", err)
	}

	// The peer checks the request.
	_, err = c.Join(ctx, api.JoinRequest{Identifier: "server d", Host: "h", Port: 7004})
	var ae *APIError
	if !errors.Is(err, ErrBadRequest) || !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "whitespace") {
		t.Errorf("Join with a bad identifier: %v", err)
	}
	// Backend errors, typed.
	for _, tc := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("%w: server_c has that address", api.ErrConflict), ErrConflict},
		{api.ErrWrongCluster, ErrWrongCluster},
		{api.ErrMasterless, ErrMasterless},
		{api.ErrNoLeader, ErrNoLeader},
		{fmt.Errorf("%w: host", api.ErrInvalid), ErrBadRequest},
	} {
		f.SetErr(tc.err)
		if _, err := c.Join(ctx, api.JoinRequest{Identifier: "server_d", Host: "h", Port: 7004}); !errors.Is(err, tc.want) {
			t.Errorf("Join with the backend failing %v: %v, want %v", tc.err, err, tc.want)
		}
		if err := c.RemovePeer(ctx, "server_d"); !errors.Is(err, tc.want) {
			t.Errorf("RemovePeer with the backend failing %v: %v, want %v", tc.err, err, tc.want)
		}
	}
	f.SetErr(api.ErrUnknownPeer)
	if err := c.RemovePeer(ctx, "nobody"); !errors.Is(err, ErrUnknownPeer) || !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("RemovePeer(nobody): %v", err)
	}
	f.SetErr(nil)

	// Without the token.
	c2 := newClient(t, Options{}, hostOf(srv))
	if _, err := c2.Join(ctx, api.JoinRequest{Identifier: "server_d", Host: "h", Port: 7004}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Join without the token: %v", err)
	}
	if err := c2.RemovePeer(ctx, "server_d"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("RemovePeer without the token: %v", err)
	}
}

// TestJoinIsNotResent checks that a join whose connection breaks after the
// request was sent is not sent to the next address.
func TestJoinIsNotResent(t *testing.T) {
	var hits sync.WaitGroup
	hits.Add(1)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer hits.Done()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(broken.Close)
	f := newFakeBackend("server_b")
	srv := fakeServer(t, f, api.Options{})
	c := newClient(t, Options{}, hostOf(broken), hostOf(srv))
	_, err := c.Join(ctxTimeout(t, 10*time.Second), api.JoinRequest{Identifier: "server_d", Host: "h", Port: 7004})
	if err == nil || errors.Is(err, ErrUnreachable) {
		t.Fatalf("Join through a broken connection: %v, want the connection's error", err)
	}
	hits.Wait()
	if n, _, _, _ := counts(f); n != 0 {
		t.Errorf("the join was sent again, to the second address")
	}
}

func TestSetMetadataAndLeaveGoToTheFirstAddress(t *testing.T) {
	fa, fb := newFakeBackend("server_a"), newFakeBackend("server_b")
	sa, sb := fakeServer(t, fa, api.Options{Token: "tok"}), fakeServer(t, fb, api.Options{Token: "tok"})
	ctx := ctxTimeout(t, 10*time.Second)

	c := newClient(t, Options{Token: "tok"}, hostOf(sb), hostOf(sa))
	// Even when another call made server_a the remembered address.
	c.cur.Store(1)
	m, err := c.SetMetadata(ctx, map[string]any{"server_port": 8002, "zone": "b"})
	if err != nil || m.Identifier != "server_b" || !m.IsSelf || m.Metadata["zone"] != "b" {
		t.Fatalf("SetMetadata: %+v, %v", m, err)
	}
	if _, err := c.SetMetadata(ctx, nil); err != nil {
		t.Fatalf("SetMetadata(nil): %v", err)
	}
	if len(fb.Calls().Metadata) != 2 || fb.Calls().Metadata[1] == nil || len(fb.Calls().Metadata[1]) != 0 {
		t.Errorf("server_b got metadata %#v", fb.Calls().Metadata)
	}
	if _, err := c.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if _, _, _, n := counts(fb); n != 1 {
		t.Errorf("server_b left %d times", n)
	}
	if _, err := c.SetMetadata(ctx, map[string]any{"f": func() {}}); err == nil || !strings.Contains(err.Error(), "cannot be encoded") {
		t.Errorf("SetMetadata with a func: %v", err)
	}

	// The first address is down: no other peer is changed.
	c2 := newClient(t, Options{Token: "tok"}, deadAddr(t), hostOf(sa))
	if _, err := c2.SetMetadata(ctx, map[string]any{"a": 1}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("SetMetadata with the first address down: %v", err)
	}
	if _, err := c2.Leave(ctx); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Leave with the first address down: %v", err)
	}
	if _, m, _, l := counts(fa); m != 0 || l != 0 {
		t.Errorf("server_a was changed: %d metadata calls, %d leaves", m, l)
	}

	// Errors, typed.
	fb.SetErr(api.ErrNoLeader)
	if _, err := c.SetMetadata(ctx, map[string]any{"a": 1}); !errors.Is(err, ErrNoLeader) {
		t.Errorf("SetMetadata without a leader: %v", err)
	}
	if _, err := c.Leave(ctx); !errors.Is(err, ErrNoLeader) {
		t.Errorf("Leave without a leader: %v", err)
	}
	c3 := newClient(t, Options{}, hostOf(sb))
	if _, err := c3.Leave(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Leave without the token: %v", err)
	}
}

func TestProtectedReads(t *testing.T) {
	f := newFakeBackend("server_a")
	srv := fakeServer(t, f, api.Options{Token: "tok", ProtectReads: true})
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := newClient(t, Options{}, hostOf(srv)).Status(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Status without the token: %v", err)
	}
	if _, err := newClient(t, Options{}, hostOf(srv)).WatchEvents(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("WatchEvents without the token: %v", err)
	}
	c := newClient(t, Options{Token: "tok"}, hostOf(srv))
	if st, err := c.Status(ctx); err != nil || st.Identifier != "server_a" {
		t.Errorf("Status with the token: %+v, %v", st, err)
	}
	if peers, err := c.Peers(ctx); err != nil || len(peers) != 1 || peers[0].Role != "follower" || peers[0].State != "alive" {
		t.Errorf("Peers with the token: %+v, %v", peers, err)
	}
}

// nextEvent returns the next value of ch, failing after d.
func nextEvent(t *testing.T, ch <-chan Event, d time.Duration) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the event channel closed")
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	panic("unreachable")
}

func TestWatchEvents(t *testing.T) {
	fa, fb := newFakeBackend("server_a"), newFakeBackend("server_b")
	sa := fakeServer(t, fa, api.Options{KeepAlive: 20 * time.Millisecond})
	sb := fakeServer(t, fb, api.Options{KeepAlive: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(t, Options{}, deadAddr(t), hostOf(sa), hostOf(sb))

	ch, err := c.WatchEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, ch, 10*time.Second)
	if ev.Status == nil || ev.Member != nil || ev.Err != nil || ev.Status.Identifier != "server_a" || ev.Status.Index != 100 || ev.Addr != sa.URL {
		t.Fatalf("first event %+v", ev)
	}
	waitFor(t, 10*time.Second, "the member subscription", func() bool { return fa.Subscribers() == 1 })
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	fa.Emit(api.MemberEvent{Type: "joined", Time: at, Member: api.Member{Peer: api.Peer{Identifier: "server_d", Metadata: map[string]any{"big": strings.Repeat("x", 100<<10)}}, State: "alive"}})
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Member == nil || ev.Status != nil || ev.Member.Type != "joined" || !ev.Member.Time.Equal(at) || ev.Member.Member.Identifier != "server_d" || len(ev.Member.Member.Metadata["big"].(string)) != 100<<10 {
		t.Fatalf("member event %+v", ev)
	}
	fa.Set(func(s *api.Status) { s.Leader = nil })
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Status == nil || ev.Status.Leader != nil || ev.Status.Index != 101 {
		t.Fatalf("leader event %+v", ev)
	}

	// server_a goes away: an Err, then the stream from server_b, which
	// starts with its Status.
	sa.Listener.Close() // first, so that the watch cannot connect again
	sa.CloseClientConnections()
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), sa.URL) {
		t.Fatalf("after server_a stopped: %+v", ev)
	}
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Status == nil || ev.Status.Identifier != "server_b" || ev.Addr != sb.URL {
		t.Fatalf("after moving on: %+v", ev)
	}
	waitFor(t, 10*time.Second, "the member subscription on server_b", func() bool { return fb.Subscribers() == 1 })
	fb.Emit(api.MemberEvent{Type: "left", Member: api.Member{Peer: api.Peer{Identifier: "server_a"}, State: "left"}})
	if ev = nextEvent(t, ch, 10*time.Second); ev.Member == nil || ev.Member.Type != "left" {
		t.Fatalf("member event from server_b: %+v", ev)
	}

	// The context ends: the channel closes and the subscription ends.
	cancel()
	for range ch {
	}
	waitFor(t, 10*time.Second, "server_b's subscription to end", func() bool { return fb.Subscribers() == 0 })
}

// TestWatchEventsSilentPeer checks that a peer that sends nothing, not even
// keep-alives, is given up and the watch reports it once per outage.
func TestWatchEventsSilentPeer(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	conns := 0
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns++
		n := conns
		mu.Unlock()
		if n > 1 && r.Header.Get("Accept") == "text/event-stream" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error": "stopping", "code": "unavailable"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "retry: 1000\n\nid: 5\nevent: leader\ndata: {\"identifier\": \"x\", \"index\": 5}\n\nevent: future\ndata: {}\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer silent.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(t, Options{WatchWait: 50 * time.Millisecond, Timeout: 100 * time.Millisecond}, hostOf(silent))
	ch, err := c.WatchEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, ch, 10*time.Second); ev.Status == nil || ev.Status.Identifier != "x" {
		t.Fatalf("first event %+v (an unknown event type must be skipped)", ev)
	}
	ev := nextEvent(t, ch, 10*time.Second)
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "sent no event or keep-alive") {
		t.Fatalf("after the peer went silent: %+v", ev)
	}
	// Reconnecting fails (503 unavailable, then unreachable): one more Err
	// for the outage, not one per attempt.
	ev = nextEvent(t, ch, 10*time.Second)
	if ev.Err == nil || !errors.Is(ev.Err, ErrUnreachable) {
		t.Fatalf("reconnecting: %+v", ev)
	}
	mu.Lock()
	start := conns
	mu.Unlock()
	waitFor(t, 10*time.Second, "two more attempts", func() bool { mu.Lock(); defer mu.Unlock(); return conns >= start+2 })
	select {
	case ev := <-ch:
		t.Fatalf("another value during the same outage: %+v", ev)
	default:
	}
	cancel()
	for range ch {
	}
}

func TestWatchEventsBadStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "not an event stream")
	}))
	defer srv.Close()
	_, err := newClient(t, Options{}, hostOf(srv)).WatchEvents(ctxTimeout(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "not an event stream") {
		t.Errorf("WatchEvents from a non-QCluster server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFakeBackend("server_a")
	if _, err := newClient(t, Options{}, hostOf(fakeServer(t, f, api.Options{}))).WatchEvents(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WatchEvents with a cancelled context: %v", err)
	}
}
