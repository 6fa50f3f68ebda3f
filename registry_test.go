package qcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/membership"
)

// localGossip makes gossip use the local profile (fast failure detection)
// and a short rejoin interval.
func localGossip(c *Config) { c.GossipProfile = GossipLocal }

// addJoiner starts a new peer named id that is not in the others' configs;
// its config names itself and the peer at index contact. It returns its
// index in tc.
func (tc *testCluster) addJoiner(id string, contact int, voter bool, opts ...func(*Config)) int {
	tc.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tc.t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Identifier = id
	cfg.ListenPort = ln.Addr().(*net.TCPAddr).Port
	cfg.Metadata = map[string]any{"joined": true, "name": id}
	cfg.DataDir = tc.t.TempDir()
	cfg.Logger = testLogger(tc.t).With("test", tc.t.Name())
	cfg.ClusterName = tc.cfgs[contact].ClusterName
	cfg.ClusterKey = tc.cfgs[contact].ClusterKey
	cfg.GossipProfile = tc.cfgs[contact].GossipProfile
	cfg.Peers = []PeerConfig{{Host: "127.0.0.1", Port: tc.cfgs[contact].ListenPort, Identifier: tc.cfgs[contact].Identifier}}
	if !voter {
		f := false
		cfg.Voter = &f
	}
	for _, o := range opts {
		o(&cfg)
	}
	tc.cfgs = append(tc.cfgs, cfg)
	tc.peers = append(tc.peers, nil)
	i := len(tc.peers) - 1
	tc.start(i, ln)
	return i
}

// memberKey is what every peer must report identically about a member.
type memberKey struct {
	ID, Host string
	Port     int
	Meta     string
	Voter    bool
	Learner  bool
}

func registryView(c *Cluster) []memberKey {
	var out []memberKey
	for _, m := range c.Peers() {
		if m.Role == MemberNone {
			continue
		}
		out = append(out, memberKey{m.Identifier, m.Host, m.Port, fmt.Sprint(m.Metadata), m.Voter, m.Role == MemberLearner})
	}
	return out
}

// waitSameRegistry waits until every running peer reports the same members
// (n of them).
func (tc *testCluster) waitSameRegistry(timeout time.Duration, n int) []memberKey {
	tc.t.Helper()
	var ref []memberKey
	tc.t.Cleanup(func() {
		if tc.t.Failed() {
			for _, p := range tc.peers {
				if p != nil {
					tc.t.Logf("%s reports %+v", p.cfg.Identifier, registryView(p))
				}
			}
		}
	})
	waitFor(tc.t, timeout, fmt.Sprintf("every peer to report the same %d members", n), func() bool {
		ref = nil
		for _, p := range tc.peers {
			if p == nil {
				continue
			}
			v := registryView(p)
			if len(v) != n {
				return false
			}
			if ref == nil {
				ref = v
			} else if !reflect.DeepEqual(ref, v) {
				return false
			}
		}
		return true
	})
	return ref
}

func TestJoinFourthAndFifthPeer(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader(10 * time.Second)

	start := time.Now()
	p3 := tc.addJoiner("p3", 0, true) // through a founder
	tc.waitSameRegistry(20*time.Second, 4)
	t.Logf("p3 joined and is visible on every peer after %v", time.Since(start))
	start = time.Now()
	p4 := tc.addJoiner("p4", p3, true) // through a peer that joined itself
	view := tc.waitSameRegistry(20*time.Second, 5)
	t.Logf("p4 joined and is visible on every peer after %v", time.Since(start))
	for _, m := range view {
		if !m.Voter {
			t.Errorf("%s is not a voter: %+v", m.ID, m)
		}
	}
	if got := view[3]; got.Meta != fmt.Sprint(map[string]any{"joined": true, "name": "p3"}) || got.Port != tc.cfgs[p3].ListenPort {
		t.Errorf("p3 as the others see it: %+v", got)
	}
	leader := tc.waitLeader(10 * time.Second)

	// A joined peer can lead. Transfer to a named peer succeeds only once
	// that peer leads; on a busy machine a follower whose election timer
	// ran out during the hand-over may win instead, which Transfer
	// reports (ErrTransferFailed): then the transfer is asked again of
	// whoever leads.
	for _, target := range []int{p4, p3} {
		want := tc.cfgs[target].Identifier
		waitFor(t, 30*time.Second, "a transfer to "+want+" to succeed", func() bool {
			err := leader.Transfer(ctxTimeout(t, 10*time.Second), want)
			if err != nil && !errors.Is(err, ErrTransferFailed) && !errors.Is(err, ErrNotLeader) {
				t.Fatalf("transfer to %s: %v", want, err)
			}
			if err != nil {
				t.Logf("transfer to %s from %s: %v; asking again", want, leader.cfg.Identifier, err)
			}
			leader = tc.waitLeader(10 * time.Second)
			return err == nil
		})
		if leader != tc.peers[target] {
			t.Fatalf("leader is %s after a transfer to %s succeeded", leader.cfg.Identifier, want)
		}
		if l, _ := tc.peers[0].Leader(); l.Metadata["name"] != tc.cfgs[target].Identifier {
			t.Errorf("p0 reports the leader's metadata as %v", l.Metadata)
		}
	}

	// A second join of a member changes nothing.
	if err := tc.peers[1].AddPeer(ctxTimeout(t, 10*time.Second), tc.peers[p3].Self(), true); err != nil {
		t.Errorf("join again: %v", err)
	}
	tc.waitSameRegistry(5*time.Second, 5)

	// The joined peers restart as members: no second join.
	tc.stop(p4)
	tc.start(p4, nil)
	tc.waitSameRegistry(20*time.Second, 5)
	tc.waitLeader(10 * time.Second)
	if err := tc.peers[p4].JoinErr(); err != nil {
		t.Errorf("JoinErr after restart: %v", err)
	}
}

