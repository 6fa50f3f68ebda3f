package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
// reported once: written out, or dropped (unknown peer, more data than
// MaxSnapshotSize, peer down).
func TestSnapshotStatus(t *testing.T) {
	var out snapOutcomes
	withStatus := func(c *Config) {
		c.SnapshotStatus = out.report
		c.MaxFrameSize = 1 << 16
		c.MaxSnapshotSize = 1 << 20
	}
	a := startNode(t, 1, withStatus)
	b := startNode(t, 2, withStatus)
	connect(a, b)
	sendUntil(t, a, b, 1)

	// Within a chunk: written out in one frame. Larger than MaxFrameSize,
	// within MaxSnapshotSize: written out in chunks.
	for i, size := range []int{10 << 10, 200 << 10} {
		a.tr.Send([]raftpb.Message{snapMsg(1, 2, size)})
		eventually(t, "the snapshot", func() bool {
			for _, m := range b.in.snapshot() {
				if m.Type == raftpb.MsgSnap && len(m.Snapshot.Data) == size {
					return true
				}
			}
			return false
		})
		eventually(t, "its outcome", func() bool { return len(out.list()) == i+1 })
		if got := out.list(); got[i] != "ok" {
			t.Fatalf("outcomes %v, want ok", got)
		}
	}

	// Too large even for a snapshot, and to a peer nobody knows: dropped.
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 2<<20), snapMsg(1, 9, 10)})
	eventually(t, "two more outcomes", func() bool { return len(out.list()) == 4 })
	if got := out.list(); got[2] != "dropped" || got[3] != "dropped" {
		t.Fatalf("outcomes %v, want ok, ok, dropped, dropped", got)
	}
	if n := a.tr.Stats().Dropped; n != 2 {
		t.Errorf("%d dropped, want 2", n)
	}

	// A peer that is down.
	a.tr.SetPeer(7, "127.0.0.1:1")
	eventually(t, "peer 7 down", func() bool { return a.unr.count(7) > 0 })
	a.tr.Send([]raftpb.Message{snapMsg(1, 7, 10)})
	eventually(t, "the outcome for peer 7", func() bool { return len(out.list()) == 5 })
	if got := out.list(); got[4] != "dropped" {
		t.Fatalf("outcomes %v, want the last dropped", got)
	}
}

// TestSnapshotFrames: no frame may exceed MaxFrameSize, not even one that
// carries a MsgSnap (version 1 allowed those); anything larger closes the
// stream, counted as frame_too_large.
func TestSnapshotFrames(t *testing.T) {
	b := startNode(t, 2, func(c *Config) { c.MaxFrameSize = 1 << 16 })
	pre := []byte(RaftPreamble)
	app := raftpb.Message{Type: raftpb.MsgApp, From: 9, To: 2, Term: 1,
		Entries: []raftpb.Entry{{Index: 1, Term: 1, Data: bytes.Repeat([]byte{'a'}, 200<<10)}}}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		// Refused on the length prefix, before the rest is read.
		{"large snapshot in one frame, half sent", msgFrame(t, snapMsg(9, 2, 200<<10))[:100<<10]},
		{"large snapshot in one frame", msgFrame(t, snapMsg(9, 2, 200<<10))},
		{"large append", msgFrame(t, app)},
		{"snapshot frame above the limit", binary.BigEndian.AppendUint32(nil, 1<<16+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.tr.Refusals().FrameTooLarge
			expectClosed(t, rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), tc.frame))
			if got := b.tr.Refusals().FrameTooLarge; got != before+1 {
				t.Errorf("frame_too_large %d, want %d", got, before+1)
			}
		})
	}
	if n := b.in.len(); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
	if l := b.logs; !l.contains("oversized frame") {
		t.Error("no log line for the refused frames")
	}
}

// snapData returns size bytes of pseudo-random pages, each of which
// starts with its offset, so that a chunk out of place shows.
func snapData(size int) []byte {
	const page = 4 << 10
	fill := make([]byte, page)
	rand.NewChaCha8([32]byte{1}).Read(fill)
	b := make([]byte, size)
	for i := 0; i < size; i += page {
		n := copy(b[i:], fill)
		if n >= 8 {
			binary.BigEndian.PutUint64(b[i:], uint64(i))
		}
	}
	return b
}

// gateConn holds its writes once more than after bytes have gone through,
// until open is closed: a snapshot stops half-way for as long as a test
// needs.
type gateConn struct {
	net.Conn
	after   int
	written int
	reached chan struct{} // closed when a write first waits
	open    chan struct{} // closed by the test
	closed  chan struct{}
	once    sync.Once
	reach   sync.Once
}

