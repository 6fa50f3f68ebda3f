package transport

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// DefaultPreambleTimeout is the default for [MuxOptions.PreambleTimeout].
const DefaultPreambleTimeout = 5 * time.Second

// MuxOptions configures a [Mux]. The zero value is usable.
type MuxOptions struct {
	// PreambleTimeout bounds how long the Mux waits for the first bytes of a
	// connection before giving up on it. Zero means DefaultPreambleTimeout.
	PreambleTimeout time.Duration
	// Logger receives diagnostics (refused connections, accept errors).
	// Nil discards them.
	Logger *slog.Logger
}

// Mux multiplexes one net.Listener between several protocols that share a
// port. A connection whose first bytes equal a registered preamble goes to
// that preamble's handler, with the preamble consumed; anything else (an HTTP
// request, say) goes to [Mux.HTTPListener], with the peeked bytes replayed.
//
// Each accepted connection is classified in its own goroutine, so a slow or
// silent client never blocks Accept. Peeking has a deadline,
// [MuxOptions.PreambleTimeout]: the Mux reads only while the bytes received
// so far are a proper prefix of some preamble, so a connection is handed to
// HTTP as soon as it sends one byte that cannot continue a preamble, while a
// connection that stays silent (or stops in the middle of a preamble) is
// closed at the deadline.
//
// Design note, TLS: a TLS ClientHello starts with 0x16 0x03, which cannot
// start a preamble (preambles are printable ASCII), so today it is routed to
// HTTP. A later TLS layer will terminate such connections here, inside the
// classifying goroutine, and dispatch the decrypted inner stream by its
// negotiated ALPN protocol to the very same handlers (one ALPN protocol ID per
// registered preamble, plus "http/1.1" and "h2" for the HTTP listener). Handlers
// therefore only ever see a net.Conn positioned after the preamble and must
// not assume it is a *net.TCPConn.
type Mux struct {
	ln      net.Listener
	timeout time.Duration
	log     *slog.Logger
	http    *muxListener

	// handlers is written by Handle before Serve and read-only afterwards.
	handlers []muxHandler
	maxLen   int // length of the longest preamble

	mu       sync.Mutex
	serving  bool
	closed   bool
	conns    map[net.Conn]struct{} // being classified or owned by a handler
	loopDone chan struct{}         // closed when Serve's accept loop returns
	done     chan struct{}         // closed by Close
	wg       sync.WaitGroup        // classifying and handler goroutines
}

type muxHandler struct {
	preamble []byte
	h        func(net.Conn)
}

// NewMux returns a Mux that will serve connections accepted from ln once
// [Mux.Serve] is called. The Mux takes ownership of ln.
func NewMux(ln net.Listener, opts MuxOptions) *Mux {
	if opts.PreambleTimeout <= 0 {
		opts.PreambleTimeout = DefaultPreambleTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mux{
		ln:       ln,
		timeout:  opts.PreambleTimeout,
		log:      log,
		conns:    make(map[net.Conn]struct{}),
		loopDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.http = &muxListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	return m
}

// Handle registers h for connections that start with preamble. h runs in a
// goroutine owned by the Mux and receives the connection positioned just
// after the preamble; the connection is closed when h returns, and
// [Mux.Close] closes it (so h's reads fail) and waits for h to return.
//
// Handle must be called before Serve. It panics if preamble is empty, or if
// it equals, is a prefix of, or has as a prefix an already registered
// preamble, or if Serve has already started.
func (m *Mux) Handle(preamble string, h func(net.Conn)) {
	if preamble == "" || h == nil {
		panic("transport: Mux.Handle with empty preamble or nil handler")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.serving {
		panic("transport: Mux.Handle called after Serve")
	}
	for _, o := range m.handlers {
		if strings.HasPrefix(preamble, string(o.preamble)) || strings.HasPrefix(string(o.preamble), preamble) {
			panic(fmt.Sprintf("transport: preamble %q conflicts with registered preamble %q", preamble, o.preamble))
		}
	}
	m.handlers = append(m.handlers, muxHandler{preamble: []byte(preamble), h: h})
	m.maxLen = max(m.maxLen, len(preamble))
}

// HTTPListener returns the listener that yields every connection not claimed
// by a preamble, with its first bytes replayed; pass it to http.Server.Serve.
// Its Accept returns net.ErrClosed once it or the Mux is closed. Closing it
// does not close the Mux; connections classified as HTTP after that are
// closed.
func (m *Mux) HTTPListener() net.Listener { return m.http }

// Addr returns the address of the underlying listener.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Serve accepts connections until Close is called, and then returns nil. It
// returns a non-nil error if the underlying listener fails permanently (for
// instance, it was closed by someone else) or if Serve is called twice.
func (m *Mux) Serve() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	if m.serving {
		m.mu.Unlock()
		return errors.New("transport: Mux.Serve called twice")
	}
	m.serving = true
	m.mu.Unlock()
	defer close(m.loopDone)

	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if m.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("transport: mux listener: %w", err)
			}
			// Transient failures (EMFILE, ECONNABORTED, ...): retry with
			// backoff rather than spinning or giving up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("mux accept failed; retrying", "err", err, "delay", backoff)
			select {
			case <-time.After(backoff):
			case <-m.done:
				return nil
			}
			continue
		}
		backoff = 0
		if !m.track(c) {
			c.Close()
			return nil
		}
		go m.classify(c)
	}
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// track records c as owned by the Mux and accounts for the goroutine that
// will serve it. It reports false if the Mux is closed.
func (m *Mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	m.wg.Add(1)
	return true
}

