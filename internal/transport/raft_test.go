package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

func TestExchangeBothWays(t *testing.T) {
	a, b := startNode(t, 1), startNode(t, 2)
	connect(a, b)

	const n = 500
	for i := uint64(1); i <= n; i++ {
		a.tr.Send([]raftpb.Message{msg(1, 2, i)})
		b.tr.Send([]raftpb.Message{msg(2, 1, i), msg(2, 1, i+n)})
	}
	eventually(t, "b to receive all messages", func() bool { return b.in.len() == n })
	eventually(t, "a to receive all messages", func() bool { return a.in.len() == 2*n })

	// One writer per peer: order is preserved.
	for i, m := range b.in.snapshot() {
		if m.From != 1 || m.To != 2 || m.Index != uint64(i+1) {
			t.Fatalf("b got message %d = %+v", i, m)
		}
	}
	// Sent is counted after the flush returns, which may be after delivery.
	eventually(t, "stats", func() bool {
		return a.tr.Stats() == Stats{Sent: n, Received: 2 * n} && b.tr.Stats() == Stats{Sent: 2 * n, Received: n}
	})
}

func TestLargeMessagesAndBatches(t *testing.T) {
	a, b := startNode(t, 1), startNode(t, 2)
	connect(a, b)
	big := bytes.Repeat([]byte("x"), 1<<20) // bigger than the write buffer
	var msgs []raftpb.Message
	for i := uint64(1); i <= 20; i++ {
		m := msg(1, 2, i)
		if i%5 == 0 {
			m.Entries = []raftpb.Entry{{Index: i, Term: 1, Data: big}}
		}
		msgs = append(msgs, m)
	}
	a.tr.Send(msgs)
	eventually(t, "all messages", func() bool { return b.in.len() == len(msgs) })
	for i, m := range b.in.snapshot() {
		if m.Index != uint64(i+1) || (m.Index%5 == 0) != (len(m.Entries) == 1) {
			t.Fatalf("message %d: %+v", i, m.Index)
		}
		if len(m.Entries) == 1 && !bytes.Equal(m.Entries[0].Data, big) {
			t.Fatalf("message %d: corrupted entry", i)
		}
	}
}

func TestHTTPOnSamePort(t *testing.T) {
	a, b := startNode(t, 1), startNode(t, 2)
	connect(a, b)

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pong "+r.URL.Path)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(b.mux.HTTPListener()) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("http.Server.Serve: %v", err)
		}
	}()
	ht := &http.Transport{}
	defer ht.CloseIdleConnections()
	client := &http.Client{Transport: ht, Timeout: waitTimeout}

	// Raft traffic flows in the background while HTTP requests are served.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			a.tr.Send([]raftpb.Message{msg(1, 2, i)})
		}
	}()
	for i := 0; i < 20; i++ {
		resp, err := client.Get("http://" + b.addr() + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "pong /ping" {
			t.Fatalf("GET: %q, %v", body, err)
		}
	}
	eventually(t, "raft messages", func() bool { return b.in.len() >= 10 })
	close(stop)
	wg.Wait()
}

