package qcluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/transport"
)

// fuzzPeer is a one-voter cluster, with one learner that never runs
// ("fuzz-member": the ID a fuzz input may claim to be a member).
type fuzzPeer struct {
	c       *Cluster
	dir     string
	member  uint64
	maxTerm uint64
}

func startFuzzPeer() (*fuzzPeer, error) {
	dir, err := os.MkdirTemp("", "qcfuzz")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg := DefaultConfig()
	cfg.Identifier = "fuzz"
	cfg.ListenHost = "127.0.0.1"
	cfg.ListenPort = ln.Addr().(*net.TCPAddr).Port
	cfg.Listener = ln
	cfg.DataDir = dir
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err == nil {
		err = c.Start(context.Background())
	}
	p := &fuzzPeer{c: c, dir: dir, member: NodeID("fuzz-member")}
	if err != nil {
		p.close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitForLeader(ctx); err != nil {
		p.close()
		return nil, err
	}
	if err := c.AddPeer(ctx, Peer{Host: "127.0.0.1", Port: 1, Identifier: "fuzz-member"}, false); err != nil {
		p.close()
		return nil, err
	}
	// The peer commits its own metadata once it knows a leader (see
	// reconcileMetadata): wait for that entry, so it is not taken for a
	// change a fuzz input made.
	for !c.ownMetadataSettled() {
		if ctx.Err() != nil {
			p.close()
			return nil, fmt.Errorf("own metadata not committed: %w", ctx.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.maxTerm = c.Term()
	return p, nil
}

func (p *fuzzPeer) close() {
	if p.c != nil {
		p.c.Close()
	}
	os.RemoveAll(p.dir)
}

// fuzzState is what a non-member must not change.
type fuzzState struct {
	registry string
	voters   []uint64
	learners []uint64
	last     uint64
	term     uint64
}

func (p *fuzzPeer) state(t *testing.T) fuzzState {
	t.Helper()
	v := p.c.snap.Load().view
	last, err := p.c.run.Load().Store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return fuzzState{string(p.c.reg.Load().Snapshot()), v.Voters, v.Learners, last, p.c.Term()}
}

func (s fuzzState) sameMembers(o fuzzState) bool {
	return s.registry == o.registry && slices.Equal(s.voters, o.voters) && slices.Equal(s.learners, o.learners)
}

// settle waits until the peer has stepped every message it received: the
// server closed the stream (every frame was delivered to the node's
// inbox), the inbox is empty, and one more loop iteration has ended.
func (p *fuzzPeer) settle(t *testing.T, conn net.Conn) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, conn); isTimeout(err) {
		t.Fatal("the peer did not close a finished raft stream")
	}
	node := p.c.node()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		empty := node.Queued() == 0
		if err := node.Do(ctx, func(*consensus.Core) error { return nil }); err != nil {
			t.Fatalf("the node does not answer: %v", err)
		}
		if empty {
			return
		}
	}
}

// fuzzFrames turns data into message frames: each chunk is a 2-byte
// length and that many bytes. A chunk that decodes as a raftpb.Message is
// sent addressed from -> to (at term, unless term is 0); others are sent
// as they are (the peer must close the stream).
func fuzzFrames(data []byte, from, to, term uint64) []byte {
	var out []byte
	for k := 0; len(data) >= 2 && k < 16; k++ {
		n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
		chunk := data[2 : 2+n]
		data = data[2+n:]
		var m raftpb.Message
		if m.Unmarshal(chunk) == nil {
			m.From, m.To = from, to
			if term != 0 {
				m.Term = term
			}
			if b, err := m.Marshal(); err == nil {
				chunk = b
			}
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(chunk)))
		out = append(out, chunk...)
	}
	return out
}