func (c *gateConn) Write(p []byte) (int, error) {
	if c.written+len(p) > c.after {
		c.reach.Do(func() { close(c.reached) })
		select {
		case <-c.open:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	n, err := c.Conn.Write(p)
	c.written += n
	return n, err
}

func (c *gateConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestSnapshotInChunks: a snapshot of 96 MiB (32 with -race or -short;
// 8 MiB frames at most)
// crosses loopback intact, in chunks; a heartbeat sent while it streams is
// delivered before it ends; its outcome is reported once its last chunk
// is flushed, not before.
func TestSnapshotInChunks(t *testing.T) {
	size := 96 << 20
	if raceEnabled || testing.Short() {
		size = 32 << 20
	}
	var out snapOutcomes
	gate := &gateConn{after: 4 << 20, reached: make(chan struct{}), open: make(chan struct{}), closed: make(chan struct{})}
	var dials int
	var mu sync.Mutex
	a := startNode(t, 1, func(c *Config) {
		c.SnapshotStatus = out.report
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			mu.Lock()
			defer mu.Unlock()
			dials++
			if err != nil || dials > 1 {
				return conn, err
			}
			gate.Conn = conn
			return gate, nil
		}
	})
	b := startNode(t, 2)
	connect(a, b)

	data := snapData(size)
	snap := raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 3,
		Snapshot: &raftpb.Snapshot{Data: data, Metadata: raftpb.SnapshotMetadata{Index: 100, Term: 3,
			ConfState: raftpb.ConfState{Voters: []uint64{1, 2}}}}}
	start := time.Now()
	a.tr.Send([]raftpb.Message{snap})
	select {
	case <-gate.reached:
	case <-time.After(waitTimeout):
		t.Fatal("the snapshot did not start")
	}
	if got := out.list(); len(got) != 0 {
		t.Fatalf("outcome %v before the snapshot was written", got)
	}
	hb := raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 3}
	a.tr.Send([]raftpb.Message{hb})
	close(gate.open)

	eventually(t, "the snapshot", func() bool { return len(out.list()) == 1 })
	elapsed := time.Since(start)
	if got := out.list(); got[0] != "ok" {
		t.Fatalf("outcome %v, want ok", got)
	}
	var order []raftpb.MessageType
	eventually(t, "both messages", func() bool {
		order = order[:0]
		for _, m := range b.in.snapshot() {
			order = append(order, m.Type)
		}
		return len(order) == 2
	})
	if order[0] != raftpb.MsgHeartbeat || order[1] != raftpb.MsgSnap {
		t.Fatalf("delivered %v, want the heartbeat before the snapshot", order)
	}
	got := b.in.snapshot()[1]
	if d := got.Snapshot.Data; !bytes.Equal(d, data) {
		t.Fatalf("snapshot data differs (%d bytes, want %d)", len(d), len(data))
	}
	gotSnap, wantSnap := *got.Snapshot, *snap.Snapshot
	gotSnap.Data, wantSnap.Data = nil, nil
	got.Snapshot, snap.Snapshot = &gotSnap, &wantSnap
	if !reflect.DeepEqual(got, snap) {
		t.Errorf("delivered %+v, want %+v", got, snap)
	}
	t.Logf("%d MiB in %v (held at 4 MiB for a heartbeat): %.0f MiB/s", size>>20, elapsed.Round(time.Millisecond),
		float64(size>>20)/elapsed.Seconds())
	if s := a.tr.Stats(); s.Sent != 2 || s.Dropped != 0 {
		t.Errorf("sender stats %+v, want 2 sent", s)
	}
	if n := b.tr.snapBytes.Load(); n != 0 {
		t.Errorf("%d bytes still reserved", n)
	}
	if n := dials; n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
}

// snapStart returns frame 0 of a snapshot of size bytes carried by head,
// a MsgSnap without data.
func snapStart(t *testing.T, head raftpb.Message, size uint64) []byte {
	t.Helper()
	p, err := head.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{snapFrameKind, 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint64(b, size)
	return frame(append(b, p...))
}

// snapChunk returns snapshot frame seq carrying data.
func snapChunk(seq uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{snapFrameKind}, seq)
	return frame(append(b, data...))
}

// snapHead is a MsgSnap without data, from 9 to 2.
func snapHead() raftpb.Message {
	m := snapMsg(9, 2, 0)
	m.Snapshot.Data = nil
	return m
}

// TestSnapshotChunksRefused: snapshot frames out of sequence, past their
// announced size, above the limit or malformed close the stream, deliver
// nothing, count as bad_snapshot, and leave nothing reserved.
func TestSnapshotChunksRefused(t *testing.T) {
	// Each case on a node of its own, whose log tells the reason; stalls
	// (TestSnapshotStall) are out of the way.
	node := func(t *testing.T) *node {
		return startNode(t, 2, func(c *Config) {
			c.MaxFrameSize, c.MaxSnapshotSize, c.FrameTimeout = 1<<16, 1<<20, time.Hour
		})
	}
	pre, hello := []byte(RaftPreamble), helloFrame(9, 2, "test")
	start := snapStart(t, snapHead(), 1000)
	with := func(f func(m *raftpb.Message)) raftpb.Message {
		m := snapHead()
		f(&m)
		return m
	}
	hb := msgFrame(t, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 9, To: 2, Term: 1})
	for _, tc := range []struct {
		name   string
		frames [][]byte
		log    string
	}{
		{"data with no snapshot under way", [][]byte{snapChunk(1, make([]byte, 10))}, "frame 1 with no snapshot under way"},
		{"snapshot begun twice", [][]byte{start, snapChunk(1, make([]byte, 100)), start}, "a new snapshot began at frame 2"},
		{"gap", [][]byte{start, snapChunk(2, make([]byte, 100))}, "frame 2, expected 1"},
		{"gap after a heartbeat", [][]byte{start, snapChunk(1, make([]byte, 100)), hb, snapChunk(3, make([]byte, 100))}, "frame 3, expected 2"},
		{"repeat", [][]byte{start, snapChunk(1, make([]byte, 100)), snapChunk(1, make([]byte, 100))}, "frame 1, expected 2"},
		{"past the announced size", [][]byte{start, snapChunk(1, make([]byte, 600)), snapChunk(2, make([]byte, 600))}, "frame 2 brings 200 bytes past the announced 1000"},
		{"one frame past the announced size", [][]byte{start, snapChunk(1, make([]byte, 1001))}, "frame 1 brings 1 bytes past the announced 1000"},
		{"empty data frame", [][]byte{start, snapChunk(1, nil)}, "empty frame 1"},
		{"above MaxSnapshotSize", [][]byte{snapStart(t, snapHead(), 1<<20+1)}, "announces 1048577 bytes, limit 1048576"},
		{"above what an int64 holds", [][]byte{snapStart(t, snapHead(), 1<<63+1)}, "announces 9223372036854775809 bytes, limit 1048576"},
		{"size zero", [][]byte{snapStart(t, snapHead(), 0)}, "announces 0 bytes"},
		{"no sequence number", [][]byte{frame([]byte{snapFrameKind, 0})}, "frame of 2 bytes"},
		{"frame 0 without a size", [][]byte{frame([]byte{snapFrameKind, 0, 0, 0, 0, 1, 2, 3})}, "frame 0 of 3 bytes"},
		{"frame 0 garbage", [][]byte{frame(append([]byte{snapFrameKind, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, 0xff, 0xff, 0xff))}, "bad snapshot: frame 0: "},
		{"frame 0 not a snapshot", [][]byte{snapStart(t, with(func(m *raftpb.Message) { m.Type = raftpb.MsgApp }), 1000)}, "frame 0 carries a MsgApp"},
		{"frame 0 from another node", [][]byte{snapStart(t, with(func(m *raftpb.Message) { m.From = 8 }), 1000)}, "misaddressed: from 8 to 2"},
		{"frame 0 to another node", [][]byte{snapStart(t, with(func(m *raftpb.Message) { m.To = 3 }), 1000)}, "misaddressed: from 9 to 3"},
		{"frame 0 with data", [][]byte{snapStart(t, with(func(m *raftpb.Message) { m.Snapshot.Data = []byte("x") }), 1000)}, "frame 0 without a snapshot or with its data"},
		{"frame 0 without a snapshot", [][]byte{snapStart(t, with(func(m *raftpb.Message) { m.Snapshot = nil }), 1000)}, "frame 0 without a snapshot or with its data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := node(t)
			expectClosed(t, rawStream(t, b.addr(), append([][]byte{pre, hello}, tc.frames...)...))
			if r := b.tr.Refusals(); r != (Refusals{BadSnapshot: 1}) {
				t.Errorf("refusals %+v, want one bad_snapshot", r)
			}
			if !b.logs.contains("raft stream closed: bad snapshot") || !b.logs.contains(tc.log) {
				t.Errorf("no log line with %q", tc.log)
			}
			eventually(t, "nothing reserved", func() bool { return b.tr.snapBytes.Load() == 0 })
			for _, m := range b.in.snapshot() {
				if m.Type == raftpb.MsgSnap {
					t.Errorf("a snapshot was delivered: %d bytes", len(m.Snapshot.Data))
				}
			}
		})
	}

	// The same frames in order are delivered, heartbeats between them.
	b := node(t)
	data := snapData(1000)
	c := rawStream(t, b.addr(), pre, hello, start, snapChunk(1, data[:300]), hb, snapChunk(2, data[300:999]), hb, snapChunk(3, data[999:]))
	defer c.Close()
	eventually(t, "the snapshot", func() bool {
		for _, m := range b.in.snapshot() {
			if m.Type == raftpb.MsgSnap {
				return bytes.Equal(m.Snapshot.Data, data)
			}
		}
		return false
	})
	if got := b.in.snapshot(); len(got) != 3 || got[0].Type != raftpb.MsgHeartbeat {
		t.Errorf("delivered %d messages, want two heartbeats and the snapshot", len(got))
	}
}

