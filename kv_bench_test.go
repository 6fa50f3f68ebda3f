package qcluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/qcluster/qcluster/kv"
)

// BenchmarkKVPut: sequential 100-byte puts on a 3-peer loopback cluster,
// on the leader and on a follower (one more trip: to the leader and back).
// ns/op is the write latency.
func BenchmarkKVPut(b *testing.B) {
	for _, where := range []string{"leader", "follower"} {
		b.Run(where, func(b *testing.B) {
			tc := newTestCluster(b, 3)
			leader := tc.waitLeader(20 * time.Second)
			c := leader
			if where == "follower" {
				c = tc.followers(leader)[0]
			}
			ctx := context.Background()
			val := make([]byte, 100)
			b.ResetTimer()
			for i := range b.N {
				if _, err := c.KV().Put(ctx, "k"+strconv.Itoa(i%100), val); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKVGet: sequential reads on a 3-peer loopback cluster:
// linearizable on the leader (its lease: no round trip), linearizable on
// a follower (a barrier through the log), and stale.
func BenchmarkKVGet(b *testing.B) {
	for _, where := range []string{"leader", "follower", "stale"} {
		b.Run(where, func(b *testing.B) {
			tc := newTestCluster(b, 3)
			leader := tc.waitLeader(20 * time.Second)
			mustPut(b, leader, "k", "v")
			c := leader
			var opts []kv.ReadOption
			switch where {
			case "follower":
				c = tc.followers(leader)[0]
			case "stale":
				c = tc.followers(leader)[0]
				opts = append(opts, kv.Stale())
				waitFor(b, 20*time.Second, "the follower to apply the put", func() bool {
					_, err := c.KV().Get(context.Background(), "k", kv.Stale())
					return err == nil
				})
			}
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				if _, err := c.KV().Get(ctx, "k", opts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