// fuzzSeed encodes messages the way fuzzFrames reads them.
func fuzzSeed(f *testing.F, msgs ...raftpb.Message) []byte {
	var out []byte
	for _, m := range msgs {
		b, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	return out
}

// helloFrom is the offset of the sender's ID in a hello's payload.
const helloFrom = 1

// Fuzz modes (bits of the first argument).
const (
	fuzzAsMember    = 1 << iota // claim to be the learner, not a stranger
	fuzzRaw                     // data is the whole stream after the preamble
	fuzzCurrentTerm             // messages carry the peer's current term
)

// FuzzRaftStream feeds arbitrary hellos and message frames into a running
// peer over its port, as a stranger and as a member: the peer never
// panics or stops, its term never goes back, and nothing a stranger sends
// changes its voters, learners, registry (metadata) or log. A member may
// change the peer's state (raft trusts members); the peer is then started
// anew, so every input meets the same state.
func FuzzRaftStream(f *testing.F) {
	cc := raftpb.ConfChange{Type: raftpb.ConfChangeAddNode, NodeID: NodeID("stranger"),
		Context: []byte(`{"identifier":"stranger","host":"127.0.0.1","port":2}`)}
	ccData, err := cc.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	md, err := registry.EncodeOp(registry.Op{Op: registry.OpMetadata, Identifier: "fuzz", Metadata: map[string]any{"forged": true}})
	if err != nil {
		f.Fatal(err)
	}
	attacks := [][]byte{
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgProp}),
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{{Type: raftpb.EntryConfChange, Data: ccData}}}),
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{{Data: md}}}),
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgForgetLeader}, raftpb.Message{Type: raftpb.MsgTimeoutNow}),
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgHeartbeat, Commit: 1 << 40}),
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgApp, Index: 1, LogTerm: 1, Commit: 5,
			Entries: []raftpb.Entry{{Index: 2, Term: 1, Type: raftpb.EntryConfChange, Data: ccData}}}),
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgVote, Index: 100, LogTerm: 100}, raftpb.Message{Type: raftpb.MsgHup}),
		fuzzSeed(f, raftpb.Message{Type: raftpb.MsgSnap, Snapshot: &raftpb.Snapshot{Data: []byte("{}"),
			Metadata: raftpb.SnapshotMetadata{Index: 50, Term: 50, ConfState: raftpb.ConfState{Voters: []uint64{1}}}}}),
	}
	for _, a := range attacks {
		for _, mode := range []byte{0, fuzzCurrentTerm, fuzzAsMember | fuzzCurrentTerm} {
			f.Add(mode, a)
		}
	}
	f.Add(byte(fuzzRaw), append(rawHello(1, 2, ""), 0, 0, 0, 1, 0xff))
	f.Add(byte(fuzzRaw), []byte{0xff, 0xff, 0xff, 0xff})

	var p *fuzzPeer
	f.Cleanup(func() {
		if p != nil {
			p.close()
		}
	})
	start := func(t *testing.T) {
		t.Helper()
		var err error
		if p, err = startFuzzPeer(); err != nil {
			t.Fatalf("start a peer: %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		if p == nil {
			start(t)
		}
		c := p.c
		from := NodeID("stranger")
		if mode&fuzzAsMember != 0 {
			from = p.member
		}
		member := mode&fuzzAsMember != 0
		if mode&fuzzRaw != 0 {
			// The raw stream's hello (if it is one) names the sender.
			member = len(data) >= 4+helloFrom+8 && binary.BigEndian.Uint64(data[4+helloFrom:]) == p.member
		}
		before := p.state(t)
		var term uint64
		if mode&fuzzCurrentTerm != 0 {
			term = before.term
		}
		conn, err := net.DialTimeout("tcp", c.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream := bytes.NewBufferString(transport.RaftPreamble)
		if mode&fuzzRaw != 0 {
			stream.Write(data)
		} else {
			stream.Write(rawHello(from, c.selfID, c.cfg.ClusterName))
			stream.Write(fuzzFrames(data, from, c.selfID, term))
		}
		if _, err := conn.Write(stream.Bytes()); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil && !isReset(err) {
			t.Fatal(err)
		}
		p.settle(t, conn)

		if err := c.Err(); err != nil {
			t.Fatalf("the peer stopped: %v", err)
		}
		after := p.state(t)
		if after.term < p.maxTerm {
			t.Fatalf("term went back from %d to %d", p.maxTerm, after.term)
		}
		p.maxTerm = after.term
		if !member && (!after.sameMembers(before) || after.last != before.last) {
			t.Fatalf("a stranger changed the peer:\nbefore %+v\nafter  %+v", short(before), short(after))
		}
		if !after.sameMembers(before) || after.last != before.last || after.term != before.term {
			// A member moved the peer on (raft trusts members; a stranger
			// may only have raised the term): start from a fresh peer
			// for the next input.
			p.close()
			p = nil
		}
	})
}

func short(s fuzzState) string {
	return fmt.Sprintf("voters %v learners %v last %d term %d registry %d bytes", s.voters, s.learners, s.last, s.term, len(s.registry))
}

// isReset reports whether err says the peer reset the connection (it
// closed the stream before reading everything we sent).
func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}