func TestJoinAsLearner(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader(10 * time.Second)
	l := tc.addJoiner("l1", 2, false)
	view := tc.waitSameRegistry(20*time.Second, 4)
	for _, m := range view {
		if (m.ID == "l1") != m.Learner || (m.ID == "l1") == m.Voter {
			t.Errorf("member %+v", m)
		}
	}
	// The learner follows the leader.
	waitFor(t, 10*time.Second, "the learner to know the leader", func() bool {
		_, ok := tc.peers[l].Leader()
		return ok
	})
	if st := tc.peers[l].State(); st.Role != RoleFollower {
		t.Errorf("learner state %+v", st)
	}
}

func TestJoinBadInput(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config) { c.ClusterName = "blue" })
	tc.waitLeader(10 * time.Second)
	before := tc.waitSameRegistry(5*time.Second, 3)
	follower := tc.peers[0]
	if follower.IsLeader() {
		follower = tc.peers[1]
	}
	p1 := tc.peers[1].Self()
	cases := []struct {
		name string
		p    Peer
		want error
	}{
		{"duplicate identifier", Peer{Identifier: p1.Identifier, Host: "127.0.0.1", Port: 1}, ErrConflict},
		{"address of another member", Peer{Identifier: "new", Host: p1.Host, Port: p1.Port}, ErrConflict},
		{"invalid host", Peer{Identifier: "new", Host: "bad host", Port: 7001}, ErrInvalidMember},
		{"invalid port", Peer{Identifier: "new", Host: "127.0.0.1", Port: 70000}, ErrInvalidMember},
		{"invalid identifier", Peer{Identifier: "a b", Host: "127.0.0.1", Port: 7001}, ErrInvalidMember},
		{"metadata too large", Peer{Identifier: "new", Host: "127.0.0.1", Port: 7001, Metadata: map[string]any{"x": string(make([]byte, MaxMetadataSize))}}, ErrInvalidMember},
	}
	for _, tt := range cases {
		err := follower.AddPeer(ctxTimeout(t, 10*time.Second), tt.p, true)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		} else {
			t.Logf("%s: %v", tt.name, err)
		}
	}
	// Another cluster's peer.
	_, err := follower.join(ctxTimeout(t, 10*time.Second), joinRequestFor(Peer{Identifier: "new", Host: "127.0.0.1", Port: 7001}, "green"))
	if !errors.Is(err, ErrWrongCluster) {
		t.Errorf("other cluster: %v", err)
	}
	if after := tc.waitSameRegistry(5*time.Second, 3); !reflect.DeepEqual(before, after) {
		t.Errorf("members changed: %v -> %v", before, after)
	}
	// A peer of another cluster that tries to join is refused and keeps
	// retrying; the cluster keeps its leader and members.
	i := tc.addJoiner("intruder", 0, true, func(c *Config) { c.ClusterName = "green" })
	waitFor(t, 10*time.Second, "the intruder's join to be refused", func() bool {
		return errors.Is(tc.peers[i].JoinErr(), ErrWrongCluster)
	})
	tc.waitLeader(5*time.Second, i)
	if after := registryView(tc.peers[0]); !reflect.DeepEqual(before, after) {
		t.Errorf("members changed: %v -> %v", before, after)
	}
}