func TestReconnectAfterRemoteRestart(t *testing.T) {
	a, b := startNode(t, 1), startNode(t, 2)
	connect(a, b)
	last := sendUntil(t, a, b, 1)

	addr := b.addr()
	b.stopMux(t) // closes b's inbound stream from a, and the port
	eventually(t, "a to notice b is gone", func() bool { return a.unr.count(2) > 0 })

	// Rebind the same port (another process could take it meanwhile; retry).
	var ln net.Listener
	eventually(t, "rebinding "+addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	b.startMux(t, ln)
	sendUntil(t, a, b, last+1)
	// And the other direction still works.
	sendUntil(t, b, a, 1)
}

func TestSetPeerAddressUpdateReconnects(t *testing.T) {
	// b and b2 both are node 2, at different addresses.
	a, b, b2 := startNode(t, 1), startNode(t, 2), startNode(t, 2)
	a.tr.SetPeer(2, b.addr())
	last := sendUntil(t, a, b, 1)
	a.tr.SetPeer(2, b2.addr())
	sendUntil(t, a, b2, last+1)
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	dialing := make(chan struct{}, 1)
	stuckDial := func(ctx context.Context, addr string) (net.Conn, error) {
		select {
		case dialing <- struct{}{}:
		default:
		}
		<-ctx.Done() // a dial that hangs until the transport gives up
		return nil, ctx.Err()
	}
	a := startNode(t, 1, func(c *Config) {
		c.QueueSize = 4
		c.DialTimeout = time.Hour
		c.Dial = stuckDial
	})
	a.tr.SetPeer(2, "192.0.2.1:9") // never dialed for real
	<-dialing

	msgs := make([]raftpb.Message, 100)
	for i := range msgs {
		msgs[i] = msg(1, 2, uint64(i+1))
	}
	within(t, waitTimeout, "Send to a stuck peer", func() { a.tr.Send(msgs) })
	if s := a.tr.Stats(); s.Dropped != 96 || s.Sent != 0 {
		t.Errorf("stats = %+v, want 96 dropped", s)
	}
	if n := a.unr.count(2); n < 1 {
		t.Errorf("Unreachable(2) called %d times, want >= 1", n)
	}
	// Unknown peer: dropped and reported every time.
	a.tr.Send([]raftpb.Message{msg(1, 7, 1)})
	if a.unr.count(7) != 1 {
		t.Errorf("Unreachable(7) not called for an unknown peer")
	}
	within(t, 5*time.Second, "Close with a stuck dial", func() { a.tr.Close() })
}

func TestUnreachableRateLimited(t *testing.T) {
	var dials atomic.Int32
	a := startNode(t, 1, func(c *Config) {
		c.MinBackoff = time.Hour // stay in the first backoff interval
		c.MaxBackoff = time.Hour
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return nil, errors.New("refused")
		}
	})
	a.tr.SetPeer(2, "192.0.2.1:9")
	eventually(t, "the first dial to fail", func() bool { return a.unr.count(2) == 1 })
	for i := 0; i < 100; i++ {
		a.tr.Send([]raftpb.Message{msg(1, 2, uint64(i))})
	}
	if n := a.unr.count(2); n != 1 {
		t.Errorf("Unreachable(2) called %d times within one backoff interval, want 1", n)
	}
	if s := a.tr.Stats(); s.Dropped != 100 {
		t.Errorf("stats = %+v, want 100 dropped", s)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1 (no spinning)", n)
	}
}

func TestCloseWithUnreachablePeers(t *testing.T) {
	// A port nobody listens on, a dial that hangs, and a peer that accepts
	// but never reads (so the writer blocks in a write).
	ln := listenLocal(t)
	refused := ln.Addr().String()
	ln.Close()

	sink := listenLocal(t)
	var held []net.Conn
	var heldMu sync.Mutex
	sinkDone := make(chan struct{})
	go func() {
		defer close(sinkDone)
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	defer func() {
		sink.Close()
		<-sinkDone
		for _, c := range held {
			c.Close()
		}
	}()

	tr := New(Config{
		LocalID: 1,
		Deliver: func(raftpb.Message) {},
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			if addr == "hang:1" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		DialTimeout: time.Hour,
	})
	tr.SetPeer(2, refused)
	tr.SetPeer(3, "hang:1")
	tr.SetPeer(4, sink.Addr().String())
	big := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 4, Entries: []raftpb.Entry{{Data: make([]byte, 1<<20)}}}
	for i := 0; i < 64; i++ {
		tr.Send([]raftpb.Message{msg(1, 2, 1), msg(1, 3, 1), big})
	}
	within(t, 5*time.Second, "Transport.Close", func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	tr.Close() // idempotent
	tr.Send([]raftpb.Message{msg(1, 2, 1)})
	tr.SetPeer(5, refused) // no goroutine after Close
}

func TestFilter(t *testing.T) {
	a, b := startNode(t, 1), startNode(t, 2)
	connect(a, b)
	last := sendUntil(t, a, b, 1)

	// Isolate b: drop everything in both directions.
	isolate := func(raftpb.Message, Direction) bool { return false }
	b.tr.SetFilter(isolate)
	before := b.in.len()
	dropped := b.tr.Stats().Dropped
	a.tr.Send([]raftpb.Message{msg(1, 2, last+1)})
	b.tr.Send([]raftpb.Message{msg(2, 1, 1)})
	eventually(t, "b to drop the inbound message", func() bool { return b.tr.Stats().Dropped == dropped+2 })
	if b.in.len() != before {
		t.Error("filtered message was delivered")
	}

	// Outbound filter on a.
	b.tr.SetFilter(nil)
	a.tr.SetFilter(func(m raftpb.Message, d Direction) bool { return d != Outbound || m.Index%2 == 0 })
	a.tr.Send([]raftpb.Message{msg(1, 2, 1001), msg(1, 2, 1002)})
	eventually(t, "even message", func() bool { return b.in.has(1, 1002) })
	if b.in.has(1, 1001) {
		t.Error("odd message passed the outbound filter")
	}
	a.tr.SetFilter(nil)
	sendUntil(t, a, b, 2000)
}

// rawStream dials addr and writes the given parts in one write (so that the
// server cannot close the connection between parts).
func rawStream(t *testing.T, addr string, parts ...[]byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(bytes.Join(parts, nil)); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectClosed waits until the server side closes c.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection not closed by the server")
	}
}

