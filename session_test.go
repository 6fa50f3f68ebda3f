package qcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/client"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/kv"
)

// sessionExists reports whether c's own store holds session id.
func sessionExists(c *Cluster, id uint64) bool {
	_, ok := c.kv.Store().Session(id)
	return ok
}

// holdsFor fails the test if cond stops holding before d has passed
// (polled), and returns when d has passed.
func holdsFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !cond() {
			t.Fatalf("%s stopped holding %v before the end of the %v it must hold for", what, time.Until(end), d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSessionExpires: a session nobody renews expires once its TTL has
// passed (not before: the leader's clock starts when it sees the grant),
// within a bound, and its keys are deleted with it, with watch events.
func TestSessionExpires(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	ctx := ctxTimeout(t, 60*time.Second)
	ttl := f.MinSessionTTL()
	if _, err := f.KV().GrantSession(ctx, ttl/2); !errors.Is(err, ErrInvalidTTL) {
		t.Fatalf("TTL below the minimum: %v", err)
	}
	if _, err := f.KV().GrantSession(ctx, kv.MaxSessionTTL+time.Second); !errors.Is(err, ErrInvalidTTL) {
		t.Fatalf("TTL above the maximum: %v", err)
	}
	events, err := f.KV().Watch(ctx, "svc/", 0)
	if err != nil {
		t.Fatal(err)
	}
	term := f.Term()
	start := time.Now()
	info, err := f.KV().GrantSession(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if info.TTL != ttl || info.Owner != f.cfg.Identifier || info.ID == 0 {
		t.Fatalf("session %+v", info)
	}
	ss, err := leader.KV().Sessions(ctx, kv.Stale())
	if err != nil || len(ss) != 1 || ss[0].ID != info.ID || ss[0].TTL != ttl || ss[0].Owner != f.cfg.Identifier {
		t.Fatalf("Sessions: %+v %v", ss, err)
	}
	res := mustPut(t, f, "svc/a", "x", kv.InSessionID(info.ID))
	if res.KV.Session != info.ID || res.KV.Owner != f.cfg.Identifier {
		t.Fatalf("put in session: %+v", res.KV)
	}
	if ev := <-events; ev.Type != kv.EventPut {
		t.Fatalf("event %+v", ev)
	}
	var ev kv.Event
	select {
	case ev = <-events:
	case <-time.After(ttl + 30*time.Second):
		t.Fatalf("the session's key was not deleted within TTL + 30 s")
	}
	took := time.Since(start)
	if ev.Type != kv.EventDelete || ev.KV.Key != "svc/a" {
		t.Fatalf("event %+v", ev)
	}
	if took < ttl {
		t.Fatalf("expired after %v, before its TTL %v", took, ttl)
	}
	t.Logf("a session with TTL %v expired %v after the grant began (%v past its TTL; term %d, then %d; began %s)", ttl, took, took-ttl, term, f.Term(), start.UTC().Format("15:04:05.000"))
	waitFor(t, 10*time.Second, "every peer to drop the session", func() bool {
		for _, p := range tc.peers {
			if sessionExists(p, info.ID) {
				return false
			}
		}
		return true
	})
	if err := f.KV().RenewSession(ctx, info.ID); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("renewing an expired session: %v", err)
	}
	if _, err := f.KV().Put(ctx, "svc/b", nil, kv.InSessionID(info.ID)); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("put in an expired session: %v", err)
	}
}

// TestSessionKeptAliveAndClosed: a Session renews itself: it outlives
// its TTL several times over; Close revokes it and deletes its keys.
func TestSessionKeptAliveAndClosed(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	ctx := ctxTimeout(t, 60*time.Second)
	s, err := f.KV().NewSession(ctx, f.MinSessionTTL())
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, leader, "k", "v", kv.InSession(s))
	holdsFor(t, 4*s.TTL(), "a renewed session", func() bool {
		select {
		case <-s.Done():
			return false
		default:
		}
		return sessionExists(leader, s.ID())
	})
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if _, err := leader.KV().Get(ctx, "k"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("key of a closed session: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSessionSurvivesFailover: the new leader starts every session's
// clock when it gains leadership. A session renewed some time before the
// leader stops is not expired by the new leader at the end of the TTL
// counted from that renewal (the new leader saw it as a follower), and a
// kept-alive session lives on across the fail-over.
func TestSessionSurvivesFailover(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	li := tc.index(leader)
	f := tc.followers(leader)[0]
	ctx := ctxTimeout(t, 90*time.Second)
	ttl := max(3*time.Second, f.MinSessionTTL())
	kept, err := f.KV().NewSession(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	manual, err := f.KV().GrantSession(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.KV().RenewSession(ctx, manual.ID); err != nil {
		t.Fatal(err)
	}
	renewed := time.Now()
	time.Sleep(ttl / 2) // the scenario: the leader stops half a TTL after the renewal
	tc.stop(li)
	tc.waitLeader(30*time.Second, li)
	// From the renewal, the new leader's clock would run out at TTL; it
	// started at the election instead, at least half a TTL later.
	holdsFor(t, time.Until(renewed.Add(ttl*14/10)), "the manual session after the fail-over", func() bool {
		return sessionExists(f, manual.ID)
	})
	// Renewed now, it lives on; left alone, it expires.
	if err := f.KV().RenewSession(ctx, manual.ID); err != nil {
		t.Fatalf("renew after the fail-over: %v", err)
	}
	waitFor(t, ttl+30*time.Second, "the manual session to expire", func() bool { return !sessionExists(f, manual.ID) })
	select {
	case <-kept.Done():
		t.Fatalf("a kept-alive session ended across the fail-over")
	default:
	}
	if !sessionExists(f, kept.ID()) {
		t.Fatalf("kept-alive session gone")
	}
	if err := kept.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLockInSessionReleasedOnExpiry: a lock bound to a session nobody
// renews is released when the session expires: the holder's Lost closes
// and a waiter on another peer takes it, with a greater fencing token.
func TestLockInSessionReleasedOnExpiry(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	fs := tc.followers(leader)
	ctx := ctxTimeout(t, 60*time.Second)
	info, err := fs[0].KV().GrantSession(ctx, fs[0].MinSessionTTL())
	if err != nil {
		t.Fatal(err)
	}
	l, err := fs[0].Lock(ctx, "job", kv.WithSessionID(info.ID))
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := fs[0].kv.Store().Get(kv.LockPrefix + "job"); v.Session != info.ID {
		t.Fatalf("lock key not bound to the session: %+v", v)
	}
	got := make(chan *kv.Lock, 1)
	errc := make(chan error, 1)
	go func() {
		l2, err := fs[1].Lock(ctx, "job")
		if err != nil {
			errc <- err
			return
		}
		got <- l2
	}()
	var l2 *kv.Lock
	select {
	case l2 = <-got:
	case err := <-errc:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("the waiter never got the lock")
	}
	select {
	case <-l.Lost():
	case <-ctx.Done():
		t.Fatal("the expired holder's Lost did not close")
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l.Token())
	}
	if err := l.Unlock(ctx); !errors.Is(err, ErrLockLost) {
		t.Fatalf("Unlock of the expired lock: %v", err)
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fs[0].Lock(ctx, "job", kv.WithSessionID(info.ID)); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("Lock in an expired session: %v", err)
	}
}

// TestAPISessions: the HTTP API on real peers: a session created on a
// follower, a key and a lock bound to it (the lock outlives its request),
// renewals through another peer, then expiry: the key and the lock go, and
// the next holder gets a greater token.
func TestAPISessions(t *testing.T) {
	tc := newAPITestCluster(t, 3, testToken)
	leader := tc.waitLeader(20 * time.Second)
	fs := tc.followers(leader)
	h := newHTTPC(t)
	must := func(c *Cluster, method, path, body string, status int, out any) {
		t.Helper()
		resp, b := h.do(c, method, path, testToken, body)
		if resp.StatusCode != status {
			t.Fatalf("%s %s: %s %s, want %d", method, path, resp.Status, b, status)
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
	}
	must(fs[0], "POST", "/v1/sessions", `{"ttl": "10ms"}`, 400, nil)
	var s api.Session
	must(fs[0], "POST", "/v1/sessions", `{"ttl": "1s"}`, 200, &s)
	if s.ID == 0 || s.TTL != "1s" || s.Owner != fs[0].cfg.Identifier {
		t.Fatalf("session %+v", s)
	}
	id := strconv.FormatUint(s.ID, 10)
	var res api.KVResult
	must(fs[1], "PUT", "/v1/kv/svc/a?session="+id, `{"value": "eA=="}`, 200, &res)
	if res.KV == nil || res.KV.Session != s.ID || res.KV.Owner != fs[0].cfg.Identifier {
		t.Fatalf("put in session: %+v", res.KV)
	}
	var le api.LockEvent
	must(fs[1], "POST", "/v1/locks/job?session="+id, ``, 200, &le)
	if le.Token == 0 || le.Session != s.ID {
		t.Fatalf("lock in session: %+v", le)
	}
	// Renewed through the leader, for three TTLs, it stays.
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		must(leader, "PUT", "/v1/sessions/"+id+"/renew", ``, 200, nil)
		if v, _, _ := fs[1].kv.Store().Get(kv.LockPrefix + "job"); v.ModRevision != le.Token {
			t.Fatalf("the lock of a renewed session went: %+v", v)
		}
		time.Sleep(200 * time.Millisecond) // the client's renewal period
	}
	var list api.SessionList
	must(fs[1], "GET", "/v1/sessions", ``, 200, &list)
	if len(list.Sessions) != 1 || list.Sessions[0] != s {
		t.Fatalf("list %+v", list)
	}
	// Left alone, it expires: the key and lock go.
	must(leader, "POST", "/v1/locks/job?wait=30s&session="+id, ``, 404, nil) // not yet expired: waits; when it expires, the session is gone
	waitFor(t, 30*time.Second, "the key to go with the session", func() bool {
		resp, _ := h.do(fs[1], "GET", "/v1/kv/svc/a", "", "")
		return resp.StatusCode == 404
	})
	var s2 api.Session
	must(leader, "POST", "/v1/sessions", `{"ttl": "5s"}`, 200, &s2)
	var le2 api.LockEvent
	must(leader, "POST", "/v1/locks/job?session="+strconv.FormatUint(s2.ID, 10), ``, 200, &le2)
	if le2.Token <= le.Token {
		t.Fatalf("token %d after %d", le2.Token, le.Token)
	}
	must(fs[0], "DELETE", fmt.Sprintf("/v1/locks/job?token=%d", le.Token), ``, 404, nil)
	must(fs[0], "DELETE", fmt.Sprintf("/v1/locks/job?token=%d", le2.Token), ``, 200, nil)
	must(fs[0], "DELETE", "/v1/sessions/"+strconv.FormatUint(s2.ID, 10), ``, 200, nil)
	must(fs[0], "PUT", "/v1/sessions/"+id+"/renew", ``, 404, nil)
}

// TestClientSessions: the Go client against real peers: a session kept
// alive by the client outlives its TTL; a key and a lock bound to it go
// when it is closed (the lock's Lost closes, the next holder gets a
// greater token); a lock in a session is released by Unlock.
func TestClientSessions(t *testing.T) {
	tc := newAPITestCluster(t, 3, testToken)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.followers(leader)[0]
	c, err := client.NewWithOptions(client.Options{Token: testToken, Timeout: 20 * time.Second}, f.Addr(), leader.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	ctx := ctxTimeout(t, 60*time.Second)
	if _, err := c.KV().CreateSession(ctx, time.Millisecond); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("a TTL too short: %v", err)
	}
	s, err := c.KV().NewSession(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.KV().Put(ctx, "svc/x", []byte("1"), client.InSession(s)); err != nil {
		t.Fatal(err)
	}
	l, err := c.Lock(ctx, "job", client.WithSession(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l, err = c.Lock(ctx, "job", client.WithSession(s))
	if err != nil {
		t.Fatal(err)
	}
	holdsFor(t, 3*time.Second, "a session the client renews", func() bool {
		select {
		case <-s.Done():
			return false
		case <-l.Lost():
			return false
		default:
		}
		return sessionExists(leader, s.ID())
	})
	list, err := c.KV().Sessions(ctx)
	if err != nil || len(list.Sessions) != 1 || list.Sessions[0].ID != s.ID() {
		t.Fatalf("Sessions: %+v %v", list, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-ctx.Done():
		t.Fatal("the lock of a closed session is not lost")
	}
	if _, err := c.KV().Get(ctx, "svc/x"); !errors.Is(err, client.ErrKeyNotFound) {
		t.Fatalf("key of a closed session: %v", err)
	}
	l2, err := c.Lock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Unlock(ctx)
	if l2.Token() <= l.Token() {
		t.Fatalf("token %d after %d", l2.Token(), l.Token())
	}
	if _, err := c.KV().RenewSession(ctx, s.ID()); !errors.Is(err, client.ErrSessionNotFound) {
		t.Fatalf("renewing a closed session: %v", err)
	}
}

// TestSessionSurvivesRestart: a session and the keys bound to it are in
// the raft snapshot: after a compaction and a restart of every peer, the
// session is there on each (its TTL counted afresh by the new leader),
// and revoking it deletes its keys.
func TestSessionSurvivesRestart(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	ctx := ctxTimeout(t, 90*time.Second)
	info, err := leader.KV().GrantSession(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, leader, "svc/a", "x", kv.InSessionID(info.ID))
	for _, p := range tc.peers {
		waitFor(t, 20*time.Second, "the peers to apply the put", func() bool {
			_, err := p.KV().Get(ctx, "svc/a", kv.Stale())
			return err == nil
		})
		err := p.node().Do(ctx, func(core *consensus.Core) error {
			return core.Compact(p.snapshotData(), 0)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range tc.peers {
		tc.stop(i)
	}
	for i := range tc.peers {
		tc.start(i, nil)
	}
	leader = tc.waitLeader(30 * time.Second)
	for _, p := range tc.peers {
		ss, err := p.KV().Sessions(ctx)
		if err != nil || len(ss) != 1 || ss[0].ID != info.ID || ss[0].TTL != time.Minute || ss[0].Owner != info.Owner {
			t.Fatalf("%s: sessions after restart %+v %v", p.cfg.Identifier, ss, err)
		}
		if v := mustGet(t, p, "svc/a"); v.Session != info.ID {
			t.Fatalf("%s: binding after restart: %+v", p.cfg.Identifier, v)
		}
	}
	if err := tc.peers[1].KV().RevokeSession(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.KV().Get(ctx, "svc/a"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("key of a revoked session after restart: %v", err)
	}
}
