package qcluster

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/client"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/transport"
)

// healthApps are one HTTP health endpoint per peer, each answering 200 or
// 503 as the test says.
type healthApps struct {
	ok   []atomic.Bool
	srvs []*httptest.Server
}

func newHealthApps(t *testing.T, n int) *healthApps {
	a := &healthApps{ok: make([]atomic.Bool, n)}
	for i := range n {
		a.ok[i].Store(true)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if !a.ok[i].Load() {
				http.Error(w, "database down", http.StatusServiceUnavailable)
			}
		}))
		a.srvs = append(a.srvs, srv)
		t.Cleanup(srv.Close) // after the cluster's (cleanups run last first)
	}
	return a
}

// neverLeads fails the test if p holds the lease at any moment until stop
// is closed.
func neverLeads(t *testing.T, p *Cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p.IsLeader() {
				t.Errorf("%s, whose health check fails, holds the lease", p.cfg.Identifier)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
}

// TestHealthHTTPLeaderHandsOver: when the leader's application fails its
// HTTP check, another peer leads within interval × failures plus one
// hand-over; the unhealthy peer is never leader while it fails, every peer
// sees its check fail; once it passes again, it may lead again.
func TestHealthHTTPLeaderHandsOver(t *testing.T) {
	const interval, failures = 100 * time.Millisecond, 2
	apps := newHealthApps(t, 3)
	i := 0
	tc := newTestCluster(t, 3, func(c *Config) {
		c.HealthCheck = &HealthCheckConfig{HTTP: apps.srvs[i].URL + "/healthz", Interval: Duration(interval), Timeout: Duration(interval), Failures: failures}
		i++
	})
	leader := tc.waitLeader(10 * time.Second)
	li := tc.index(leader)
	if st, _ := leader.Health(); st != CheckPassing {
		t.Fatalf("leader's check is %q", st)
	}

	start := time.Now()
	apps.ok[li].Store(false)
	next := tc.waitLeader(10*time.Second, li)
	took := time.Since(start)
	t.Logf("leader's check failed: %s leads %v later (interval %v × failures %d = %v, then the hand-over)", next.cfg.Identifier, took, interval, failures, interval*failures)
	// A generous bound for a loaded machine: the checks, and one hand-over
	// (not an election timeout lost waiting for a lease).
	if bound := interval*(failures+1) + 2*time.Second; took > bound {
		t.Errorf("hand-over took %v, over %v", took, bound)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	neverLeads(t, leader, stop, &wg)
	for _, p := range tc.peers {
		waitFor(t, 10*time.Second, p.cfg.Identifier+" to see the old leader's check fail", func() bool {
			for _, m := range p.Peers() {
				if m.Identifier == leader.cfg.Identifier {
					return m.Check == CheckFailing
				}
			}
			return false
		})
	}
	// The new leader's check fails too: the last healthy peer takes over,
	// never the one still failing.
	ni := tc.index(next)
	apps.ok[ni].Store(false)
	third := tc.waitLeader(10*time.Second, li, ni)
	neverLeads(t, next, stop, &wg)
	if third == leader {
		t.Fatal("the failing peer was elected")
	}
	// Recovery: the first leader passes again, the third fails: the first
	// is eligible again and takes over.
	close(stop)
	wg.Wait()
	apps.ok[li].Store(true)
	waitFor(t, 10*time.Second, "the old leader's check to pass", func() bool { st, _ := leader.Health(); return st == CheckPassing })
	apps.ok[tc.index(third)].Store(false)
	if again := tc.waitLeader(10*time.Second, ni, tc.index(third)); again != leader {
		t.Fatalf("%s leads, want %s (healthy again)", again.cfg.Identifier, leader.cfg.Identifier)
	}
}

// TestHealthTTL: with a TTL check, no peer leads before its application
// reports (and /v1/status says why); a leader whose application stops
// reporting loses leadership within the TTL plus a hand-over and never
// leads while it fails; SetHealth refuses bad reports.
func TestHealthTTL(t *testing.T) {
	const ttl = 300 * time.Millisecond
	tc := newTestCluster(t, 3, func(c *Config) { c.HealthCheck = &HealthCheckConfig{TTL: Duration(ttl)} })
	for _, p := range tc.peers {
		waitFor(t, 10*time.Second, "no leader, with a reason", func() bool {
			st := newAPIBackend(p).Status()
			return st.Check == CheckFailing && st.Leader == nil && st.NoLeader != ""
		})
	}
	for _, p := range tc.peers {
		if p.IsLeader() {
			t.Fatalf("%s leads before its application reported", p.cfg.Identifier)
		}
	}
	// Every application reports; the leader's stops when told.
	var quiet [3]atomic.Bool
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(ttl / 6)
		defer tick.Stop()
		for {
			for i, p := range tc.peers {
				if !quiet[i].Load() {
					_ = p.SetHealth(CheckPassing, "ok")
				}
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(done); wg.Wait() }()
	leader := tc.waitLeader(10 * time.Second)
	li := tc.index(leader)
	start := time.Now()
	quiet[li].Store(true)
	next := tc.waitLeader(10*time.Second, li)
	took := time.Since(start)
	t.Logf("leader stopped reporting: %s leads %v later (TTL %v)", next.cfg.Identifier, took, ttl)
	if bound := ttl + 2*time.Second; took > bound {
		t.Errorf("hand-over took %v, over %v", took, bound)
	}
	if st, out := leader.Health(); st != CheckFailing || out == "" {
		t.Errorf("old leader's check: %q %q", st, out)
	}
	stop := make(chan struct{})
	var ww sync.WaitGroup
	neverLeads(t, leader, stop, &ww)
	// The other two take turns failing: the quiet one is never elected.
	ni := tc.index(next)
	if err := next.SetHealth(CheckFailing, "maintenance"); err != nil {
		t.Fatal(err)
	}
	quiet[ni].Store(true)
	third := tc.waitLeader(10*time.Second, li, ni)
	if third == leader || third == next {
		t.Fatalf("%s leads", third.cfg.Identifier)
	}
	close(stop)
	ww.Wait()

	for _, bad := range []string{"", "ok", "PASSING"} {
		if err := leader.SetHealth(bad, ""); !errors.Is(err, ErrInvalidHealth) {
			t.Errorf("SetHealth(%q) = %v, want ErrInvalidHealth", bad, err)
		}
	}
	if err := leader.SetHealth(CheckPassing, string(make([]byte, MaxHealthOutput+1))); !errors.Is(err, ErrInvalidHealth) {
		t.Errorf("SetHealth with a long output = %v, want ErrInvalidHealth", err)
	}
}

// TestSetHealthWithoutTTL: SetHealth needs a TTL check.
func TestSetHealthWithoutTTL(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Identifier, cfg.ListenPort = "a", 7001
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetHealth(CheckPassing, ""); !errors.Is(err, ErrNoTTLCheck) {
		t.Fatalf("SetHealth = %v, want ErrNoTTLCheck", err)
	}
	if st, _ := c.Health(); st != CheckNone {
		t.Fatalf("Health = %q, want none", st)
	}
}

// timeoutNowsReceived counts the MsgTimeoutNow (leadership transfers) p
// has received.
func timeoutNowsReceived(p *Cluster) (n uint64) {
	p.transport().ForEachType(func(typ raftpb.MessageType, s transport.Stats) {
		if typ == raftpb.MsgTimeoutNow {
			n = s.Received
		}
	})
	return n
}

// TestHealthResignSkipsFailing: a leader never hands over to a member
// whose check fails, even the one it would otherwise prefer, and an
// explicit transfer to it fails at once.
func TestHealthResignSkipsFailing(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config) { c.HealthCheck = &HealthCheckConfig{TTL: Duration(time.Minute)} })
	for _, p := range tc.peers {
		if err := p.SetHealth(CheckPassing, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	leader := tc.waitLeader(10 * time.Second)
	// Every peer starts failing until its first report: wait until gossip
	// has told the leader that they pass.
	waitFor(t, 10*time.Second, "the leader to see every check pass", func() bool {
		return len(leader.healthLead.Failing()) == 0
	})
	var preferred uint64
	if err := tc.peers[tc.index(leader)].node().Do(ctxTimeout(t, 5*time.Second), func(core *consensus.Core) error {
		preferred = core.BestTransferee(nil)
		return nil
	}); err != nil || preferred == 0 {
		t.Fatalf("no transferee: %v", err)
	}
	var failing *Cluster
	for _, p := range tc.peers {
		if p.selfID == preferred {
			failing = p
		}
	}
	if err := failing.SetHealth(CheckFailing, "maintenance"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the leader to see the check fail", func() bool {
		return leader.healthLead.Failing()[preferred]
	})
	if err := leader.Transfer(ctxTimeout(t, 5*time.Second), failing.cfg.Identifier); !errors.Is(err, ErrTransferFailed) {
		t.Fatalf("Transfer to a failing member = %v, want ErrTransferFailed", err)
	}
	before := timeoutNowsReceived(failing)
	if err := leader.Resign(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	next := tc.waitLeader(10*time.Second, tc.index(leader))
	if next == failing {
		t.Fatal("the failing member leads")
	}
	if n := timeoutNowsReceived(failing) - before; n != 0 {
		t.Fatalf("the failing member was asked %d times to take over", n)
	}
}

// TestHealthAPI: PUT /v1/self/health records a TTL report (the answer is
// the peer's status with it), refuses a bad one with 400 and changes
// nothing, and GET /v1/peers shows every member's check.
func TestHealthAPI(t *testing.T) {
	tc := newTestCluster(t, 1, func(c *Config) { c.HealthCheck = &HealthCheckConfig{TTL: Duration(time.Minute)} })
	p := tc.peers[0]
	put := func(body string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPut, "http://"+p.Addr()+"/v1/self/health", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := put(`{"status": "passing", "output": "db ok"}`); code != http.StatusOK || out["check"] != CheckPassing || out["check_output"] != "db ok" {
		t.Fatalf("PUT passing: %d %v", code, out)
	}
	for _, bad := range []string{`{"status": "ok"}`, `{}`, `{"status": "failing", "extra": 1}`} {
		if code, out := put(bad); code != http.StatusBadRequest {
			t.Errorf("PUT %s: %d %v, want 400", bad, code, out)
		}
	}
	if st, out := p.Health(); st != CheckPassing || out != "db ok" {
		t.Fatalf("after refused reports: %q %q", st, out)
	}
	tc.waitLeader(10 * time.Second)
	if code, out := put(`{"status": "failing", "output": "maintenance"}`); code != http.StatusOK || out["check"] != CheckFailing {
		t.Fatalf("PUT failing: %d %v", code, out)
	}
	waitFor(t, 10*time.Second, "no leader, with the reason", func() bool {
		st := newAPIBackend(p).Status()
		return !st.IsLeader && st.NoLeader != ""
	})
	if ms := newAPIBackend(p).Peers().Peers; len(ms) != 1 || ms[0].Check != CheckFailing {
		t.Fatalf("peers: %+v", ms)
	}
	// The Go client sends the same report.
	cl, err := client.New(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.CloseIdleConnections()
	if st, err := cl.SetHealth(ctxTimeout(t, 10*time.Second), CheckPassing, "back"); err != nil || st.Check != CheckPassing || st.CheckOutput != "back" {
		t.Fatalf("client SetHealth: %+v, %v", st, err)
	}
	if _, err := cl.SetHealth(ctxTimeout(t, 10*time.Second), "ok", ""); err == nil {
		t.Fatal("client SetHealth with a bad status succeeded")
	}
	tc.waitLeader(10 * time.Second)
}

// TestHealthEveryVoterFailsNoLeaderAnywhere: when every voter's check
// fails, no peer names a leader (not even the followers of the raft leader
// that is left, which holds no lease, while they know it), and each says why; once one check
// passes, that peer leads and everyone names it.
func TestHealthEveryVoterFailsNoLeaderAnywhere(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config) { c.HealthCheck = &HealthCheckConfig{TTL: Duration(time.Hour)} })
	for _, p := range tc.peers {
		if err := p.SetHealth(CheckPassing, "ok"); err != nil {
			t.Fatal(err)
		}
	}
	tc.waitLeader(10 * time.Second)
	for _, p := range tc.peers {
		if err := p.SetHealth(CheckFailing, "maintenance"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range tc.peers {
		// While raft itself has a leader that this peer hears from (or
		// is): an election under load that leaves raft leaderless would
		// hide a peer naming a failing leader.
		waitFor(t, 10*time.Second, p.cfg.Identifier+" hears from the raft leader, names no leader and says why", func() bool {
			v := p.snap.Load().view
			_, hears := v.LeaderAt(p.now(), time.Duration(p.cfg.ElectionTimeout))
			st := newAPIBackend(p).Status()
			_, has := p.Leader()
			return (hears || v.Role == consensus.Leader) && st.Leader == nil && !has && !p.State().HasLeader && strings.Contains(st.NoLeader, "every voter")
		})
	}
	back := tc.peers[1]
	if err := back.SetHealth(CheckPassing, "back"); err != nil {
		t.Fatal(err)
	}
	for _, p := range tc.peers {
		waitFor(t, 10*time.Second, p.cfg.Identifier+" names "+back.cfg.Identifier, func() bool {
			l, ok := p.Leader()
			return ok && l.Identifier == back.cfg.Identifier
		})
	}
}
