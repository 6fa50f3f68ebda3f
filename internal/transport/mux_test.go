package transport

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// testMux is a Mux with an echo-style handler per preamble: each handler
// reports the bytes it reads (after the preamble) on a channel.
type testMux struct {
	*Mux
	got   chan string // "preamble:data" per handled connection
	serve chan error
}

func startTestMux(t *testing.T, opts MuxOptions, preambles ...string) *testMux {
	t.Helper()
	m := &testMux{Mux: NewMux(listenLocal(t), opts), got: make(chan string, 16), serve: make(chan error, 1)}
	for _, p := range preambles {
		m.Handle(p, func(c net.Conn) {
			b, _ := io.ReadAll(c) // until the client or Close ends it
			m.got <- p + string(b)
		})
	}
	go func() { m.serve <- m.Serve() }()
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-m.serve; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return m
}

func dial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// acceptHTTP accepts one connection from the HTTP listener.
func acceptHTTP(t *testing.T, m *Mux) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := m.HTTPListener().Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.c
	case <-time.After(waitTimeout):
		m.HTTPListener().Close() // unblock the goroutine
		t.Fatal("no HTTP connection")
		return nil
	}
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMuxDispatch(t *testing.T) {
	m := startTestMux(t, MuxOptions{}, "QCRAFT1\n", "QCGOSSIP1\n")

	// Preamble and payload in one segment: the payload is not lost.
	c := dial(t, m.Addr())
	io.WriteString(c, "QCGOSSIP1\nhello")
	c.(*net.TCPConn).CloseWrite()
	if got := <-m.got; got != "QCGOSSIP1\nhello" {
		t.Errorf("handler got %q", got)
	}
	c.Close()

	// Preamble split across writes.
	c = dial(t, m.Addr())
	io.WriteString(c, "QCR")
	time.Sleep(10 * time.Millisecond) // not synchronization: just splits segments
	io.WriteString(c, "AFT1\nx")
	c.(*net.TCPConn).CloseWrite()
	if got := <-m.got; got != "QCRAFT1\nx" {
		t.Errorf("handler got %q", got)
	}
	c.Close()

	// Diverges from a preamble after a shared prefix: HTTP, bytes replayed.
	c = dial(t, m.Addr())
	defer c.Close()
	io.WriteString(c, "QCRX rest")
	h := acceptHTTP(t, m.Mux)
	defer h.Close()
	if got := readN(t, h, 9); got != "QCRX rest" {
		t.Errorf("HTTP side read %q", got)
	}
	if h.LocalAddr().String() != m.Addr().String() || m.HTTPListener().Addr().String() != m.Addr().String() {
		t.Error("addresses differ")
	}
}

func TestMuxHTTPAfterOneByte(t *testing.T) {
	m := startTestMux(t, MuxOptions{PreambleTimeout: time.Hour}, RaftPreamble)
	c := dial(t, m.Addr())
	defer c.Close()
	io.WriteString(c, "G") // cannot start a preamble: HTTP without waiting
	h := acceptHTTP(t, m.Mux)
	defer h.Close()
	if got := readN(t, h, 1); got != "G" {
		t.Fatalf("read %q", got)
	}
	io.WriteString(c, "ET / HTTP/1.1\r\n")
	if got := readN(t, h, 15); got != "ET / HTTP/1.1\r\n" {
		t.Fatalf("read %q", got)
	}
	io.WriteString(h, "ok")
	if got := readN(t, c, 2); got != "ok" {
		t.Fatalf("client read %q", got)
	}
}

func TestMuxSilentAndPartialConnectionsClosed(t *testing.T) {
	m := startTestMux(t, MuxOptions{PreambleTimeout: 50 * time.Millisecond}, RaftPreamble)
	httpConns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := m.HTTPListener().Accept()
			if err != nil {
				close(httpConns)
				return
			}
			httpConns <- c
		}
	}()
	silent := dial(t, m.Addr())
	partial := dial(t, m.Addr())
	io.WriteString(partial, "QCRAF")
	expectClosed(t, silent)
	expectClosed(t, partial)
	m.Close()
	for c := range httpConns {
		c.Close()
		t.Error("silent or partial connection handed to HTTP")
	}
}

