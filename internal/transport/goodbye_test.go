package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// gone records Config.PeerGone calls.
type gone struct {
	mu         sync.Mutex
	ids        []uint64
	roundTrips []time.Duration
	first      time.Time
}

func (g *gone) report(id uint64, roundTrip time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ids) == 0 {
		g.first = time.Now()
	}
	g.ids = append(g.ids, id)
	g.roundTrips = append(g.roundTrips, roundTrip)
}

func (g *gone) calls() []uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]uint64(nil), g.ids...)
}

func withPeerGone(g *gone) nodeOption {
	return func(c *Config) { c.PeerGone = g.report }
}

// rawConns is a Config.Dial that keeps the TCP connections it opens, so a
// test can end them as a dead process's kernel would, and that fails
// every dial once the "process" has crashed.
type rawConns struct {
	mu      sync.Mutex
	conns   []*net.TCPConn
	crashed bool
	maxDial int // 0: no limit
	dials   int
}

func (r *rawConns) dial(ctx context.Context, addr string) (net.Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.crashed {
		return nil, errors.New("crashed")
	}
	if r.maxDial > 0 && r.dials >= r.maxDial {
		return nil, errors.New("no more dials")
	}
	r.dials++
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	r.conns = append(r.conns, c.(*net.TCPConn))
	return c, nil
}

// crash stops further dials and ends every connection opened so far
// without a goodbye: with a FIN, as a dead process's kernel does, or with
// a reset.
func (r *rawConns) crash(reset bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crashed = true
	for _, c := range r.conns {
		if reset {
			c.SetLinger(0)
		}
		c.Close()
	}
}

func withDial(r *rawConns) nodeOption {
	return func(c *Config) { c.Dial = r.dial }
}

// refusingAddr returns a loopback address nothing listens on.
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln := listenLocal(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// streamUp starts a's stream to b and waits until b has received from it.
func streamUp(t *testing.T, a, b *node) {
	t.Helper()
	a.tr.SetPeer(b.id, b.addr())
	before := a.tr.Stats()
	_, sends := sendCounted(t, a, b, 1)
	// b may read a message before a's writer is out of the round that
	// wrote it, and a Close during a round resets the stream by design:
	// wait until every message is written or dropped (the writer counts a
	// round's messages once it is over), so that a Close now finds the
	// writer idle and says goodbye.
	eventually(t, "a's writer done with every message", func() bool {
		s := a.tr.Stats()
		return s.Sent+s.Dropped-before.Sent-before.Dropped >= sends
	})
}

func waitEnds(t *testing.T, n *node, what string, cond func(StreamEnds) bool) StreamEnds {
	t.Helper()
	eventually(t, what, func() bool { return cond(n.tr.StreamEnds()) })
	return n.tr.StreamEnds()
}

// noProbe checks that b neither probed nor called PeerGone.
func noProbe(t *testing.T, b *node, g *gone) {
	t.Helper()
	e := b.tr.StreamEnds()
	if e.EOFs != 0 || e.ProbesRefused+e.ProbesAccepted+e.ProbesFailed != 0 {
		t.Errorf("StreamEnds = %+v, want no end without a goodbye and no probe", e)
	}
	if ids := g.calls(); len(ids) != 0 {
		t.Errorf("PeerGone(%v), want no call", ids)
	}
}

// probeSettled reports whether n has seen a stream from id end without a
// goodbye and no probe of id is running (any probe it made is over).
func probeSettled(n *node, id uint64) bool {
	n.tr.mu.RLock()
	defer n.tr.mu.RUnlock()
	p := n.tr.peers[id]
	return n.tr.ends.eofs.Load() > 0 && (p == nil || !p.probing.Load())
}

// probeIdle reports whether no probe of id is running on n.
func probeIdle(n *node, id uint64) bool {
	n.tr.mu.RLock()
	defer n.tr.mu.RUnlock()
	p := n.tr.peers[id]
	return p == nil || !p.probing.Load()
}

// starter starts a node, with or without TLS.
type starter func(t *testing.T, id uint64, opts ...nodeOption) *node

// bothModes runs f without TLS and with TLS.
func bothModes(t *testing.T, f func(t *testing.T, start starter)) {
	t.Run("plain", func(t *testing.T) {
		f(t, func(t *testing.T, id uint64, opts ...nodeOption) *node { return startNode(t, id, opts...) })
	})
	t.Run("tls", func(t *testing.T) {
		p := newTestPKI(t)
		f(t, func(t *testing.T, id uint64, opts ...nodeOption) *node {
			return startTLSNode(t, p, id, nil, MuxOptions{}, opts...)
		})
	})
}

// TestGoodbyeOnDeliberateClose: a stream its writer closes on purpose
// (Close, RemovePeer, a new address) ends with a goodbye, which gives no
// probe and no PeerGone even though the writer's address refuses.
func TestGoodbyeOnDeliberateClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(a, b *node)
	}{
		{"Close", func(a, _ *node) { a.tr.Close() }},
		{"RemovePeer", func(a, b *node) { a.tr.RemovePeer(b.id) }},
		{"SetPeer new address", func(a, b *node) { a.tr.SetPeer(b.id, "127.0.0.1:1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothModes(t, func(t *testing.T, start starter) {
				g := new(gone)
				a := start(t, 1)
				b := start(t, 2, withPeerGone(g))
				b.tr.SetPeer(a.id, refusingAddr(t)) // as if a's process were gone
				streamUp(t, a, b)
				tc.close(a, b)
				e := waitEnds(t, b, "a goodbye", func(e StreamEnds) bool { return e.Goodbyes > 0 || e.EOFs > 0 || e.Resets > 0 })
				if e.Goodbyes != 1 || e.Resets != 0 {
					t.Errorf("StreamEnds = %+v, want 1 goodbye", e)
				}
				eventually(t, "no probe running", func() bool { return probeIdle(b, a.id) })
				b.tr.Close()
				noProbe(t, b, g)
			})
		})
	}
}