func (m *Mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

// Close stops the Mux: it closes the listener, the HTTP listener, every
// connection being classified or handed to a preamble handler, and waits for
// the accept loop and all handler goroutines to return. Connections already
// accepted from the HTTP listener belong to its user and are left alone.
// Close is idempotent and returns the error from closing the listener.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.waitLoop()
		m.wg.Wait()
		return nil
	}
	m.closed = true
	serving := m.serving
	close(m.done)
	conns := make([]net.Conn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()

	err := m.ln.Close()
	m.http.Close()
	for _, c := range conns {
		c.Close()
	}
	if serving {
		<-m.loopDone
	}
	m.wg.Wait()
	return err
}

// waitLoop returns a channel that is closed once the accept loop (if it was
// ever started) has returned. Callers must hold no lock.
func (m *Mux) waitLoop() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.serving {
		return m.loopDone
	}
	c := make(chan struct{})
	close(c)
	return c
}

// classify peeks at c's first bytes and hands it to a preamble handler or to
// the HTTP listener. It runs in its own goroutine, accounted in m.wg.
func (m *Mux) classify(c net.Conn) {
	defer m.wg.Done()
	if len(m.handlers) == 0 {
		m.untrack(c)
		m.toHTTP(c, nil)
		return
	}
	if err := c.SetReadDeadline(time.Now().Add(m.timeout)); err != nil {
		m.drop(c, "set deadline", err)
		return
	}
	buf := make([]byte, m.maxLen)
	n := 0
	for {
		k, err := c.Read(buf[n:])
		n += k
		switch i, v := matchPreamble(m.handlers, buf[:n]); v {
		case matchFound:
			if err := c.SetReadDeadline(time.Time{}); err != nil {
				m.drop(c, "clear deadline", err)
				return
			}
			h := m.handlers[i]
			m.serveHandler(replay(c, buf[len(h.preamble):n]), c, h.h)
			return
		case matchNone:
			if err := c.SetReadDeadline(time.Time{}); err != nil {
				m.drop(c, "clear deadline", err)
				return
			}
			m.untrack(c)
			m.toHTTP(c, buf[:n])
			return
		}
		if err != nil {
			m.drop(c, "waiting for preamble", err)
			return
		}
	}
}

// serveHandler runs h on rc (which wraps the tracked connection c) and closes
// c when h returns.
func (m *Mux) serveHandler(rc, c net.Conn, h func(net.Conn)) {
	defer func() {
		m.untrack(c)
		c.Close()
	}()
	h(rc)
}

func (m *Mux) drop(c net.Conn, what string, err error) {
	m.untrack(c)
	c.Close()
	if !m.isClosed() {
		m.log.Debug("mux closed connection", "remote", c.RemoteAddr(), "while", what, "err", err)
	}
}

// toHTTP hands c, with peeked replayed first, to the HTTP listener, or closes
// it if the HTTP listener or the Mux is closed first.
func (m *Mux) toHTTP(c net.Conn, peeked []byte) {
	select {
	case m.http.ch <- replay(c, peeked):
	case <-m.http.done:
		c.Close()
	case <-m.done:
		c.Close()
	}
}

type matchResult int

const (
	matchMore  matchResult = iota // b is a proper prefix of some preamble
	matchFound                    // b starts with handlers[i].preamble
	matchNone                     // b can start no preamble
)

// matchPreamble classifies the first bytes b of a connection against the
// registered preambles (none of which is a prefix of another).
func matchPreamble(hs []muxHandler, b []byte) (int, matchResult) {
	res := matchNone
	for i, h := range hs {
		switch {
		case bytes.HasPrefix(b, h.preamble):
			return i, matchFound
		case bytes.HasPrefix(h.preamble, b):
			res = matchMore
		}
	}
	return -1, res
}

// replayConn is a net.Conn whose first reads return bytes already consumed
// from the underlying connection.
type replayConn struct {
	net.Conn
	buf []byte
}

// replay returns c with b (copied) served before c's own data.
func replay(c net.Conn, b []byte) net.Conn {
	if len(b) == 0 {
		return c
	}
	return &replayConn{Conn: c, buf: bytes.Clone(b)}
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the underlying connection when it supports it, as
// net/http does for a graceful close.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// muxListener is the net.Listener returned by Mux.HTTPListener.
type muxListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *muxListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *muxListener) Addr() net.Addr { return l.addr }