// TestSnapshotChunked: the sender chunks only a MsgSnap with data whose
// encoding exceeds the chunk size, and drops one with more data than
// MaxSnapshotSize or whose frame 0 would exceed the frame limit.
func TestSnapshotChunked(t *testing.T) {
	w := frameWriter{max: 1 << 16, chunk: 1 << 12}
	big := snapMsg(1, 2, 100<<10)
	for _, tc := range []struct {
		name          string
		m             raftpb.Message
		limit         int
		chunked, sent bool
	}{
		{"small snapshot", snapMsg(1, 2, 1<<10), 1 << 20, false, false},
		{"large snapshot", big, 1 << 20, true, true},
		{"above MaxSnapshotSize", big, 100<<10 - 1, true, false},
		{"at MaxSnapshotSize", big, 100 << 10, true, true},
		{"large append", raftpb.Message{Type: raftpb.MsgApp, Entries: []raftpb.Entry{{Data: make([]byte, 100<<10)}}}, 1 << 20, false, false},
		{"frame 0 above the frame limit", func() raftpb.Message {
			m := snapMsg(1, 2, 100<<10)
			m.Context = make([]byte, 1<<16)
			return m
		}(), 1 << 20, true, false},
	} {
		s, chunked := w.chunked(&tc.m, tc.limit)
		if chunked != tc.chunked || (s != nil) != tc.sent {
			t.Errorf("%s: chunked %v, frames %v; want %v, %v", tc.name, chunked, s != nil, tc.chunked, tc.sent)
		}
	}
}