// crashAndProbe starts a's stream to b (b knows a's address), then ends
// a's process as a kill -9 would (its listener closes, and its streams,
// dialled through rc, end with a FIN), waits for b's probe to settle,
// closes b, and checks that g heard PeerGone once, about a.
func crashAndProbe(t *testing.T, a, b *node, rc *rawConns, g *gone) {
	t.Helper()
	b.tr.SetPeer(a.id, a.addr())
	streamUp(t, a, b)
	if err := a.mux.Close(); err != nil {
		t.Fatal(err)
	}
	rc.crash(false)
	eventually(t, "the probe", func() bool { return probeSettled(b, a.id) })
	b.tr.Close()
	if ids := g.calls(); len(ids) != 1 || ids[0] != a.id {
		t.Errorf("PeerGone(%v), want [%d]", ids, a.id)
	}
}

// TestPeerGoneOnCrash: a stream that ends with a clean end of stream and
// no goodbye (the peer's kernel closing its sockets), from a peer whose
// port then refuses, gives PeerGone once.
func TestPeerGoneOnCrash(t *testing.T) {
	bothModes(t, func(t *testing.T, start starter) {
		g := new(gone)
		rc := new(rawConns)
		a := start(t, 1, withDial(rc))
		b := start(t, 2, withPeerGone(g))
		crashAndProbe(t, a, b, rc, g)
		if e := b.tr.StreamEnds(); e != (StreamEnds{EOFs: 1, ProbesRefused: 1}) {
			t.Errorf("StreamEnds = %+v, want one end without a goodbye and one refused probe", e)
		}
	})
}