func TestMuxSlowClientDoesNotBlockAccept(t *testing.T) {
	m := startTestMux(t, MuxOptions{PreambleTimeout: time.Hour}, RaftPreamble)
	silent := dial(t, m.Addr())
	defer silent.Close()
	c := dial(t, m.Addr())
	io.WriteString(c, RaftPreamble+"a")
	c.(*net.TCPConn).CloseWrite()
	select {
	case got := <-m.got:
		if got != RaftPreamble+"a" {
			t.Errorf("handler got %q", got)
		}
	case <-time.After(waitTimeout):
		t.Fatal("second connection was not served while the first is silent")
	}
	c.Close()
}

func TestMuxClose(t *testing.T) {
	m := NewMux(listenLocal(t), MuxOptions{PreambleTimeout: time.Hour})
	entered := make(chan struct{})
	var handlerErr error
	m.Handle(RaftPreamble, func(c net.Conn) {
		close(entered)
		_, handlerErr = c.Read(make([]byte, 1)) // blocks until Close
	})
	serve := make(chan error, 1)
	go func() { serve <- m.Serve() }()

	handled := dial(t, m.Addr())
	defer handled.Close()
	io.WriteString(handled, RaftPreamble)
	<-entered
	silent := dial(t, m.Addr()) // being classified at Close
	defer silent.Close()
	accepted := make(chan error, 1)
	go func() {
		_, err := m.HTTPListener().Accept()
		accepted <- err
	}()

	within(t, 5*time.Second, "Mux.Close", func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if handlerErr == nil {
		t.Error("handler's read did not fail at Close")
	}
	if err := <-serve; err != nil {
		t.Errorf("Serve returned %v", err)
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("HTTPListener.Accept returned %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.Serve(); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	expectClosed(t, handled)
	expectClosed(t, silent)
}

func TestMuxCloseWithoutServe(t *testing.T) {
	ln := listenLocal(t)
	m := NewMux(ln, MuxOptions{})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener not closed: %v", err)
	}
}

func TestMuxServeFailsWhenListenerClosedUnderneath(t *testing.T) {
	ln := listenLocal(t)
	m := NewMux(ln, MuxOptions{})
	serve := make(chan error, 1)
	go func() { serve <- m.Serve() }()
	ln.Close()
	if err := <-serve; err == nil {
		t.Error("Serve returned nil after its listener was closed by someone else")
	}
	m.Close()
}

func TestMuxHTTPListenerClosedKeepsPreambles(t *testing.T) {
	m := startTestMux(t, MuxOptions{}, RaftPreamble)
	m.HTTPListener().Close()
	h := dial(t, m.Addr())
	io.WriteString(h, "GET / HTTP/1.1\r\n\r\n")
	expectClosed(t, h)

	c := dial(t, m.Addr())
	io.WriteString(c, RaftPreamble+"still")
	c.(*net.TCPConn).CloseWrite()
	if got := <-m.got; got != RaftPreamble+"still" {
		t.Errorf("handler got %q", got)
	}
	c.Close()
}

func TestMuxNoHandlersIsPlainHTTP(t *testing.T) {
	m := startTestMux(t, MuxOptions{})
	c := dial(t, m.Addr())
	defer c.Close()
	h := acceptHTTP(t, m.Mux) // before the client sends anything
	defer h.Close()
	io.WriteString(c, "x")
	if got := readN(t, h, 1); got != "x" {
		t.Errorf("read %q", got)
	}
}

func TestMuxHandlePanics(t *testing.T) {
	m := NewMux(listenLocal(t), MuxOptions{})
	defer m.Close()
	m.Handle("QCRAFT1\n", func(net.Conn) {})
	for _, p := range []string{"", "QCRAFT1\n", "QCRAFT", "QCRAFT1\nX"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%q) did not panic", p)
				}
			}()
			m.Handle(p, func(net.Conn) {})
		}()
	}
	m.Handle("QCGOSSIP1\n", func(net.Conn) {}) // shares a prefix only: fine
}

func TestMuxManyConcurrentClients(t *testing.T) {
	m := startTestMux(t, MuxOptions{}, RaftPreamble)
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", m.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			io.WriteString(c, RaftPreamble+"z")
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c) // until the handler returns and the Mux closes it
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case got := <-m.got:
			if got != RaftPreamble+"z" {
				t.Errorf("handler got %q", got)
			}
		case <-time.After(waitTimeout):
			t.Fatal("timeout")
		}
	}
	wg.Wait()
}