// TestSnapshotBudget: the snapshots being reassembled share
// MaxSnapshotSize; one that does not fit in what is left is refused
// until the others end.
func TestSnapshotBudget(t *testing.T) {
	b := startNode(t, 2, func(c *Config) { c.MaxFrameSize, c.MaxSnapshotSize = 1<<16, 1<<20 })
	pre := []byte(RaftPreamble)
	head := func(from uint64) raftpb.Message {
		m := snapMsg(from, 2, 0)
		m.Snapshot.Data = nil
		return m
	}
	first := rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), snapStart(t, head(9), 700<<10), snapChunk(1, make([]byte, 10)))
	defer first.Close()
	eventually(t, "the first reservation", func() bool { return b.tr.snapBytes.Load() == 700<<10 })
	expectClosed(t, rawStream(t, b.addr(), pre, helloFrame(8, 2, "test"), snapStart(t, head(8), 700<<10)))
	if r := b.tr.Refusals(); r.BadSnapshot != 1 {
		t.Errorf("refusals %+v, want one bad_snapshot", r)
	}
	if !b.logs.contains("of the 1048576 bytes for snapshots are taken") {
		t.Error("refusal not logged")
	}
	// A stream that ends frees what it reserved.
	first.Close()
	eventually(t, "the reservation freed", func() bool { return b.tr.snapBytes.Load() == 0 })
	third := rawStream(t, b.addr(), pre, helloFrame(7, 2, "test"), snapStart(t, head(7), 700<<10))
	defer third.Close()
	eventually(t, "the third reservation", func() bool { return b.tr.snapBytes.Load() == 700<<10 })
}

