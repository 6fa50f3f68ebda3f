package membership

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/qcluster/qcluster/internal/transport"
)

// testTransport is a Transport on a Mux on 127.0.0.1, with streams routed
// to it.
type testTransport struct {
	*Transport
	mux  *transport.Mux
	addr string
}

func newTestTransport(t *testing.T, filter func(string) bool, maxStreams int) *testTransport {
	t.Helper()
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTransport(TransportConfig{
			BindAddr:          "127.0.0.1",
			Port:              ln.Addr().(*net.TCPAddr).Port,
			Filter:            filter,
			MaxInboundStreams: maxStreams,
		})
		if err != nil && attempt < 20 {
			ln.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		mux := transport.NewMux(ln, transport.MuxOptions{})
		mux.Handle(GossipPreamble, tr.HandleStream)
		served := make(chan struct{})
		go func() { defer close(served); mux.Serve() }()
		t.Cleanup(func() {
			tr.Shutdown()
			mux.Close()
			<-served
		})
		return &testTransport{Transport: tr, mux: mux, addr: ln.Addr().String()}
	}
}

func TestTransportPackets(t *testing.T) {
	var drop atomic.Bool
	var refused atomic.Int32
	a := newTestTransport(t, nil, 0)
	b := newTestTransport(t, func(string) bool {
		if drop.Load() {
			refused.Add(1)
			return false
		}
		return true
	}, 0)

	if a.Port() != a.mux.Addr().(*net.TCPAddr).Port {
		t.Fatalf("UDP port %d differs from TCP port %v", a.Port(), a.mux.Addr())
	}
	before := time.Now()
	sent, err := a.WriteToAddress([]byte("hello"), memberlist.Address{Addr: b.addr, Name: "b"})
	if err != nil || sent.Before(before) {
		t.Fatalf("WriteToAddress = %v, %v", sent, err)
	}
	select {
	case p := <-b.PacketCh():
		if string(p.Buf) != "hello" || p.From.String() != a.addr || p.Timestamp.Before(before) {
			t.Errorf("got %q from %v at %v", p.Buf, p.From, p.Timestamp)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no packet")
	}

	// The filter drops b's outgoing packets silently and a's packets to b
	// on arrival.
	drop.Store(true)
	if _, err := b.WriteTo([]byte("dropped"), a.addr); err != nil {
		t.Errorf("filtered WriteTo = %v, want silent success", err)
	}
	if _, err := a.WriteTo([]byte("dropped too"), b.addr); err != nil {
		t.Fatal(err)
	}
	if _, err := b.DialTimeout(a.addr, time.Second); err == nil || !errors.Is(err, errFiltered) {
		t.Errorf("filtered dial = %v", err)
	}
	// b's outbound packet, its dial and a's packet on arrival.
	eventually(t, "b to refuse a's packet", func() bool { return refused.Load() == 3 })
	drop.Store(false)
	if _, err := b.WriteTo([]byte("after"), a.addr); err != nil {
		t.Fatal(err)
	}
	if p := <-a.PacketCh(); string(p.Buf) != "after" {
		t.Errorf("a got %q, want the packet sent after the filter lifted", p.Buf)
	}
	if _, err := a.WriteTo([]byte("after"), b.addr); err != nil {
		t.Fatal(err)
	}
	if p := <-b.PacketCh(); string(p.Buf) != "after" {
		t.Errorf("b got %q, want the packet sent after the filter lifted", p.Buf)
	}
}

func TestTransportStreams(t *testing.T) {
	a := newTestTransport(t, nil, 0)
	b := newTestTransport(t, nil, 1)

	c, err := a.DialAddressTimeout(memberlist.Address{Addr: b.addr, Name: "b"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var in net.Conn
	select {
	case in = <-b.StreamCh():
	case <-time.After(waitTimeout):
		t.Fatal("no inbound stream")
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(in, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("inbound read %q, %v (the preamble must be consumed)", buf, err)
	}
	if _, err := in.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("outbound read %q, %v", buf, err)
	}

	// b takes one stream at a time: a second one is closed at once.
	c2, err := a.DialTimeout(b.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := c2.Read(buf); err != io.EOF {
		t.Errorf("stream over the limit: read %v, want EOF", err)
	}
	c2.Close()

	// Shutdown closes the streams memberlist still holds, on both sides,
	// and is idempotent.
	b.Shutdown()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Read(buf); err == nil {
		t.Error("stream still open after the peer's Shutdown")
	}
	if _, err := in.Write([]byte("x")); err == nil {
		t.Error("inbound stream writable after Shutdown")
	}
	if err := b.Shutdown(); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
	a.Shutdown()
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("outbound stream writable after Shutdown")
	}
	if _, err := a.WriteTo([]byte("x"), b.addr); !errors.Is(err, errTransportClosed) {
		t.Errorf("WriteTo after Shutdown = %v", err)
	}
	if _, err := a.DialTimeout(b.addr, time.Second); !errors.Is(err, errTransportClosed) {
		t.Errorf("DialTimeout after Shutdown = %v", err)
	}
}

func TestFinalAdvertiseAddr(t *testing.T) {
	a := newTestTransport(t, nil, 0)
	ip, port, err := a.FinalAdvertiseAddr("", 0)
	if err != nil || ip.String() != "127.0.0.1" || port != a.Port() {
		t.Errorf("defaults: %v %d %v", ip, port, err)
	}
	ip, port, err = a.FinalAdvertiseAddr("10.1.2.3", 9000)
	if err != nil || ip.String() != "10.1.2.3" || len(ip) != 4 || port != 9000 {
		t.Errorf("explicit: %v %d %v", ip, port, err)
	}
	if _, _, err := a.FinalAdvertiseAddr("not-an-ip", 1); err == nil {
		t.Error("bad advertise address accepted")
	}
}
