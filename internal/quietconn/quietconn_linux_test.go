package quietconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pair returns a quiet client connection and the plain server end of a
// loopback TCP connection.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		acc <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	q, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) is not a *Conn", c)
	}
	t.Cleanup(func() { q.Close(); r.c.Close() })
	return q, r.c.(*net.TCPConn)
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(net.Pipe) = %T, want the pipe itself", got)
	}
}

func TestReadWrite(t *testing.T) {
	q, s := pair(t)
	if q.NetConn() != net.Conn(q.TCPConn) {
		t.Fatal("NetConn is not the TCP connection underneath")
	}
	if n, err := q.Write([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(q, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("Read %q, %v", buf, err)
	}
	if n, err := q.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	// The end of the stream is io.EOF, as net.TCPConn says it.
	s.CloseWrite()
	if n, err := q.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end = %d, %v; want 0, io.EOF", n, err)
	}
}

// A write larger than the socket buffers returns only when a slow reader
// has taken all of it: the EAGAIN path waits in the poller and resumes.
func TestLargeWriteToSlowReader(t *testing.T) {
	q, s := pair(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	got := make(chan []byte, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 64<<10)
		for b.Len() < len(want) {
			time.Sleep(time.Millisecond)
			n, err := s.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.Bytes()
	}()
	if n, err := q.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("the reader got other bytes than were written")
	}
}

func TestDeadlines(t *testing.T) {
	q, _ := pair(t)
	q.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := q.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v; want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read's error %v is not a read *net.OpError", err)
	}
	// Nobody reads the other end: the write fills the buffers and stops
	// at its deadline with the count written.
	big := make([]byte, 64<<20)
	q.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := q.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= len(big) {
		t.Fatalf("Write past its deadline = %d, %v; want part of it and a timeout", n, err)
	}
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("Write's error %v is not a write *net.OpError", err)
	}
}

// Close unblocks a Read waiting in the poller with net.ErrClosed.
func TestCloseUnblocksRead(t *testing.T) {
	q, _ := pair(t)
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() {
		defer wg.Done()
		_, err = q.Read(make([]byte, 1))
	}()
	// Close only once the Read waits in the poller, so that the test is
	// about unblocking it, not about a Read that starts after Close.
	deadline := time.Now().Add(10 * time.Second)
	for !readWaiting() {
		if time.Now().After(deadline) {
			t.Fatal("the Read did not wait in the network poller within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	q.Close()
	wg.Wait()
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a closed connection: %v; want net.ErrClosed", err)
	}
}

// readWaiting reports whether a goroutine is parked in the network
// poller inside Conn.Read.
func readWaiting() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[IO wait") && strings.Contains(g, "quietconn.(*Conn).Read(") {
			return true
		}
	}
	return false
}

// A reset by the peer is the system call's ECONNRESET, as the transport
// tells a reset from a clean end.
func TestReset(t *testing.T) {
	q, s := pair(t)
	s.SetLinger(0)
	s.Close()
	_, err := q.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset: %v; want ECONNRESET", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read's error %v is not a read *net.OpError", err)
	}
}

// Read and Write allocate nothing, as net.TCPConn's do: they are on the
// path of every raft message and HTTP request.
func TestNoAllocations(t *testing.T) {
	q, s := pair(t)
	buf, sbuf := make([]byte, 50), make([]byte, 50)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := s.Write(sbuf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(q, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, sbuf); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("a round of Read and Write allocates %.1f times; want 0", a)
	}
}

// Concurrent Reads and Writes on one Conn are safe, as on a net.Conn:
// each direction's calls take turns, and no byte is lost or read twice.
func TestConcurrentUse(t *testing.T) {
	q, s := pair(t)
	const writers, each = 4, 200
	go func() {
		io.Copy(s, s) // echo until q's CloseWrite, then end the stream
		s.CloseWrite()
	}()
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := []byte("0123456789")
			for range each {
				if _, err := q.Write(b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var got atomic.Int64
	var rwg sync.WaitGroup
	for range 2 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			b := make([]byte, 7)
			for {
				n, err := q.Read(b)
				got.Add(int64(n))
				if err != nil {
					if err != io.EOF {
						t.Error(err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	q.CloseWrite()
	rwg.Wait()
	if want := int64(writers * each * 10); got.Load() != want {
		t.Fatalf("read %d bytes of %d echoed", got.Load(), want)
	}
}
