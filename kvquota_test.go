package qcluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestKVQuotaFromLeaderConfig: each peer is configured with another
// kv_quota_bytes; the quota in force on every peer is the leader's (it
// travels in the log), a put over it fails with ErrQuota wherever it is
// proposed and changes no peer's store, and after a transfer the new
// leader's quota applies everywhere.
func TestKVQuotaFromLeaderConfig(t *testing.T) {
	quotas := map[string]int64{"p0": 4 << 10, "p1": 8 << 10, "p2": 16 << 10}
	tc := newTestCluster(t, 3, func(c *Config) { c.KVQuotaBytes = quotas[c.Identifier] })
	leader := tc.waitLeader(20 * time.Second)
	waitQuota := func(want int64) {
		t.Helper()
		waitFor(t, 30*time.Second, "every peer's store to take the leader's quota", func() bool {
			for _, p := range tc.peers {
				if p.kv.Store().Quota() != want {
					return false
				}
			}
			return true
		})
	}
	want := quotas[leader.cfg.Identifier]
	waitQuota(want)

	f := tc.followers(leader)[0]
	res := mustPut(t, f, "small", "x")
	big := strings.Repeat("v", int(want))
	if _, err := f.KV().Put(ctxTimeout(t, 30*time.Second), "big", []byte(big)); !errors.Is(err, ErrQuota) {
		t.Fatalf("a put over the leader's quota %d on a follower: %v, want ErrQuota", want, err)
	}
	if _, err := leader.KV().Put(ctxTimeout(t, 30*time.Second), "big", []byte(big)); !errors.Is(err, ErrQuota) {
		t.Fatalf("a put over the leader's quota %d on the leader: %v, want ErrQuota", want, err)
	}
	mustPut(t, leader, "after", "y") // revision res+1 everywhere: the refused puts changed nothing
	waitFor(t, 30*time.Second, "every peer to apply the last put", func() bool {
		for _, p := range tc.peers {
			if p.kv.Store().Revision() != res.Revision+1 {
				return false
			}
		}
		return true
	})
	for _, p := range tc.peers {
		if _, ok, _ := p.kv.Store().Get("big"); ok {
			t.Fatalf("%s stored the put over the quota", p.cfg.Identifier)
		}
	}

	// Another leader: its quota.
	next := tc.followers(leader)[1]
	waitFor(t, 60*time.Second, "leadership to move to "+next.cfg.Identifier, func() bool {
		if next.IsLeader() {
			return true
		}
		if l := tc.waitLeader(20 * time.Second); l != next {
			if err := l.Transfer(ctxTimeout(t, 10*time.Second), next.cfg.Identifier); err != nil {
				t.Logf("transfer to %s: %v (trying again)", next.cfg.Identifier, err)
			}
		}
		return next.IsLeader()
	})
	waitQuota(quotas[next.cfg.Identifier])
}
