package transport

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// snapOutcomes records Config.SnapshotStatus calls.
type snapOutcomes struct {
	mu  sync.Mutex
	got []string
}

func (s *snapOutcomes) report(to uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.got = append(s.got, "ok")
	} else {
		s.got = append(s.got, "dropped")
	}
}

func (s *snapOutcomes) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func snapMsg(from, to uint64, size int) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgSnap, From: from, To: to, Term: 1,
		Snapshot: &raftpb.Snapshot{Data: bytes.Repeat([]byte{'s'}, size), Metadata: raftpb.SnapshotMetadata{Index: 10, Term: 1}}}
}

// TestSnapshotStatus: every MsgSnap handed to Send has its outcome
// reported once: written out, or dropped (unknown peer, too large for
// MaxSnapshotFrameSize, peer down).
func TestSnapshotStatus(t *testing.T) {
	var out snapOutcomes
	withStatus := func(c *Config) {
		c.SnapshotStatus = out.report
		c.MaxFrameSize = 1 << 16
		c.MaxSnapshotFrameSize = 1 << 20
	}
	a := startNode(t, 1, withStatus)
	b := startNode(t, 2, withStatus)
	connect(a, b)
	sendUntil(t, a, b, 1)

	// Larger than MaxFrameSize, within MaxSnapshotFrameSize: written out.
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 200<<10)})
	eventually(t, "the snapshot", func() bool {
		for _, m := range b.in.snapshot() {
			if m.Type == raftpb.MsgSnap {
				return len(m.Snapshot.Data) == 200<<10
			}
		}
		return false
	})
	eventually(t, "its outcome", func() bool { return len(out.list()) == 1 })
	if got := out.list(); got[0] != "ok" {
		t.Fatalf("outcome %v, want ok", got)
	}

	// Too large even for a snapshot, and to a peer nobody knows: dropped.
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 2<<20), snapMsg(1, 9, 10)})
	eventually(t, "two more outcomes", func() bool { return len(out.list()) == 3 })
	if got := out.list(); got[1] != "dropped" || got[2] != "dropped" {
		t.Fatalf("outcomes %v, want ok, dropped, dropped", got)
	}
	if n := a.tr.Stats().Dropped; n != 2 {
		t.Errorf("%d dropped, want 2", n)
	}

	// A peer that is down.
	a.tr.SetPeer(7, "127.0.0.1:1")
	eventually(t, "peer 7 down", func() bool { return a.unr.count(7) > 0 })
	a.tr.Send([]raftpb.Message{snapMsg(1, 7, 10)})
	eventually(t, "the outcome for peer 7", func() bool { return len(out.list()) == 4 })
	if got := out.list(); got[3] != "dropped" {
		t.Fatalf("outcomes %v, want the last dropped", got)
	}
}

// TestSnapshotFrames: a frame above MaxFrameSize is read only if it is a
// MsgSnap within MaxSnapshotFrameSize, and only two at a time; anything
// else closes the stream, counted as frame_too_large.
func TestSnapshotFrames(t *testing.T) {
	b := startNode(t, 2, func(c *Config) { c.MaxFrameSize, c.MaxSnapshotFrameSize = 1<<16, 1<<20 })
	pre := []byte(RaftPreamble)
	big := snapMsg(9, 2, 200<<10)
	t.Run("snapshot", func(t *testing.T) {
		c := rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), msgFrame(t, big))
		defer c.Close()
		eventually(t, "the snapshot", func() bool { return b.in.len() == 1 })
	})
	app := raftpb.Message{Type: raftpb.MsgApp, From: 9, To: 2, Term: 1,
		Entries: []raftpb.Entry{{Index: 1, Term: 1, Data: bytes.Repeat([]byte{'a'}, 200<<10)}}}
	// A MsgSnap's first bytes, then a second type field: the message
	// decodes as a MsgApp.
	p, err := app.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	disguised := append([]byte{0x08, byte(raftpb.MsgSnap)}, p...)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		// Refused on its first bytes, before the rest is read.
		{"large append, half sent", msgFrame(t, app)[:100<<10]},
		{"large append", msgFrame(t, app)},
		{"append disguised as a snapshot", frame(disguised)},
		{"snapshot above its limit", binary.BigEndian.AppendUint32(nil, 1<<20+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.tr.Refusals().FrameTooLarge
			expectClosed(t, rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), tc.frame))
			if got := b.tr.Refusals().FrameTooLarge; got != before+1 {
				t.Errorf("frame_too_large %d, want %d", got, before+1)
			}
		})
	}
	if n := b.in.len(); n != 1 {
		t.Errorf("%d messages delivered, want only the snapshot", n)
	}

	t.Run("at most two at a time", func(t *testing.T) {
		// Two streams start a large snapshot frame and stall half-way;
		// a third one is refused at once.
		hdr := msgFrame(t, snapMsg(8, 2, 300<<10))
		var conns []net.Conn
		for i := range 2 {
			from := uint64(20 + i)
			conns = append(conns, rawStream(t, b.addr(), pre, helloFrame(from, 2, "test"), hdr[:100<<10]))
		}
		eventually(t, "two large frames under way", func() bool { return b.tr.largeFrames.Load() == 2 })
		before := b.tr.Refusals().FrameTooLarge
		expectClosed(t, rawStream(t, b.addr(), pre, helloFrame(22, 2, "test"), hdr[:100<<10]))
		if got := b.tr.Refusals().FrameTooLarge; got != before+1 {
			t.Errorf("frame_too_large %d, want %d", got, before+1)
		}
		for _, c := range conns {
			c.Close()
		}
		eventually(t, "the slots back", func() bool { return b.tr.largeFrames.Load() == 0 })
	})
	if l := b.logs; !l.contains("oversized frame") {
		t.Error("no log line for the refused frames")
	}
}
