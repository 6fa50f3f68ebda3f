package qcluster

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	kvstore "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/transport"
)

// raftStream opens a raft stream to addr as node from (no TLS), claiming
// to be addressed to node to, and writes msgs (From and To filled in).
func raftStream(t testing.TB, addr string, from, to uint64, cluster string, msgs ...raftpb.Message) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	b := []byte(transport.RaftPreamble)
	b = append(b, rawHello(from, to, cluster)...)
	for _, m := range msgs {
		m.From, m.To = from, to
		b = append(b, rawFrame(t, m)...)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	return conn
}

// rawHello is a hello frame as the transport writes it (see package
// transport's doc).
func rawHello(from, to uint64, cluster string) []byte {
	p := []byte{transport.HelloVersion}
	p = binary.BigEndian.AppendUint64(p, from)
	p = binary.BigEndian.AppendUint64(p, to)
	p = append(p, cluster...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

func rawFrame(t testing.TB, m raftpb.Message) []byte {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(data))), data...)
}

// clusterState is what no attack may change: every peer's registry and
// configuration.
type clusterState struct {
	members []memberKey
	voters  []uint64
}

func (tc *testCluster) state() []clusterState {
	var out []clusterState
	for _, p := range tc.peers {
		if p == nil {
			continue
		}
		out = append(out, clusterState{registryView(p), p.snap.Load().view.Voters})
	}
	return out
}

// waitRefused waits until c's node has refused more than before messages
// for reason r.
func waitRefused(t testing.TB, c *Cluster, r consensus.Refusal, before uint64) {
	t.Helper()
	waitFor(t, 20*time.Second, c.cfg.Identifier+" refusing a message as "+r.String(), func() bool {
		return c.node().Refused(r) > before
	})
}