func frame(p []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

func msgFrame(t *testing.T, m raftpb.Message) []byte {
	t.Helper()
	p, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return frame(p)
}

func helloFrame(from, to uint64, cluster string) []byte {
	return appendHelloFrame(nil, hello{Version: HelloVersion, From: from, To: to, ClusterName: cluster})
}

func TestBadStreamsAreClosed(t *testing.T) {
	// No frame may exceed 64 KiB, snapshots included (larger ones travel
	// in chunks: TestSnapshotFrames).
	b := startNode(t, 2, func(c *Config) { c.MaxFrameSize = 1 << 16 })
	pre := []byte(RaftPreamble)
	cases := []struct {
		name  string
		parts [][]byte
		log   string
	}{
		{"oversized length prefix", [][]byte{pre, helloFrame(9, 2, "test"), {0xff, 0xff, 0xff, 0xff}}, "oversized frame"},
		{"just over the limit", [][]byte{pre, helloFrame(9, 2, "test"), binary.BigEndian.AppendUint32(nil, 1<<16+1)}, "oversized frame"},
		{"garbage after preamble", [][]byte{pre, []byte("\x00\x00\x00\x05hello garbage garbage")}, "bad hello"},
		{"oversized hello", [][]byte{pre, {0x7f, 0xff, 0xff, 0xff}}, "bad hello"},
		// Version 1 sent snapshots in one frame: not spoken any more.
		{"hello of version 1", [][]byte{pre, appendHelloFrame(nil, hello{Version: 1, From: 9, To: 2, ClusterName: "test"})}, "unsupported hello version 1"},
		{"wrong to in hello", [][]byte{pre, helloFrame(9, 3, "test"), msgFrame(t, msg(9, 2, 1))}, "meant for another node"},
		{"other cluster", [][]byte{pre, helloFrame(9, 2, "prod"), msgFrame(t, msg(9, 2, 1))}, "other cluster"},
		{"no cluster name", [][]byte{pre, helloFrame(9, 2, ""), msgFrame(t, msg(9, 2, 1))}, " cluster= want=test"},
		{"garbage message", [][]byte{pre, helloFrame(9, 2, "test"), frame([]byte{0xff, 0xff, 0xff})}, "bad message"},
		{"spoofed from", [][]byte{pre, helloFrame(9, 2, "test"), msgFrame(t, msg(8, 2, 1))}, "misaddressed"},
		{"wrong to in message", [][]byte{pre, helloFrame(9, 2, "test"), msgFrame(t, msg(9, 3, 1))}, "misaddressed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectClosed(t, rawStream(t, b.addr(), tc.parts...))
			eventually(t, "log "+tc.log, func() bool { return b.logs.contains(tc.log) })
		})
	}
	if n := b.in.len(); n != 0 {
		t.Errorf("%d messages delivered from refused streams", n)
	}

	want := Refusals{BadHello: 3, WrongNode: 1, WrongCluster: 2, FrameTooLarge: 2, BadMessage: 3}
	if got := b.tr.Refusals(); got != want {
		t.Errorf("Refusals = %+v, want %+v", got, want)
	}

	// A well-formed raw stream is accepted, and the Mux and Transport keep
	// serving real peers.
	c := rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), msgFrame(t, msg(9, 2, 42)))
	eventually(t, "raw message", func() bool { return b.in.has(9, 42) })
	c.Close()
	a := startNode(t, 1)
	connect(a, b)
	sendUntil(t, a, b, 1)
}

func TestWrongPeerAtAddressIsRefused(t *testing.T) {
	// a believes node 3 lives at b's address (a port reused by another peer).
	a, b := startNode(t, 1), startNode(t, 2)
	a.tr.SetPeer(3, b.addr())
	a.tr.Send([]raftpb.Message{msg(1, 3, 1)})
	eventually(t, "b to refuse the stream", func() bool { return b.logs.contains("meant for another node") })
	eventually(t, "a to report 3 unreachable", func() bool { return a.unr.count(3) > 0 })
	if b.in.len() != 0 {
		t.Error("message for node 3 delivered to node 2")
	}
}

