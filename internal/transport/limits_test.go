package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

func TestMuxConnLimitPerIP(t *testing.T) {
	b := startNodeMux(t, 2, MuxOptions{MaxConnsPerIP: 3, PreambleTimeout: time.Hour})
	// Three silent connections fill 127.0.0.1's quota.
	var silent []net.Conn
	for range 3 {
		silent = append(silent, dial(t, b.mux.Addr()))
	}
	eventually(t, "3 accepted", func() bool { return b.mux.Stats().Accepted == 3 })
	over := dial(t, b.mux.Addr())
	expectClosed(t, over)
	if s := b.mux.Stats(); s.ConnLimited != 1 {
		t.Fatalf("stats %+v", s)
	}
	eventually(t, "refusal logged", func() bool { return b.logs.contains("too many connections from one address") })

	// Closing one frees its slot: a peer gets through again.
	silent[0].Close()
	a := startNode(t, 1)
	connect(a, b)
	sendUntil(t, a, b, 1)
	for _, c := range silent[1:] {
		c.Close()
	}
}

func TestMuxConnLimitCountsHTTPUntilClosed(t *testing.T) {
	m := startTestMux(t, MuxOptions{MaxConnsPerIP: 1}, RaftPreamble)
	c := dial(t, m.Addr())
	io.WriteString(c, "GET")
	h := acceptHTTP(t, m.Mux)
	// The HTTP connection still holds the only slot.
	expectClosed(t, dial(t, m.Addr()))
	eventually(t, "limited", func() bool { return m.Stats().ConnLimited == 1 })
	h.Close() // as http.Server would
	c.Close()
	eventually(t, "slot freed", func() bool {
		d := dial(t, m.Addr())
		defer d.Close()
		io.WriteString(d, RaftPreamble+"ok")
		d.(*net.TCPConn).CloseWrite()
		select {
		case got := <-m.got:
			return got == RaftPreamble+"ok"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
}

func TestFrameStallClosesStream(t *testing.T) {
	b := startNode(t, 2, func(c *Config) { c.FrameTimeout = 100 * time.Millisecond })
	// A frame that announces 1000 bytes and sends 10, and a header cut in
	// half: both closed once they stop making progress.
	stalled := rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(9, 2, "test"), binary.BigEndian.AppendUint32(nil, 1000), make([]byte, 10))
	expectClosed(t, stalled)
	half := rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(8, 2, "test"), []byte{0, 0})
	expectClosed(t, half)
	eventually(t, "stalls counted", func() bool { return b.tr.Refusals().Stalled == 2 })
	if !b.logs.contains("frame stalled") {
		t.Error("not logged")
	}
	// An idle stream (between frames) is not closed: it still delivers.
	idle := rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(7, 2, "test"), msgFrame(t, msg(7, 2, 1)))
	defer idle.Close()
	eventually(t, "first message", func() bool { return b.in.has(7, 1) })
	time.Sleep(300 * time.Millisecond) // idle for 3 frame timeouts: what is tested is that nothing happens
	if _, err := idle.Write(msgFrame(t, msg(7, 2, 2))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "message after idling", func() bool { return b.in.has(7, 2) })
}

func TestSlowLargeFrameArrives(t *testing.T) {
	// A large frame sent slowly, in pieces, makes progress: it arrives
	// although it takes longer than the frame timeout in all.
	b := startNode(t, 2, func(c *Config) { c.FrameTimeout = 2 * time.Second })
	c := rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(7, 2, "test"))
	defer c.Close()
	big := raftpb.Message{Type: raftpb.MsgApp, From: 7, To: 2, Index: 3, Entries: []raftpb.Entry{{Data: bytes.Repeat([]byte("z"), 400<<10)}}}
	f := msgFrame(t, big)
	start := time.Now()
	for len(f) > 0 {
		n := min(len(f), 16<<10)
		if _, err := c.Write(f[:n]); err != nil {
			t.Fatal(err)
		}
		f = f[n:]
		time.Sleep(100 * time.Millisecond) // paces the writes, well within the frame timeout
	}
	eventually(t, "slow large message", func() bool { return b.in.has(7, 3) })
	if time.Since(start) < 2*time.Second {
		t.Fatal("the frame was not slower than the timeout; the test shows nothing")
	}
	if r := b.tr.Refusals(); r.Stalled != 0 {
		t.Errorf("refusals %+v", r)
	}
}

// stingyReader serves a frame header claiming a huge payload and then a
// few bytes, and then blocks forever (as a stalling peer would).
type stingyReader struct{ data []byte }

func (r *stingyReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("no more")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestFrameReaderAllocatesWhatArrives(t *testing.T) {
	// A length prefix of 8 MiB backed by 100 bytes allocates about the
	// growth step, not 8 MiB.
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 20 {
		data := append(binary.BigEndian.AppendUint32(nil, 8<<20), make([]byte, 100)...)
		fr := frameReader{r: bufio.NewReaderSize(&stingyReader{data: data}, 16), conn: c1, limit: 8 << 20, timeout: time.Second}
		if _, err := fr.next(); err == nil {
			t.Fatal("frame read from 100 bytes")
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 20*(2*frameGrowth) {
		t.Errorf("20 truncated 8 MiB frames allocated %d bytes", n)
	}
}

func TestUnnamedClusterRefusesNamedHello(t *testing.T) {
	// A peer without a cluster name refuses a named hello, as a named one
	// refuses an unnamed hello (TestBadStreamsAreClosed).
	b := startNode(t, 2, func(c *Config) { c.ClusterName = "" })
	expectClosed(t, rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(9, 2, "test"), msgFrame(t, msg(9, 2, 1))))
	eventually(t, "refusal", func() bool { return b.tr.Refusals().WrongCluster == 1 })
	c := rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(9, 2, ""), msgFrame(t, msg(9, 2, 2)))
	defer c.Close()
	eventually(t, "unnamed stream accepted", func() bool { return b.in.has(9, 2) })
	if b.in.has(9, 1) {
		t.Error("named stream delivered")
	}
	// Two transports with different names never exchange a message.
	a := startNode(t, 1)
	connect(a, b)
	for i := uint64(10); i < 20; i++ {
		a.tr.Send([]raftpb.Message{msg(1, 2, i)})
	}
	eventually(t, "refusals", func() bool { return b.tr.Refusals().WrongCluster >= 2 })
	for i := uint64(10); i < 20; i++ {
		if b.in.has(1, i) {
			t.Fatal("message crossed clusters")
		}
	}
}