// TestSnapshotStall: a snapshot whose next frame does not begin within
// FrameTimeout closes its stream, whether the stream is silent or keeps
// sending other messages.
func TestSnapshotStall(t *testing.T) {
	b := startNode(t, 2, func(c *Config) { c.FrameTimeout = 200 * time.Millisecond })
	pre := []byte(RaftPreamble)
	head := func(from uint64) raftpb.Message {
		m := snapMsg(from, 2, 0)
		m.Snapshot.Data = nil
		return m
	}
	t.Run("silent", func(t *testing.T) {
		expectClosed(t, rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), snapStart(t, head(9), 1000), snapChunk(1, make([]byte, 100))))
		if r := b.tr.Refusals(); r.BadSnapshot != 1 || r.Stalled != 0 {
			t.Errorf("refusals %+v, want one bad_snapshot", r)
		}
	})
	t.Run("heartbeats", func(t *testing.T) {
		c := rawStream(t, b.addr(), pre, helloFrame(8, 2, "test"), snapStart(t, head(8), 1000))
		defer c.Close()
		hb := msgFrame(t, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 8, To: 2, Term: 1})
		deadline := time.Now().Add(waitTimeout)
		// A heartbeat every 20 ms: the stream is never idle for long,
		// but the snapshot does not go on.
		for b.tr.Refusals().BadSnapshot < 2 {
			if time.Now().After(deadline) {
				t.Fatal("the stalled snapshot was not refused")
			}
			if _, err := c.Write(hb); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		eventually(t, "the refusal", func() bool { return b.tr.Refusals().BadSnapshot == 2 })
		expectClosed(t, c)
	})
	if !b.logs.contains("stalled: frame 1 did not begin within 200ms") {
		t.Error("not logged")
	}
	eventually(t, "nothing reserved", func() bool { return b.tr.snapBytes.Load() == 0 })
	for _, m := range b.in.snapshot() {
		if m.Type == raftpb.MsgSnap {
			t.Error("a snapshot was delivered")
		}
	}
}

// floodConn sends another message through its Transport on every write
// while on: the peer's queue never runs empty.
type floodConn struct {
	net.Conn
	send func()
	on   *atomic.Bool
}

func (c *floodConn) Write(p []byte) (int, error) {
	if c.on.Load() {
		c.send()
	}
	return c.Conn.Write(p)
}

// TestSnapshotNotStarved: a snapshot progresses even while the peer's
// queue is refilled as fast as it drains.
func TestSnapshotNotStarved(t *testing.T) {
	var on atomic.Bool
	var a *node
	app := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 1,
		Entries: []raftpb.Entry{{Index: 1, Term: 1, Data: make([]byte, 80<<10)}}}
	a = startNode(t, 1, func(c *Config) {
		c.QueueSize = 2
		c.SnapshotChunkSize = 64 << 10
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &floodConn{Conn: conn, on: &on, send: func() { a.tr.Send([]raftpb.Message{app}) }}, nil
		}
	})
	snaps := new(inbox)
	b := startNode(t, 2, func(c *Config) {
		c.Deliver = func(m raftpb.Message) { // keep only the snapshot
			if m.Type == raftpb.MsgSnap {
				snaps.deliver(m)
			}
		}
	})
	connect(a, b)
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 1<<20)})
	on.Store(true)
	a.tr.Send([]raftpb.Message{app})
	eventually(t, "the snapshot", func() bool { return snaps.len() == 1 })
	on.Store(false)
	if n := a.tr.Stats().Sent; n < 10 {
		t.Errorf("%d messages sent: no flood", n)
	}
}

// TestSnapshotSlowConsumer: the time Deliver takes during a snapshot's
// reassembly does not count against its sender.
func TestSnapshotSlowConsumer(t *testing.T) {
	got := new(inbox)
	b := startNode(t, 2, func(c *Config) {
		c.FrameTimeout = time.Second
		c.Deliver = func(m raftpb.Message) {
			if m.Type == raftpb.MsgHeartbeat && m.Commit == 1 {
				time.Sleep(1500 * time.Millisecond) // a consumer slower than FrameTimeout
			}
			got.deliver(m)
		}
	})
	head := snapHead()
	head.From = 9
	hb := func(commit uint64) []byte {
		return msgFrame(t, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 9, To: 2, Term: 1, Commit: commit})
	}
	data := snapData(1000)
	c := rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(9, 2, "test"),
		snapStart(t, head, 1000), snapChunk(1, data[:500]), hb(1), hb(2), snapChunk(2, data[500:]))
	defer c.Close()
	eventually(t, "the snapshot", func() bool { return got.len() == 3 })
	if r := b.tr.Refusals(); r != (Refusals{}) {
		t.Errorf("refusals %+v", r)
	}
}