func TestNewerInboundStreamReplacesOlder(t *testing.T) {
	b := startNode(t, 2)
	pre := []byte(RaftPreamble)
	old := rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), msgFrame(t, msg(9, 2, 1)))
	eventually(t, "first stream", func() bool { return b.in.has(9, 1) })
	c := rawStream(t, b.addr(), pre, helloFrame(9, 2, "test"), msgFrame(t, msg(9, 2, 2)))
	defer c.Close()
	eventually(t, "second stream", func() bool { return b.in.has(9, 2) })
	expectClosed(t, old)
}

func TestRemovePeer(t *testing.T) {
	a, b := startNode(t, 1), startNode(t, 2)
	connect(a, b)
	sendUntil(t, a, b, 1)
	a.tr.RemovePeer(2)
	a.tr.RemovePeer(2)
	n := a.unr.count(2)
	a.tr.Send([]raftpb.Message{msg(1, 2, 100)})
	if a.unr.count(2) != n+1 {
		t.Error("Send to a removed peer did not report Unreachable")
	}
	a.tr.SetPeer(2, b.addr())
	sendUntil(t, a, b, 200)
}

func TestDirectionString(t *testing.T) {
	if Outbound.String() != "outbound" || Inbound.String() != "inbound" {
		t.Error("Direction.String")
	}
}

// TestInboundStreamWakesBackedOffWriter: when a peer that was down dials
// in, the writer to it reconnects at once instead of sleeping out its
// backoff, so a restarted peer hears from the leader straight away.
func TestInboundStreamWakesBackedOffWriter(t *testing.T) {
	slow := func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Minute, time.Minute }
	a, b := startNode(t, 1, slow), startNode(t, 2)
	addr := b.addr()
	b.stopMux(t)
	a.tr.SetPeer(2, addr)
	eventually(t, "a to give up on b", func() bool { return a.unr.count(2) > 0 })

	var ln net.Listener
	eventually(t, "rebinding "+addr, func() bool {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	b.startMux(t, ln)
	b.tr.SetPeer(1, a.addr())
	sendUntil(t, b, a, 1)
	// a's writer would sleep a minute without the wake-up.
	sendUntil(t, a, b, 1)
}

func TestStatsByType(t *testing.T) {
	a, b := startNode(t, 1), startNode(t, 2)
	connect(a, b)
	var msgs []raftpb.Message
	for i := uint64(1); i <= 30; i++ {
		m := msg(1, 2, i)
		switch {
		case i <= 10:
			m.Type = raftpb.MsgHeartbeat
		case i <= 25:
			m.Type = raftpb.MsgApp
		default:
			m.Type = raftpb.MessageType(1000) // from a newer raft: counted as OtherTypes
		}
		msgs = append(msgs, m)
	}
	a.tr.Send(msgs)
	a.tr.Send([]raftpb.Message{{Type: raftpb.MsgVote, From: 1, To: 9}}) // unknown peer: dropped
	eventually(t, "all messages", func() bool { return b.in.len() == len(msgs) })
	eventually(t, "sent counted", func() bool { return a.tr.Stats().Sent == uint64(len(msgs)) })

	collect := func(tr *Transport) map[raftpb.MessageType]Stats {
		got := map[raftpb.MessageType]Stats{}
		tr.ForEachType(func(typ raftpb.MessageType, s Stats) { got[typ] = s })
		return got
	}
	wantA := map[raftpb.MessageType]Stats{
		raftpb.MsgHeartbeat: {Sent: 10},
		raftpb.MsgApp:       {Sent: 15},
		raftpb.MsgVote:      {Dropped: 1},
		OtherTypes:          {Sent: 5},
	}
	wantB := map[raftpb.MessageType]Stats{
		raftpb.MsgHeartbeat: {Received: 10},
		raftpb.MsgApp:       {Received: 15},
		OtherTypes:          {Received: 5},
	}
	for name, c := range map[string]struct {
		tr   *Transport
		want map[raftpb.MessageType]Stats
	}{"sender": {a.tr, wantA}, "receiver": {b.tr, wantB}} {
		got := collect(c.tr)
		if len(got) != len(c.want) {
			t.Errorf("%s: by type %v, want %v", name, got, c.want)
		}
		for typ, w := range c.want {
			if got[typ] != w {
				t.Errorf("%s: %v = %+v, want %+v", name, typ, got[typ], w)
			}
		}
	}
	if s := a.tr.Stats(); s != (Stats{Sent: 30, Dropped: 1}) {
		t.Errorf("sender totals %+v", s)
	}
}
