package qcluster

import (
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
)

// healthIn returns the health leader's gossip reports for id.
func healthIn(c *Cluster, id string) Health {
	for _, m := range c.Peers() {
		if m.Identifier == id {
			return m.Health
		}
	}
	return HealthUnknown
}

// TestRemovedWhileDownRejoinsOnRestart: a member that stays down longer
// than dead_member_timeout is removed; restarted on its old data, it finds
// that the cluster runs without it and joins again by itself, as a voter,
// without a change of leader.
func TestRemovedWhileDownRejoinsOnRestart(t *testing.T) {
	// Not t.Parallel: it asserts that leadership stays put, which a busy
	// neighbour's load can upset (a spurious election, not the bug under test).
	tc := newTestCluster(t, 4, localGossip, func(c *Config) {
		c.DeadMemberTimeout = Duration(time.Second)
		c.MinVoters = 3
	})
	leader := tc.waitLeader(10 * time.Second)
	victim := (tc.index(leader) + 1) % 4
	id := tc.cfgs[victim].Identifier
	tc.stop(victim)
	view := tc.waitSameRegistry(30*time.Second, 3)
	for _, m := range view {
		if m.ID == id {
			t.Fatalf("%s is still a member: %v", id, view)
		}
	}
	start := time.Now()
	tc.start(victim, nil) // its old data_dir
	view = tc.waitSameRegistry(30*time.Second, 4)
	t.Logf("%s, removed while down, is a member again %v after its restart", id, time.Since(start).Round(time.Millisecond))
	i := slices.IndexFunc(view, func(m memberKey) bool { return m.ID == id })
	if i < 0 || !view[i].Voter {
		t.Fatalf("%s is not a voter again: %v", id, view)
	}
	if l := tc.waitLeader(20 * time.Second); l != leader {
		t.Errorf("leadership moved to %s during the rejoin", l.cfg.Identifier)
	}
	if err := tc.peers[victim].JoinErr(); err != nil {
		t.Errorf("JoinErr: %v", err)
	}
}

// TestRemovePeerRefusesToLoseQuorum: with one of 3 voters dead, removing a
// live voter would leave 2 voters with one alive, which cannot elect a
// leader: RemovePeer refuses with ErrWouldLoseQuorum (also ErrConflict),
// on the leader and through a follower, and the API answers 409
// would_lose_quorum; nothing changes. Removing the dead voter is fine.
func TestRemovePeerRefusesToLoseQuorum(t *testing.T) {
	t.Parallel() // seconds of waiting on timers, little CPU: beside another such test
	tc := newTestCluster(t, 3, localGossip)
	leader := tc.waitLeader(10 * time.Second)
	li := tc.index(leader)
	f, d := (li+1)%3, (li+2)%3
	fid, did := tc.cfgs[f].Identifier, tc.cfgs[d].Identifier
	waitFor(t, 20*time.Second, "the leader's gossip to see every member alive", func() bool {
		return healthIn(leader, fid) == HealthAlive && healthIn(leader, did) == HealthAlive
	})
	tc.stop(d)
	waitFor(t, 20*time.Second, "the leader's gossip to see "+did+" no longer alive", func() bool {
		return healthIn(leader, did) != HealthAlive
	})
	before := registryView(leader)

	err := leader.RemovePeer(ctxTimeout(t, 10*time.Second), fid)
	if !errors.Is(err, ErrWouldLoseQuorum) || !errors.Is(err, ErrConflict) {
		t.Fatalf("remove a live voter while another is dead, on the leader: %v, want ErrWouldLoseQuorum", err)
	}
	t.Logf("refused: %v", err)
	// Through the follower (it asks the leader over the API).
	if err := tc.peers[f].RemovePeer(ctxTimeout(t, 10*time.Second), fid); !errors.Is(err, ErrWouldLoseQuorum) {
		t.Errorf("remove through the follower: %v, want ErrWouldLoseQuorum", err)
	}
	// The API, on the leader and on the follower.
	h := newHTTPC(t)
	for _, p := range []*Cluster{leader, tc.peers[f]} {
		resp, b := h.do(p, "DELETE", "/v1/peers/"+url.PathEscape(fid), "", "")
		h.wantErr(resp, b, 409, api.CodeWouldLoseQuorum)
	}
	if after := registryView(leader); !slices.Equal(before, after) {
		t.Errorf("members changed: %v -> %v", before, after)
	}
	if l := tc.waitLeader(10*time.Second, d); l != leader {
		t.Errorf("leader changed to %s", l.cfg.Identifier)
	}

	// Removing the dead voter leaves 2 live voters: allowed.
	if err := leader.RemovePeer(ctxTimeout(t, 20*time.Second), did); err != nil {
		t.Fatalf("remove the dead voter: %v", err)
	}
	tc.waitSameRegistry(10*time.Second, 2)
}