// TestPeerGoneOverASlowLink: on a link with a long round trip, the
// refusal that proves a process gone comes back long after the end of its
// stream; the probe waits for it as long as any dial (DialTimeout), so the
// proof is not lost to a shorter probe deadline (it was 200ms: a link with
// 100±50ms of delay each way lost half the proofs).
func TestPeerGoneOverASlowLink(t *testing.T) {
	const rtt = 400 * time.Millisecond // twice the old probe deadline
	g := new(gone)
	rc := new(rawConns)
	a := startNode(t, 1, withDial(rc))
	b := startNode(t, 2, withPeerGone(g), func(c *Config) {
		c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			select { // the SYN's round trip
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(rtt):
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	})
	crashAndProbe(t, a, b, rc, g)
	if e := b.tr.StreamEnds(); e.ProbesRefused != 1 || e.ProbesFailed != 0 {
		t.Errorf("StreamEnds = %+v, want one refused probe", e)
	}
	// The consensus core spaces the survivors' campaigns by it.
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.roundTrips) != 1 || g.roundTrips[0] < rtt || g.roundTrips[0] > 2*rtt {
		t.Errorf("PeerGone's round trips %v, want one of about %v (the refused connect's)", g.roundTrips, rtt)
	}
}

// TestPeerGoneAfterResetConnects: a dying listener resets the connects in
// its backlog before its port refuses; the probe tries again after a
// reset, so the refusal that follows is still found (a kill -9 on
// loopback showed it: the first connect was reset and the probe gave up).
func TestPeerGoneAfterResetConnects(t *testing.T) {
	g := new(gone)
	rc := new(rawConns)
	a := startNode(t, 1, withDial(rc))
	b := startNode(t, 2, withPeerGone(g))
	var dials atomic.Int32
	b.tr.dialProbe = func(string) error {
		if dials.Add(1) <= 2 {
			return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNRESET)}
		}
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	b.tr.SetPeer(a.id, a.addr())
	streamUp(t, a, b)
	rc.crash(false)
	eventually(t, "the probe", func() bool { return probeSettled(b, a.id) })
	b.tr.Close()
	if n := dials.Load(); n != 3 {
		t.Errorf("%d connects, want 3 (two resets, then the refusal)", n)
	}
	if ids := g.calls(); len(ids) != 1 || ids[0] != a.id {
		t.Errorf("PeerGone(%v), want [%d]", ids, a.id)
	}
}

// TestNoPeerGoneWhilePortAccepts: the same end of stream from a peer whose
// port still accepts gives a probe and nothing else.
func TestNoPeerGoneWhilePortAccepts(t *testing.T) {
	bothModes(t, func(t *testing.T, start starter) {
		g := new(gone)
		rc := new(rawConns)
		a := start(t, 1, withDial(rc))
		b := start(t, 2, withPeerGone(g))
		b.tr.SetPeer(a.id, a.addr())
		streamUp(t, a, b)
		rc.crash(false) // a's listener stays open
		eventually(t, "the probe", func() bool { return probeSettled(b, a.id) })
		b.tr.Close()
		if e := b.tr.StreamEnds(); e != (StreamEnds{EOFs: 1, ProbesAccepted: 1}) {
			t.Errorf("StreamEnds = %+v, want one end without a goodbye and one accepted probe", e)
		}
		if ids := g.calls(); len(ids) != 0 {
			t.Errorf("PeerGone(%v), want no call", ids)
		}
	})
}

// TestNoPeerGoneOnReset: a stream that ends with a reset is no proof,
// even from a peer whose port refuses: no probe, no PeerGone.
func TestNoPeerGoneOnReset(t *testing.T) {
	bothModes(t, func(t *testing.T, start starter) {
		g := new(gone)
		rc := new(rawConns)
		a := start(t, 1, withDial(rc))
		b := start(t, 2, withPeerGone(g))
		b.tr.SetPeer(a.id, refusingAddr(t))
		streamUp(t, a, b)
		rc.crash(true)
		waitEnds(t, b, "the reset", func(e StreamEnds) bool { return e.Resets > 0 || e.EOFs > 0 })
		eventually(t, "no probe running", func() bool { return probeIdle(b, a.id) })
		b.tr.Close()
		if e := b.tr.StreamEnds(); e.Resets != 1 {
			t.Errorf("StreamEnds = %+v, want 1 reset", e)
		}
		noProbe(t, b, g)
	})
}