// TestRaftInputAttacks replays, over TCP on the real port, the attacks
// that once killed a leader or changed the cluster without a token: each
// message is refused and counted, every peer keeps running, voters and
// metadata stay as they were, and forwarded proposals still work for
// their legitimate use (a follower's own metadata).
func TestRaftInputAttacks(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	li := tc.index(leader)
	fi, gi := (li+1)%3, (li+2)%3
	follower, other := tc.peers[fi], tc.peers[gi]
	name := tc.cfgs[0].ClusterName
	stranger := NodeID("stranger")
	// A learner that never runs: a member ID that no running peer
	// reconnects as (a stream claiming a running peer's ID is replaced as
	// soon as that peer redials).
	if err := leader.AddPeer(ctxTimeout(t, 20*time.Second), Peer{Host: "127.0.0.1", Port: 1, Identifier: "ghost"}, false); err != nil {
		t.Fatal(err)
	}
	ghost := NodeID("ghost")
	tc.waitSameRegistry(20*time.Second, 4)
	before := tc.state()

	confChange := func(id uint64, ident string) raftpb.Entry {
		cc := raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: id,
			Context: []byte(`{"identifier":"` + ident + `","host":"127.0.0.1","port":1}`)}
		data, err := cc.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return raftpb.Entry{Type: raftpb.EntryConfChange, Data: data}
	}
	metadataOf := func(ident string) raftpb.Entry {
		data, err := registry.EncodeOp(registry.Op{Op: registry.OpMetadata, Identifier: ident, Metadata: map[string]any{"forged": true}})
		if err != nil {
			t.Fatal(err)
		}
		return raftpb.Entry{Data: data}
	}

	shortGrant := func(owner uint64) raftpb.Entry {
		data, err := kvstore.EncodeOp(kvstore.Op{Type: kvstore.OpGrant, Owner: owner, TTL: leader.MinSessionTTL() - time.Millisecond, ReqID: 1})
		if err != nil {
			t.Fatal(err)
		}
		return raftpb.Entry{Data: data}
	}

	attacks := []struct {
		name     string
		target   *Cluster
		from     uint64
		msg      func() raftpb.Message
		reason   consensus.Refusal
		closesIt bool // the peer closes the stream
	}{
		{"empty MsgProp from a stranger", leader, stranger,
			func() raftpb.Message { return raftpb.Message{Type: raftpb.MsgProp, Term: leader.Term()} },
			consensus.RefusedNonMember, false},
		{"stranger proposes to add itself", leader, stranger,
			func() raftpb.Message {
				return raftpb.Message{Type: raftpb.MsgProp, Term: leader.Term(), Entries: []raftpb.Entry{confChange(stranger, "stranger")}}
			}, consensus.RefusedNonMember, false},
		{"stranger forges metadata", leader, stranger,
			func() raftpb.Message {
				return raftpb.Message{Type: raftpb.MsgProp, Term: leader.Term(), Entries: []raftpb.Entry{metadataOf(tc.cfgs[fi].Identifier)}}
			}, consensus.RefusedNonMember, false},
		{"empty MsgProp from a member", leader, follower.selfID,
			func() raftpb.Message { return raftpb.Message{Type: raftpb.MsgProp, Term: leader.Term()} },
			consensus.RefusedProposal, false},
		{"member proposes to add a stranger", leader, follower.selfID,
			func() raftpb.Message {
				return raftpb.Message{Type: raftpb.MsgProp, Term: leader.Term(), Entries: []raftpb.Entry{confChange(stranger, "stranger")}}
			}, consensus.RefusedProposal, false},
		{"member forges another member's metadata", leader, follower.selfID,
			func() raftpb.Message {
				return raftpb.Message{Type: raftpb.MsgProp, Term: leader.Term(), Entries: []raftpb.Entry{metadataOf(tc.cfgs[gi].Identifier)}}
			}, consensus.RefusedProposal, false},
		{"member grants itself a session shorter than MinSessionTTL", leader, follower.selfID,
			func() raftpb.Message {
				return raftpb.Message{Type: raftpb.MsgProp, Term: leader.Term(), Entries: []raftpb.Entry{shortGrant(follower.selfID)}}
			}, consensus.RefusedProposal, false},
		{"MsgForgetLeader to a follower", follower, other.selfID,
			func() raftpb.Message { return raftpb.Message{Type: raftpb.MsgForgetLeader, Term: follower.Term()} },
			consensus.RefusedType, false},
		{"MsgForgetLeader from the leader's ID", follower, leader.selfID,
			func() raftpb.Message { return raftpb.Message{Type: raftpb.MsgForgetLeader, Term: follower.Term()} },
			consensus.RefusedType, false},
		{"MsgTimeoutNow from a follower", follower, other.selfID,
			func() raftpb.Message { return raftpb.Message{Type: raftpb.MsgTimeoutNow, Term: follower.Term()} },
			consensus.RefusedTimeoutNow, false},
		{"MsgTimeoutNow from a stranger", follower, stranger,
			func() raftpb.Message { return raftpb.Message{Type: raftpb.MsgTimeoutNow, Term: follower.Term() + 1} },
			consensus.RefusedNonMember, false},
		{"MsgHup from raft's local append thread", follower, ^uint64(0),
			func() raftpb.Message { return raftpb.Message{Type: raftpb.MsgHup} },
			consensus.RefusedType, false},
		{"heartbeat from the leader's ID committing past the log", follower, leader.selfID,
			func() raftpb.Message {
				return raftpb.Message{Type: raftpb.MsgHeartbeat, Term: follower.Term(), Commit: 1 << 40}
			}, consensus.RefusedPanic, false},
		{"heartbeat from a member committing past the log", follower, ghost,
			func() raftpb.Message {
				return raftpb.Message{Type: raftpb.MsgHeartbeat, Term: follower.Term(), Commit: 1 << 40}
			}, consensus.RefusedPanic, true},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			node := a.target.node()
			n := node.Refused(a.reason)
			conn := raftStream(t, a.target.Addr(), a.from, a.target.selfID, name, a.msg())
			waitRefused(t, a.target, a.reason, n)
			if a.closesIt {
				if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
					t.Fatal(err)
				}
				var b [1]byte
				if _, err := conn.Read(b[:]); err == nil || isTimeout(err) {
					t.Errorf("the stream that made raft panic was not closed: %v", err)
				}
			}
			for _, p := range tc.peers {
				if err := p.Err(); err != nil {
					t.Fatalf("%s stopped: %v", p.cfg.Identifier, err)
				}
			}
		})
	}

	// A follower's own metadata still goes through the leader (a
	// forwarded proposal), and commits after whatever the attacks might
	// have appended.
	md := map[string]any{"index": float64(fi), "after": "attacks"}
	if err := follower.SetMetadata(ctxTimeout(t, 20*time.Second), md); err != nil {
		t.Fatalf("SetMetadata on a follower: %v", err)
	}
	tc.waitSameRegistry(20*time.Second, 4)
	after := tc.state()
	for i := range before {
		for j, m := range before[i].members {
			if m.ID == tc.cfgs[fi].Identifier {
				before[i].members[j].Meta = after[i].members[j].Meta // the legitimate change
			}
		}
	}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the attacks changed the cluster:\nbefore %+v\nafter  %+v", before, after)
	}
	tc.waitLeader(20 * time.Second)

	hc := newMetricsClient(t)
	for _, x := range []struct {
		c      *Cluster
		reason consensus.Refusal
	}{
		{leader, consensus.RefusedNonMember}, {leader, consensus.RefusedProposal},
		{follower, consensus.RefusedType}, {follower, consensus.RefusedTimeoutNow}, {follower, consensus.RefusedPanic},
	} {
		s := scrapeMetrics(t, hc, x.c)
		v, ok := s.value("qcluster_raft_messages_refused_total", "reason", x.reason.String())
		if !ok || v < 1 {
			t.Errorf("%s: qcluster_raft_messages_refused_total{reason=%q} = %v (present %v), want >= 1", x.c.cfg.Identifier, x.reason, v, ok)
		}
	}
}

// isTimeout reports whether err is a deadline error (the peer did not
// close the connection in time; EOF or a reset means it did).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestFollowerMetadataThroughLeader: SetMetadata on a follower is a
// proposal that raft forwards to the leader, which checks it (the member
// sets its own metadata) and commits it.
func TestFollowerMetadataThroughLeader(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader(20 * time.Second)
	f := tc.peers[(tc.index(leader)+1)%3]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md := map[string]any{"zone": "b"}
	if err := f.SetMetadata(ctx, md); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every peer to see the metadata", func() bool {
		for _, p := range tc.peers {
			m, ok := p.reg.Load().Get(f.selfID)
			if !ok || !reflect.DeepEqual(m.Metadata, md) {
				return false
			}
		}
		return true
	})
	if n := leader.node().Refused(consensus.RefusedProposal); n != 0 {
		t.Errorf("the leader refused %d proposals", n)
	}
}

// TestVouch: without TLS a peer vouches (consensus.Config.Vouch) for the
// senders gossip lists as live members, and for no stranger.
func TestVouch(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader(20 * time.Second)
	a, b := tc.peers[0], tc.peers[1]
	waitFor(t, 20*time.Second, "peer 0 to vouch for peer 1, which gossip lists", func() bool { return a.vouch(b.selfID) })
	for _, id := range []uint64{NodeID("stranger"), 0, ^uint64(0)} {
		if a.vouch(id) {
			t.Errorf("peer 0 vouches for node %x, which gossip does not list", id)
		}
	}
}
