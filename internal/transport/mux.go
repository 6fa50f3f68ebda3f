package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/loglimit"
	"github.com/qcluster/qcluster/internal/quietconn"
)

// Defaults for the zero fields of [MuxOptions].
const (
	// DefaultPreambleTimeout is the default for MuxOptions.PreambleTimeout.
	DefaultPreambleTimeout = 5 * time.Second
	// DefaultMaxConnsPerIP is the default for MuxOptions.MaxConnsPerIP.
	DefaultMaxConnsPerIP = 256
)

// ALPN protocol IDs a TLS Mux offers.
const (
	// ALPNPeer is negotiated by QCluster's own streams (raft, gossip,
	// metadata); the stream then starts with its preamble, inside TLS.
	ALPNPeer = "qcluster/1"
	// ALPNHTTP is negotiated by HTTPS clients; the connection goes to the
	// HTTP listener as a *tls.Conn, so http.Request.TLS is set.
	ALPNHTTP = "http/1.1"
)

// MuxOptions configures a [Mux]. The zero value is usable.
type MuxOptions struct {
	// PreambleTimeout bounds how long the Mux waits, from accepting a
	// connection, for its TLS handshake (when TLS is on) and its first
	// bytes, before closing it. Zero means DefaultPreambleTimeout.
	PreambleTimeout time.Duration

	// TLS, when set, makes every connection TLS: a connection whose first
	// byte is not a TLS handshake record is refused (an HTTP request gets a
	// plain-text 400 answer saying so) and counted in MuxStats.PlainText.
	// The Mux uses a clone whose NextProtos are ALPNPeer and ALPNHTTP;
	// the configuration must verify client certificates
	// (tls.VerifyClientCertIfGiven or stricter, with ClientCAs), as
	// pki.Credentials.ServerTLS does. Connections to preamble handlers
	// always need a verified client certificate; HTTP ones too, unless
	// AllowHTTPWithoutClientCert.
	TLS *tls.Config
	// AllowHTTPWithoutClientCert lets HTTPS clients without a client
	// certificate reach the HTTP listener (the API token then guards it).
	// When false (the default) the TLS handshake itself requires a client
	// certificate, so curl and browsers need one (curl --cert). Ignored
	// without TLS.
	AllowHTTPWithoutClientCert bool

	// MaxConnsPerIP bounds the connections open at once from one remote
	// IP address, whatever their protocol, from accept until closed (HTTP
	// connections count until the HTTP server closes them). Connections
	// beyond it are closed on arrival and counted in MuxStats.ConnLimited.
	// Zero means DefaultMaxConnsPerIP; negative means no limit.
	MaxConnsPerIP int

	// Logger receives diagnostics (refused connections, accept errors).
	// Refusals log at most one warning per kind per second; the rest go
	// to debug. Nil discards them.
	Logger *slog.Logger
}

// MuxStats are a Mux's cumulative connection counters.
type MuxStats struct {
	// Accepted counts connections accepted from the listener.
	Accepted uint64
	// ConnLimited counts connections closed on arrival because their IP
	// address already had MaxConnsPerIP open.
	ConnLimited uint64
	// Timeouts counts connections closed because their TLS handshake or
	// preamble did not complete within PreambleTimeout.
	Timeouts uint64
	// PlainText counts plain-text connections refused by a TLS Mux.
	PlainText uint64
	// HandshakeFailed counts failed TLS handshakes other than timeouts:
	// bad or missing client certificates, another cluster's peers, TLS
	// versions below 1.3, garbage.
	HandshakeFailed uint64
	// Unauthenticated counts TLS connections refused after the handshake
	// for want of a verified client certificate (when the TLS
	// configuration let one through without), or because ALPNPeer was
	// followed by no known preamble.
	Unauthenticated uint64
}