// TestWriteTimeoutResets: a writer whose write times out (the reader
// stopped reading) closes with a reset, which its reader sees as such: no
// probe, no PeerGone, though the writer's address refuses.
func TestWriteTimeoutResets(t *testing.T) {
	bothModes(t, func(t *testing.T, start starter) {
		g := new(gone)
		gate := make(chan struct{})
		var blocked atomic.Bool
		var once sync.Once
		release := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(release)
		a := start(t, 1, withDial(&rawConns{maxDial: 1})) // no second stream
		a.tr.writeTimeout = 100 * time.Millisecond
		b := start(t, 2, withPeerGone(g), func(c *Config) {
			c.Deliver = func(raftpb.Message) {
				blocked.Store(true)
				<-gate
			}
		})
		b.tr.SetPeer(a.id, refusingAddr(t))
		a.tr.SetPeer(b.id, b.addr())
		big := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: make([]byte, 256<<10)}}}
		// Fill the socket buffers until the write times out.
		deadline := time.Now().Add(waitTimeout)
		for !a.logs.contains("raft stream to peer broke") {
			if time.Now().After(deadline) {
				t.Fatal("a's write never timed out")
			}
			a.tr.Send([]raftpb.Message{big})
			time.Sleep(time.Millisecond)
		}
		if !blocked.Load() {
			t.Fatal("the stream broke before b delivered anything")
		}
		release()
		eventually(t, "the stream's end", func() bool {
			b.tr.mu.RLock()
			defer b.tr.mu.RUnlock()
			return b.tr.latest[a.id] == nil
		})
		e := b.tr.StreamEnds()
		if !a.logs.contains("timeout") {
			t.Errorf("a's stream broke for another reason than a write time-out")
		}
		if e.Resets != 1 {
			t.Errorf("StreamEnds = %+v, want 1 reset", e)
		}
		eventually(t, "no probe running", func() bool { return probeIdle(b, a.id) })
		b.tr.Close()
		noProbe(t, b, g)
	})
}

// TestResetCloseUnderTLS: resetClose resets the TCP connection under a
// TLS client connection.
func TestResetCloseUnderTLS(t *testing.T) {
	ln := listenLocal(t)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer s.Close()
	// The TLS client need not have shaken hands: resetClose only unwraps it.
	resetClose(tls.Client(c, &tls.Config{ServerName: "x"}))
	s.SetReadDeadline(time.Now().Add(waitTimeout))
	var b [1]byte
	if _, err := s.Read(b[:]); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after resetClose: %v, want ECONNRESET", err)
	}
}

// childEnvParent, set to the parent's address, makes the test binary the
// helper process of TestPeerGoneAfterKill (see TestMain).
const childEnvParent = "QCLUSTER_TRANSPORT_TEST_PARENT"

// runChild is the helper process: a Mux and Transport of node 1 on
// 127.0.0.1:0 that streams heartbeats to node 2 at the parent's address
// and prints its own address; it runs until killed.
func runChild(parent string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	tr := New(Config{LocalID: 1, ClusterName: "test", Deliver: func(raftpb.Message) {}})
	mux := NewMux(ln, MuxOptions{})
	mux.Handle(RaftPreamble, tr.HandleStream)
	go mux.Serve()
	tr.SetPeer(2, parent)
	fmt.Println("addr", ln.Addr().String())
	for i := uint64(1); ; i++ {
		tr.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 1, Commit: i}})
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPeerGoneAfterKill kills (SIGKILL) a real process whose Transport
// streams to this one, and waits for PeerGone; it logs how long that
// took (no bound: the machine may be loaded).
func TestPeerGoneAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	const trials = 10
	var delays []time.Duration
	for range trials {
		delays = append(delays, killOnce(t))
	}
	slices.Sort(delays)
	rank := func(p int) time.Duration { return delays[max((p*trials+99)/100, 1)-1] }
	t.Logf("kill -9 -> PeerGone over %d trials: p50 %v, p99 %v, max %v (all: %v)", trials, rank(50), rank(99), delays[trials-1], delays)
}