// TestLeaveLeaderHandsOver: a leader that leaves hands leadership over
// first, so no peer waits out an election timeout. The election timeout is
// long (2 s, as in TestCloseHandsOver), so a new leader within it can only
// come from a hand-over: with the default 150 ms a loaded machine could
// stretch a hand-over past the bound without anything being wrong.
func TestLeaveLeaderHandsOver(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config) {
		c.ElectionTimeout = Duration(2 * time.Second)
		c.HeartbeatInterval = Duration(100 * time.Millisecond)
	})
	leader := tc.waitLeader(10 * time.Second)
	li := tc.index(leader)
	et := time.Duration(tc.cfgs[0].ElectionTimeout)

	// Sample every other peer's view of the leader during the leave.
	var mu sync.Mutex
	longest := map[int]time.Duration{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range tc.peers {
		if i == li {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var since time.Time
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, ok := p.Leader()
				now := time.Now()
				switch {
				case !ok && since.IsZero():
					since = now
				case ok && !since.IsZero():
					mu.Lock()
					longest[i] = max(longest[i], now.Sub(since))
					mu.Unlock()
					since = time.Time{}
				}
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	if err := leader.Leave(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	left := time.Now()
	tc.peers[li] = nil
	newLeader := tc.waitLeader(10 * time.Second)
	took := time.Since(left)
	close(stop)
	wg.Wait()
	t.Logf("leave done; new leader %s agreed %v later; longest gap without a known leader per peer: %v", newLeader.cfg.Identifier, took, longest)
	if took > et {
		t.Errorf("new leader agreed %v after the leave, more than one election timeout (%v)", took, et)
	}
	for i, d := range longest {
		if d > et {
			t.Errorf("p%d was without a known leader for %v (> %v)", i, d, et)
		}
	}
	view := tc.waitSameRegistry(10*time.Second, 2)
	for _, m := range view {
		if m.ID == tc.cfgs[li].Identifier {
			t.Errorf("the leaver is still a member: %v", view)
		}
	}
	// The leaver shows as left in gossip.
	waitFor(t, 15*time.Second, "the others to see the leaver as left", func() bool {
		for _, m := range newLeader.Peers() {
			if m.Identifier == tc.cfgs[li].Identifier {
				return m.Health == HealthLeft && m.Role == MemberNone
			}
		}
		return false
	})
}

func TestKillMemberSuspectThenDeadAndMetadata(t *testing.T) {
	tc := newTestCluster(t, 4, localGossip)
	tc.waitLeader(10 * time.Second)
	waitFor(t, 15*time.Second, "gossip to see every member alive", func() bool {
		for _, p := range tc.peers {
			for _, m := range p.Peers() {
				if m.Health != HealthAlive {
					return false
				}
			}
		}
		return true
	})

	// Metadata updates propagate, through the log, to every peer.
	md := map[string]any{"server_port": float64(9999), "zone": "b"}
	if err := tc.peers[2].SetMetadata(ctxTimeout(t, 10*time.Second), md); err != nil {
		t.Fatalf("SetMetadata: %v", err)
	}
	waitFor(t, 10*time.Second, "the new metadata on every peer", func() bool {
		for _, p := range tc.peers {
			for _, m := range p.Peers() {
				if m.Identifier == "p2" && !reflect.DeepEqual(m.Metadata, md) {
					return false
				}
			}
		}
		return true
	})
	if err := tc.peers[2].SetMetadata(ctxTimeout(t, 10*time.Second), map[string]any{"x": string(make([]byte, MaxMetadataSize))}); !errors.Is(err, ErrInvalidMetadata) {
		t.Errorf("oversized metadata: %v", err)
	}

	// Kill p3 (its gossip stops without a goodbye).
	type seen struct{ suspect, dead time.Duration }
	var mu sync.Mutex
	var killT time.Time
	got := map[string]*seen{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 3 {
		evs := tc.peers[i].Events(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range evs {
				if ev.Member.Identifier != "p3" {
					continue
				}
				mu.Lock()
				s := got[tc.cfgs[i].Identifier]
				if s == nil {
					s = &seen{}
					got[tc.cfgs[i].Identifier] = s
				}
				switch ev.Type {
				case EventSuspect:
					if s.suspect == 0 {
						s.suspect = ev.Time.Sub(killT)
					}
				case EventFailed:
					s.dead = ev.Time.Sub(killT)
				}
				mu.Unlock()
			}
		}()
	}
	mu.Lock()
	killT = time.Now()
	mu.Unlock()
	tc.stop(3)
	mcfg := membership.DefaultConfig()
	mcfg.Profile = membership.ProfileLocal
	_, hi := mcfg.SuspicionTimeout(4)
	bound := hi + 3*time.Second // suspicion at worst a few probe rounds after the kill
	// Peers() shows p3 dead a moment before the failed event reaches
	// each Events stream: wait for both, so cancelling the streams below
	// drops no event in flight.
	waitFor(t, bound+5*time.Second, "every survivor to see p3 dead and report it", func() bool {
		for i := range 3 {
			for _, m := range tc.peers[i].Peers() {
				if m.Identifier == "p3" && m.Health != HealthDead {
					return false
				}
			}
			mu.Lock()
			s := got[tc.cfgs[i].Identifier]
			reported := s != nil && s.dead != 0
			mu.Unlock()
			if !reported {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	for i := range 3 {
		s := got[tc.cfgs[i].Identifier]
		if s == nil || s.dead == 0 {
			t.Errorf("p%d: no failed event for p3 (%+v)", i, s)
			continue
		}
		t.Logf("p%d: p3 suspect after %v, dead after %v (bound %v)", i, s.suspect, s.dead, bound)
		switch {
		case s.suspect == 0:
			t.Errorf("p%d never saw p3 suspect before dead (%+v)", i, s)
		case s.suspect > s.dead:
			t.Errorf("p%d saw p3 dead before suspect: %+v", i, s)
		}
		if s.dead > bound {
			t.Errorf("p%d: p3 dead after %v, beyond memberlist's bound %v", i, s.dead, bound)
		}
	}
	// p3 stays a voter (no dead_member_timeout): the 3 others keep a leader.
	tc.waitLeader(10*time.Second, 3)
}

func TestDeadMemberRemovedDownToMinVoters(t *testing.T) {
	t.Parallel() // seconds of waiting on timers, little CPU: beside another such test
	tc := newTestCluster(t, 5, localGossip, func(c *Config) {
		c.DeadMemberTimeout = Duration(time.Second)
		c.MinVoters = 4
	})
	tc.waitLeader(10 * time.Second)
	leader := tc.waitLeader(10 * time.Second)
	victims := []int{}
	for i := range tc.peers {
		if tc.peers[i] != leader && len(victims) < 2 {
			victims = append(victims, i)
		}
	}
	tc.stop(victims[0])
	view := tc.waitSameRegistry(30*time.Second, 4)
	for _, m := range view {
		if m.ID == tc.cfgs[victims[0]].Identifier {
			t.Fatalf("the dead member is still there: %v", view)
		}
	}
	// The next one would go below min_voters: it stays.
	tc.stop(victims[1])
	waitFor(t, 20*time.Second, "the second victim to be seen dead", func() bool {
		for _, m := range tc.waitLeader(10*time.Second, victims...).Peers() {
			if m.Identifier == tc.cfgs[victims[1]].Identifier {
				return m.Health == HealthDead
			}
		}
		return false
	})
	// It must stay so over several reaper rounds.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if v := registryView(tc.waitLeader(10*time.Second, victims...)); len(v) != 4 {
			t.Fatalf("removed below min_voters: %v", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRemovePeerAndLastVoter(t *testing.T) {
	tc := newTestCluster(t, 2)
	tc.waitLeader(10 * time.Second)
	follower := tc.peers[0]
	if follower.IsLeader() {
		follower = tc.peers[1]
	}
	if err := follower.RemovePeer(ctxTimeout(t, 10*time.Second), "nobody"); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("remove unknown: %v", err)
	}
	// Removing the leader through the follower: it hands over first.
	leader := tc.waitLeader(10 * time.Second)
	if err := follower.RemovePeer(ctxTimeout(t, 20*time.Second), leader.cfg.Identifier); err != nil {
		t.Fatalf("remove the leader: %v", err)
	}
	waitFor(t, 10*time.Second, "the follower to lead alone", func() bool { return follower.IsLeader() })
	if v := registryView(follower); len(v) != 1 || v[0].ID != follower.cfg.Identifier {
		t.Errorf("members %v", v)
	}
	if err := follower.RemovePeer(ctxTimeout(t, 10*time.Second), follower.cfg.Identifier); !errors.Is(err, ErrConflict) {
		t.Errorf("remove the last voter: %v", err)
	}
}

func joinRequestFor(p Peer, cluster string) api.JoinRequest {
	return api.JoinRequest{Identifier: p.Identifier, Host: p.Host, Port: p.Port, Metadata: p.Metadata, ClusterName: cluster}
}

func TestMasterlessOwnersAgreeAndMoveOnlyTheDeadPeersKeys(t *testing.T) {
	t.Parallel() // seconds of waiting on timers, little CPU: beside another such test
	const n = 20
	tc := newTestCluster(t, n, localGossip, func(c *Config) {
		c.Mode = ModeMasterless
		// Seeds: the first two peers, not everyone.
		var seeds []PeerConfig
		for _, p := range c.Peers {
			if p.Identifier == "p0" || p.Identifier == "p1" {
				seeds = append(seeds, p)
			}
		}
		c.Peers = seeds
	})
	start := time.Now()
	waitFor(t, 60*time.Second, "every peer to see all 20 alive", func() bool {
		for _, p := range tc.peers {
			alive := 0
			for _, m := range p.Peers() {
				if m.Health == HealthAlive {
					alive++
				}
			}
			if alive != n {
				return false
			}
		}
		return true
	})
	t.Logf("20 masterless peers converged in %v", time.Since(start))
	for _, p := range tc.peers {
		if p.IsLeader() {
			t.Fatal("a masterless peer says it leads")
		}
		if _, ok := p.Leader(); ok {
			t.Fatal("a masterless peer reports a leader")
		}
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
	}
	owners := func(except int) map[string]string {
		var ref map[string]string
		for i, p := range tc.peers {
			if p == nil || i == except {
				continue
			}
			m := map[string]string{}
			for _, k := range keys {
				o, ok := p.Owner(k)
				if !ok {
					t.Fatalf("p%d: no owner for %s", i, k)
				}
				m[k] = o.Identifier
			}
			if ref == nil {
				ref = m
			} else if !reflect.DeepEqual(ref, m) {
				return nil
			}
		}
		return ref
	}
	before := owners(-1)
	if before == nil {
		t.Fatal("peers disagree on owners after convergence")
	}
	counts := map[string]int{}
	for _, o := range before {
		counts[o]++
	}
	if len(counts) != n {
		t.Errorf("only %d of %d peers own keys: %v", len(counts), n, counts)
	}
	victim := 7
	tc.stop(victim)
	var after map[string]string
	waitFor(t, 30*time.Second, "every survivor to agree on owners without p7", func() bool {
		after = owners(victim)
		if after == nil {
			return false
		}
		for _, o := range after {
			if o == "p7" {
				return false
			}
		}
		return true
	})
	moved := 0
	for _, k := range keys {
		if before[k] != after[k] {
			moved++
			if before[k] != "p7" {
				t.Errorf("%s moved from %s to %s, but only p7's keys may move", k, before[k], after[k])
			}
		}
	}
	if moved != counts["p7"] {
		t.Errorf("%d keys moved, p7 owned %d", moved, counts["p7"])
	}
	// Readiness and status in masterless mode.
	st := newAPIBackend(tc.peers[0]).Status()
	if st.Mode != ModeMasterless || st.Role != "none" || !st.Joined || st.Leader != nil {
		t.Errorf("masterless status %+v", st)
	}
	if slices.ContainsFunc(tc.peers[0].Peers(), func(m Member) bool { return m.Role != MemberMasterless }) {
		t.Errorf("masterless roles: %+v", tc.peers[0].Peers())
	}
}

// TestJoinWhileContactDownRecovers: a new peer whose only configured peer
// is down when it first starts founds a cluster with it (it cannot tell a
// founder from a joiner), where it can never elect a leader (the contact
// refuses its votes). Once the contact is back, it finds the running
// cluster, discards its untouched founding state and joins; the cluster
// keeps its leader throughout.
func TestJoinWhileContactDownRecovers(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(10 * time.Second)
	term := leader.Term()
	contact := 0
	if tc.peers[0] == leader {
		contact = 1
	}
	tc.stop(contact)
	i := tc.addJoiner("late", contact, true)
	if _, ok := tc.peers[i].Leader(); ok {
		t.Fatal("the late peer knows a leader while its contact is down")
	}
	tc.start(contact, nil)
	view := tc.waitSameRegistry(20*time.Second, 4)
	t.Logf("members: %v", view)
	if l := tc.waitLeader(10 * time.Second); l != leader || l.Term() != term {
		t.Errorf("leadership moved: %s term %d", l.cfg.Identifier, l.Term())
	}
	if err := tc.peers[i].JoinErr(); err != nil {
		t.Errorf("JoinErr: %v", err)
	}
	// Its new state survives a restart.
	tc.stop(i)
	tc.start(i, nil)
	tc.waitSameRegistry(20*time.Second, 4)
	tc.waitLeader(10 * time.Second)
}