// muxCounters are MuxStats as atomics.
type muxCounters struct {
	accepted, connLimited, timeouts, plainText, handshakeFailed, unauthenticated atomic.Uint64
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
// With [MuxOptions.TLS], the Mux terminates TLS in that goroutine, within
// the same deadline, and then routes by the negotiated ALPN protocol:
// [ALPNPeer] (which QCluster's own streams offer) must come from a peer
// with a verified client certificate and continue with a registered
// preamble, inside TLS; anything else ([ALPNHTTP], or no protocol) is an
// HTTPS client and goes to the HTTP listener as the *tls.Conn itself, so
// that http.Request.TLS is set. Handlers therefore see a net.Conn
// positioned after the preamble, which may be TLS (see [ConnState]) and
// must not assume it is a *net.TCPConn.
//
// The Mux bounds the connections open at once per remote IP address
// ([MuxOptions.MaxConnsPerIP]) and counts what it refuses ([Mux.Stats]).
type Mux struct {
	ln       net.Listener
	timeout  time.Duration
	log      *slog.Logger
	http     *muxListener
	tls      *tls.Config // nil without TLS
	maxPerIP int         // <= 0: unlimited
	anonHTTP bool        // AllowHTTPWithoutClientCert
	stats    muxCounters
	warned   [numRefusals]loglimit.Limiter // one warning per kind per second

	// handlers is written by Handle before Serve and read-only afterwards.
	handlers []muxHandler
	maxLen   int // length of the longest preamble

	mu       sync.Mutex
	serving  bool
	closed   bool
	conns    map[net.Conn]struct{} // being classified or owned by a handler
	perIP    map[netip.Addr]int    // open connections per remote address
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
	if opts.MaxConnsPerIP == 0 {
		opts.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mux{
		ln:       ln,
		timeout:  opts.PreambleTimeout,
		log:      log,
		maxPerIP: opts.MaxConnsPerIP,
		anonHTTP: opts.AllowHTTPWithoutClientCert,
		conns:    make(map[net.Conn]struct{}),
		perIP:    make(map[netip.Addr]int),
		loopDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if opts.TLS != nil {
		m.tls = opts.TLS.Clone()
		m.tls.NextProtos = []string{ALPNPeer, ALPNHTTP}
		if !opts.AllowHTTPWithoutClientCert && m.tls.ClientAuth == tls.VerifyClientCertIfGiven {
			m.tls.ClientAuth = tls.RequireAndVerifyClientCert
		}
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

// TLS reports whether the Mux requires TLS.
func (m *Mux) TLS() bool { return m.tls != nil }

// Stats returns the Mux's connection counters.
func (m *Mux) Stats() MuxStats {
	c := &m.stats
	return MuxStats{
		Accepted:        c.accepted.Load(),
		ConnLimited:     c.connLimited.Load(),
		Timeouts:        c.timeouts.Load(),
		PlainText:       c.plainText.Load(),
		HandshakeFailed: c.handshakeFailed.Load(),
		Unauthenticated: c.unauthenticated.Load(),
	}
}

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

	bo := backoff.New(5*time.Millisecond, time.Second)
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
			delay := bo.Next()
			m.log.Warn("mux accept failed; retrying", "err", err, "delay", delay)
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-m.done:
				timer.Stop()
				return nil
			}
			continue
		}
		bo.Reset()
		c = quietconn.Wrap(c)
		m.stats.accepted.Add(1)
		lc, ok, closed := m.track(c)
		if closed {
			c.Close()
			return nil
		}
		if !ok {
			m.stats.connLimited.Add(1)
			m.refused(refusedLimit, "mux refused connection: too many connections from one address",
				"remote", c.RemoteAddr(), "limit", m.maxPerIP)
			c.Close()
			continue
		}
		go m.classify(lc)
	}
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// track records c as owned by the Mux, counts it against its address's
// limit and accounts for the goroutine that will serve it. It returns the
// connection wrapped so that closing it releases its slot; ok is false if
// the address is at its limit, closed true if the Mux is closed.
func (m *Mux) track(c net.Conn) (lc net.Conn, ok, closed bool) {
	ip := remoteIP(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, true
	}
	if m.maxPerIP > 0 && ip.IsValid() {
		if m.perIP[ip] >= m.maxPerIP {
			return nil, false, false
		}
		m.perIP[ip]++
	}
	l := &limitConn{Conn: c, m: m, ip: ip}
	m.conns[l] = struct{}{}
	m.wg.Add(1)
	return l, true, false
}

// release frees a connection's slot in its address's count.
func (m *Mux) release(ip netip.Addr) {
	if m.maxPerIP <= 0 || !ip.IsValid() {
		return
	}
	m.mu.Lock()
	if n := m.perIP[ip]; n <= 1 {
		delete(m.perIP, ip)
	} else {
		m.perIP[ip] = n - 1
	}
	m.mu.Unlock()
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
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

// classify routes c (tracked, wrapped by track) to a preamble handler or to
// the HTTP listener. It runs in its own goroutine, accounted in m.wg.
func (m *Mux) classify(c net.Conn) {
	defer m.wg.Done()
	if m.tls != nil {
		m.classifyTLS(c)
		return
	}
	if len(m.handlers) == 0 {
		m.untrack(c)
		m.toHTTP(c, nil)
		return
	}
	if err := c.SetReadDeadline(time.Now().Add(m.timeout)); err != nil {
		m.drop(c, "set deadline", err)
		return
	}
	i, peeked, err := m.readPreamble(c)
	if err != nil {
		m.dropRead(c, "waiting for preamble", err)
		return
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		m.drop(c, "clear deadline", err)
		return
	}
	if i >= 0 {
		m.serveHandler(replay(c, peeked[len(m.handlers[i].preamble):]), c, m.handlers[i].h)
		return
	}
	m.untrack(c)
	m.toHTTP(c, peeked)
}

// readPreamble reads from r until its first bytes match a preamble or can
// match none. It returns the handler's index (-1 for none) and the bytes
// read.
func (m *Mux) readPreamble(r io.Reader) (int, []byte, error) {
	buf := make([]byte, max(m.maxLen, 1))
	n := 0
	for {
		k, err := r.Read(buf[n:])
		n += k
		switch i, v := matchPreamble(m.handlers, buf[:n]); v {
		case matchFound:
			return i, buf[:n], nil
		case matchNone:
			return -1, buf[:n], nil
		}
		if err != nil {
			return -1, nil, err
		}
	}
}

// tlsRecordHandshake is the first byte of a TLS ClientHello record.
const tlsRecordHandshake = 0x16

// classifyTLS terminates TLS on c and routes the connection by ALPN
// protocol (see the Mux doc).
func (m *Mux) classifyTLS(c net.Conn) {
	if err := c.SetDeadline(time.Now().Add(m.timeout)); err != nil {
		m.drop(c, "set deadline", err)
		return
	}
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		m.dropRead(c, "waiting for TLS", err)
		return
	}
	if first[0] != tlsRecordHandshake {
		m.refusePlainText(c, first[0])
		return
	}
	// The deadline bounds the handshake; Close closes c, which ends it too.
	tc := tls.Server(replay(c, first[:]), m.tls)
	if err := tc.Handshake(); err != nil {
		if isTimeout(err) || m.isClosed() {
			m.dropRead(c, "TLS handshake", err)
			return
		}
		m.stats.handshakeFailed.Add(1)
		m.refused(refusedHandshake, "mux refused connection: TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
		m.untrack(c)
		c.Close()
		return
	}
	cs := tc.ConnectionState()
	verified := len(cs.VerifiedChains) > 0
	if cs.NegotiatedProtocol != ALPNPeer {
		// ALPNHTTP, or no protocol: QCluster's own streams always offer
		// ALPNPeer, so this is an HTTPS client (curl, Go's http.Client
		// with its own tls.Config, openssl s_client). It gets the
		// *tls.Conn itself, so that http.Request.TLS is set.
		if !verified && !m.anonHTTP {
			m.refuseUnauthenticated(c, "HTTPS client without a verified certificate")
			return
		}
		if err := c.SetDeadline(time.Time{}); err != nil {
			m.drop(c, "clear deadline", err)
			return
		}
		m.untrack(c)
		m.toHTTP(tc, nil)
		return
	}
	if !verified {
		m.refuseUnauthenticated(c, "peer stream without a verified client certificate")
		return
	}
	i, peeked, err := m.readPreamble(tc)
	if err != nil {
		m.dropRead(c, "waiting for preamble", err)
		return
	}
	if i < 0 {
		m.refuseUnauthenticated(c, "peer protocol without a known preamble")
		return
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		m.drop(c, "clear deadline", err)
		return
	}
	m.serveHandler(replay(tc, peeked[len(m.handlers[i].preamble):]), c, m.handlers[i].h)
}

// plainTextAnswer is written to an HTTP request sent in plain text to a TLS
// Mux, so that curl shows why instead of an empty reply.
const plainTextAnswer = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" +
	"This QCluster peer requires TLS: use https:// and a client certificate signed by the cluster CA.\n"

// refusePlainText refuses a connection that does not start with a TLS
// record, answering HTTP requests in kind.
func (m *Mux) refusePlainText(c net.Conn, first byte) {
	m.stats.plainText.Add(1)
	m.refused(refusedPlain, "mux refused plain-text connection: this peer requires TLS", "remote", c.RemoteAddr())
	if 'A' <= first && first <= 'Z' && first != 'Q' { // an HTTP method, not a QCluster preamble
		// Answer, half-close, and read what the client sent until it
		// closes too (briefly): closing with its request unread would
		// reset the connection and lose the answer.
		if _, err := io.WriteString(c, plainTextAnswer); err == nil {
			if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				_ = c.SetReadDeadline(time.Now().Add(plainTextLinger))
				_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
			}
		}
	}
	m.untrack(c)
	c.Close()
}

// plainTextLinger bounds how long a refused plain-text HTTP client may take
// to read the answer and close.
const plainTextLinger = 500 * time.Millisecond

// refuseUnauthenticated closes a TLS connection refused after its handshake.
func (m *Mux) refuseUnauthenticated(c net.Conn, why string) {
	m.stats.unauthenticated.Add(1)
	m.refused(refusedUnauth, "mux refused TLS connection: "+why, "remote", c.RemoteAddr())
	m.untrack(c)
	c.Close()
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

// dropRead closes c after a failed read, counting a deadline as a timeout.
func (m *Mux) dropRead(c net.Conn, what string, err error) {
	if isTimeout(err) {
		m.stats.timeouts.Add(1)
	}
	m.drop(c, what, err)
}

func (m *Mux) drop(c net.Conn, what string, err error) {
	m.untrack(c)
	c.Close()
	if !m.isClosed() {
		m.log.Debug("mux closed connection", "remote", c.RemoteAddr(), "while", what, "err", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Kinds of refusal, for rate-limited warnings.
const (
	refusedLimit = iota
	refusedPlain
	refusedHandshake
	refusedUnauth
	numRefusals
)

// refused logs a refusal: a warning at most once per second per kind (a
// flood of bad connections must not flood the log), debug otherwise.
func (m *Mux) refused(kind int, msg string, args ...any) {
	if m.isClosed() {
		return
	}
	if m.warned[kind].Allow(time.Now()) {
		m.log.Warn(msg, args...)
		return
	}
	m.log.Debug(msg, args...)
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

// ConnState returns the TLS state of a connection a Mux handed to a
// handler (or the HTTP listener), looking through the wrappers of this
// package and of any that implement NetConn() net.Conn, and false if the
// connection is not TLS.
func ConnState(c net.Conn) (tls.ConnectionState, bool) {
	for range 8 {
		switch v := c.(type) {
		case *tls.Conn:
			return v.ConnectionState(), true
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return tls.ConnectionState{}, false
		}
	}
	return tls.ConnectionState{}, false
}

// limitConn is an accepted connection counted against its address's limit
// until it is closed.
type limitConn struct {
	net.Conn
	m    *Mux
	ip   netip.Addr
	once sync.Once
}

// Close closes the connection and frees its slot.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.m.release(c.ip) })
	return err
}

// CloseWrite half-closes the connection when the underlying one supports
// it.
func (c *limitConn) CloseWrite() error { return closeWrite(c.Conn) }

// closeWrite half-closes c when it supports that, as net/http does for a
// graceful close.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the underlying connection.
func (c *limitConn) NetConn() net.Conn { return c.Conn }

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

// CloseWrite half-closes the underlying connection when it supports it.
func (c *replayConn) CloseWrite() error { return closeWrite(c.Conn) }

// NetConn returns the wrapped connection.
func (c *replayConn) NetConn() net.Conn { return c.Conn }

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