func killOnce(t *testing.T) time.Duration {
	t.Helper()
	g := new(gone)
	b := startNode(t, 2, withPeerGone(g))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnvParent+"="+b.addr())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
		}
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper process: %v", err)
	}
	var addr string
	if _, err := fmt.Sscanf(line, "addr %s", &addr); err != nil {
		t.Fatalf("helper process said %q", line)
	}
	b.tr.SetPeer(1, addr)
	eventually(t, "a message from the helper process", func() bool { return b.in.len() > 0 })
	killedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	deadline := time.Now().Add(waitTimeout)
	for len(g.calls()) == 0 {
		if time.Now().After(deadline) {
			b.logs.mu.Lock()
			lines := strings.Join(*b.logs.lines, "\n")
			b.logs.mu.Unlock()
			t.Fatalf("no PeerGone within %v of kill -9 (StreamEnds %+v); log:\n%s", waitTimeout, b.tr.StreamEnds(), lines)
		}
		time.Sleep(time.Millisecond)
	}
	g.mu.Lock()
	d := g.first.Sub(killedAt)
	g.mu.Unlock()
	b.tr.Close()
	if ids := g.calls(); len(ids) != 1 || ids[0] != 1 {
		t.Errorf("PeerGone(%v), want [1]", ids)
	}
	t.Logf("kill -9 -> PeerGone: %v (StreamEnds %+v)", d, b.tr.StreamEnds())
	return d
}

// TestCloseWhileWritingResets: Close while the writer is stuck in a write
// (its reader stopped reading) cuts the write short with a reset: Close
// returns without waiting for the write time-out, and the reader sees a
// reset, not a clean end.
func TestCloseWhileWritingResets(t *testing.T) {
	bothModes(t, func(t *testing.T, start starter) {
		g := new(gone)
		gate := make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(gate) }) }
		t.Cleanup(release)
		a := start(t, 1, withDial(&rawConns{maxDial: 1}))
		var blocked atomic.Bool
		b := start(t, 2, withPeerGone(g), func(c *Config) {
			c.Deliver = func(raftpb.Message) {
				blocked.Store(true)
				<-gate
			}
		})
		b.tr.SetPeer(a.id, refusingAddr(t))
		a.tr.SetPeer(b.id, b.addr())
		eventually(t, "b's reader blocked in Deliver", func() bool {
			a.tr.Send([]raftpb.Message{msg(1, 2, 1)})
			return blocked.Load()
		})
		big := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: make([]byte, 256<<10)}}}
		// Send until the writer is stuck in a write (the buffers between
		// it and b's reader are full).
		deadline := time.Now().Add(waitTimeout)
		for !writerStuck() {
			if time.Now().After(deadline) {
				t.Fatal("a's writer never blocked in a write")
			}
			a.tr.Send([]raftpb.Message{big})
			time.Sleep(time.Millisecond)
		}
		within(t, writeTimeout/2, "Close", func() { a.tr.Close() })
		release()
		eventually(t, "the stream's end", func() bool {
			b.tr.mu.RLock()
			defer b.tr.mu.RUnlock()
			return b.tr.latest[a.id] == nil
		})
		if e := b.tr.StreamEnds(); e.Resets != 1 {
			t.Errorf("StreamEnds = %+v, want 1 reset", e)
			b.logs.mu.Lock()
			t.Logf("b's log:\n%s", strings.Join(*b.logs.lines, "\n"))
			b.logs.mu.Unlock()
		}
		eventually(t, "no probe running", func() bool { return probeIdle(b, a.id) })
		b.tr.Close()
		noProbe(t, b, g)
	})
}

// writerStuck reports whether some goroutine of a peer's writer is
// blocked waiting for a write to the network to make progress.
func writerStuck() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*peer).stream") && strings.Contains(g, "waitWrite") {
			return true
		}
	}
	return false
}
