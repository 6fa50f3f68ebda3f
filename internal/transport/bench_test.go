package transport

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkRoundTrip measures one message each way between two peers, one
// at a time (the latency a heartbeat and its response see), with and
// without TLS.
func BenchmarkRoundTrip(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := "plain"
		if secure {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			var x, y *node
			got := make(chan raftpb.Message, 1)
			toX := func(c *Config) { c.Deliver = func(m raftpb.Message) { got <- m } }
			toY := func(c *Config) {
				c.Deliver = func(m raftpb.Message) { // answer at once
					y.tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeatResp, From: 2, To: 1, Term: m.Term}})
				}
			}
			if secure {
				p := newTestPKI(b)
				x, y = startTLSNode(b, p, 1, nil, MuxOptions{}, toX), startTLSNode(b, p, 2, nil, MuxOptions{}, toY)
			} else {
				x, y = startNode(b, 1, toX), startNode(b, 2, toY)
			}
			connect(x, y)
			// Warm up: both streams connected.
			for done := false; !done; {
				x.tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1}})
				select {
				case <-got:
					done = true
				case <-timeAfter(10):
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x.tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1}})
				<-got
			}
		})
	}
}

func timeAfter(ms int) <-chan time.Time { return time.After(time.Duration(ms) * time.Millisecond) }

// BenchmarkSnapshot measures a 64 MiB snapshot sent in chunks from one
// peer to another on loopback, from Send to delivery, with and without
// TLS.
func BenchmarkSnapshot(b *testing.B) {
	const size = 64 << 20
	snap := raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 1,
		Snapshot: &raftpb.Snapshot{Data: snapData(size), Metadata: raftpb.SnapshotMetadata{Index: 1, Term: 1}}}
	for _, secure := range []bool{false, true} {
		name := "plain"
		if secure {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			got := make(chan raftpb.Message, 1)
			toY := func(c *Config) {
				c.Deliver = func(m raftpb.Message) {
					if m.Type == raftpb.MsgSnap {
						select { // never block the stream (or Close) on a late one
						case got <- m:
						default:
						}
					}
				}
			}
			var x, y *node
			if secure {
				p := newTestPKI(b)
				x, y = startTLSNode(b, p, 1, nil, MuxOptions{}), startTLSNode(b, p, 2, nil, MuxOptions{}, toY)
			} else {
				x, y = startNode(b, 1), startNode(b, 2, toY)
			}
			connect(x, y)
			// Until the stream is up, Send may drop the snapshot.
			for done := false; !done; {
				x.tr.Send([]raftpb.Message{snap})
				select {
				case <-got:
					done = true
				case <-timeAfter(100):
				}
			}
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x.tr.Send([]raftpb.Message{snap})
				<-got
			}
		})
	}
}
