package membership

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/transport"
)

// GossipPreamble starts every memberlist stream on the shared TCP port; the
// transport.Mux routes such connections to Transport.HandleStream.
const GossipPreamble = "QCGOSP1\n"

// MetaPreamble starts a metadata fetch on the shared TCP port. Metadata
// larger than InlineMetaSize is announced in the gossip by size and SHA-256
// only; a member that needs it dials the owner's port, writes MetaPreamble
// and a request (version 1, cluster name, owner's name, hash), and reads a
// status byte followed, on success, by the owner's current metadata with a
// 4-byte length. See meta.go.
const MetaPreamble = "QCMETA1\n"

// DefaultMaxInboundStreams is the default for
// TransportConfig.MaxInboundStreams.
const DefaultMaxInboundStreams = 128

const (
	// maxPacketSize is the largest UDP datagram.
	maxPacketSize = 65536
	// udpRecvBuf is the socket receive buffer we ask for (memberlist's
	// NetTransport asks for the same), halved until the kernel accepts.
	udpRecvBuf = 2 << 20
)

// errTransportClosed is returned by a Transport after Shutdown. It is
// deliberately not a *net.OpError: memberlist treats those as the remote
// peer failing, which would make a shut-down member suspect its peers.
var errTransportClosed = errors.New("membership: transport shut down")

// errFiltered is returned by dials the Filter refuses.
var errFiltered = errors.New("membership: traffic to peer dropped by filter")

// TransportConfig configures a Transport.
type TransportConfig struct {
	// BindAddr is the IP address to bind the UDP socket to.
	BindAddr string
	// Port is the UDP port: the peer's TCP listen port. Required.
	Port int
	// Filter, if set, drops traffic to or from a peer address (host:port)
	// for which it returns false; see Config.Filter.
	Filter func(addr string) bool
	// MaxInboundStreams bounds the inbound streams handed to memberlist at
	// once; more are closed on arrival. Zero means
	// DefaultMaxInboundStreams.
	MaxInboundStreams int
	// TLS, when set, makes outbound streams TLS clients with this
	// configuration (offering transport.ALPNPeer).
	TLS *tls.Config
	// Authenticate, if set, is called with every inbound stream before it
	// reaches memberlist; an error refuses (closes) the stream.
	Authenticate func(net.Conn) error
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
}

// Transport is a memberlist.NodeAwareTransport on the peer's single port:
// packets are UDP datagrams on a socket bound to the same port number as the
// peer's TCP listener, and streams are TCP connections through the
// transport.Mux, told apart by GossipPreamble. Outbound streams are dialled
// to the target's port and start with the preamble; inbound ones reach
// memberlist once the Mux has consumed it (register HandleStream for
// GossipPreamble).
//
// Every goroutine and connection it starts is owned: Shutdown closes the
// socket and every stream still open (so memberlist's I/O on them fails at
// once) and waits for its reader goroutine. Shutdown is idempotent.
type Transport struct {
	cfg      TransportConfig
	tls      *tls.Config // cfg.TLS offering ALPNPeer; nil without TLS
	log      *slog.Logger
	udp      *net.UDPConn
	port     int
	rbuf     []byte // the packet reader's buffer (on the heap, not its stack)
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	streams  chan struct{} // semaphore bounding inbound streams

	// observe, if not nil, sees every packet sent and received (after the
	// filter); see wire.go. Set once, before the reader starts.
	observe func(inbound bool, buf []byte)

	ctx    context.Context // canceled by Shutdown; bounds dials
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	closed atomic.Bool

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// NewTransport binds the UDP socket and starts reading packets.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	return newTransport(cfg, nil)
}

// newTransport is NewTransport with an observer of every packet sent and
// received (see wire.go), set before the reader starts.
func newTransport(cfg TransportConfig, observe func(inbound bool, buf []byte)) (*Transport, error) {
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("%w: transport port %d is out of range", ErrInvalidConfig, cfg.Port)
	}
	ip := net.ParseIP(cfg.BindAddr)
	if cfg.BindAddr != "" && ip == nil {
		return nil, fmt.Errorf("%w: transport BindAddr %q is not an IP address", ErrInvalidConfig, cfg.BindAddr)
	}
	if cfg.MaxInboundStreams <= 0 {
		cfg.MaxInboundStreams = DefaultMaxInboundStreams
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: cfg.Port})
	if err != nil {
		return nil, fmt.Errorf("membership: bind UDP port %d: %w", cfg.Port, err)
	}
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	var clientTLS *tls.Config
	if cfg.TLS != nil {
		clientTLS = cfg.TLS.Clone()
		clientTLS.NextProtos = []string{transport.ALPNPeer}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		tls:      clientTLS,
		cfg:      cfg,
		log:      log,
		udp:      udp,
		port:     udp.LocalAddr().(*net.UDPAddr).Port,
		rbuf:     make([]byte, maxPacketSize),
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		streams:  make(chan struct{}, cfg.MaxInboundStreams),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		conns:    make(map[*trackedConn]struct{}),
		observe:  observe,
	}
	t.wg.Add(1)
	go t.readPackets()
	return t, nil
}

// Port returns the bound UDP port.
func (t *Transport) Port() int { return t.port }

// FinalAdvertiseAddr implements memberlist.Transport: ip and port, when
// given, win; otherwise the bound address, or for a wildcard bind this
// host's first private IPv4 address.
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if port == 0 {
		port = t.port
	}
	if ip != "" {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, 0, fmt.Errorf("membership: advertise address %q is not an IP address", ip)
		}
		if v4 := addr.To4(); v4 != nil {
			addr = v4
		}
		return addr, port, nil
	}
	bound := t.udp.LocalAddr().(*net.UDPAddr).IP
	if !bound.IsUnspecified() {
		if v4 := bound.To4(); v4 != nil {
			bound = v4
		}
		return bound, port, nil
	}
	addr, err := privateIP()
	if err != nil {
		return nil, 0, err
	}
	return addr, port, nil
}

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport: it sends b as
// one UDP datagram and returns the time just after the send, for memberlist's
// RTT estimates. A packet the Filter refuses is dropped silently, as a lossy
// network would.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.closed.Load() {
		return time.Time{}, errTransportClosed
	}
	if t.cfg.Filter != nil && !t.cfg.Filter(a.Addr) {
		return time.Now(), nil
	}
	var to *net.UDPAddr
	if ap, err := netip.ParseAddrPort(a.Addr); err == nil {
		to = net.UDPAddrFromAddrPort(ap)
	} else if to, err = net.ResolveUDPAddr("udp", a.Addr); err != nil {
		return time.Time{}, err
	}
	_, err := t.udp.WriteTo(b, to)
	now := time.Now()
	if err == nil && t.observe != nil {
		t.observe(false, b)
	}
	return now, err
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: it dials the
// peer's TCP port and writes GossipPreamble, so that the peer's Mux hands
// the stream to its memberlist. Shutdown closes the connection if memberlist
// still holds it.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.dial(a.Addr, GossipPreamble, timeout)
}

// dial connects to addr (with TLS, when configured), writes preamble and
// returns the tracked connection. timeout bounds the connection, the TLS
// handshake and the preamble.
func (t *Transport) dial(addr, preamble string, timeout time.Duration) (net.Conn, error) {
	if t.closed.Load() {
		return nil, errTransportClosed
	}
	if t.cfg.Filter != nil && !t.cfg.Filter(addr) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errFiltered}
	}
	ctx := t.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if t.tls != nil {
		// Shutdown cancels ctx, which interrupts the handshake.
		sc := tls.Client(c, t.tls)
		if err := sc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("membership: TLS handshake with %s: %w", addr, err)
		}
		c = sc
	}
	tc := t.track(c)
	if tc == nil {
		return nil, errTransportClosed
	}
	if timeout > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(timeout))
	}
	if _, err := c.Write([]byte(preamble)); err != nil {
		tc.Close()
		return nil, err
	}
	_ = c.SetWriteDeadline(time.Time{})
	return tc, nil
}

// HandleStream takes an inbound stream whose GossipPreamble the Mux has
// consumed and hands it to memberlist. Register it with
// mux.Handle(GossipPreamble, t.HandleStream); New does. It returns once
// memberlist has closed the stream or the transport is shut down (the Mux
// then closes the connection). Streams beyond MaxInboundStreams are
// refused.
func (t *Transport) HandleStream(c net.Conn) {
	select {
	case t.streams <- struct{}{}:
	default:
		t.log.Debug("membership: too many inbound gossip streams; closing one", "remote", c.RemoteAddr())
		return
	}
	defer func() { <-t.streams }()
	if t.cfg.Authenticate != nil {
		if err := t.cfg.Authenticate(c); err != nil {
			return
		}
	}
	tc := t.track(c)
	if tc == nil {
		return
	}
	select {
	case t.streamCh <- tc:
	case <-t.done:
		return
	}
	select {
	case <-tc.closed:
	case <-t.done:
	}
}

// Shutdown implements memberlist.Transport: it stops the packet reader,
// closes the socket and every stream memberlist still holds, and waits for
// the reader to return. It is idempotent and safe to call concurrently.
func (t *Transport) Shutdown() error {
	var err error
	t.once.Do(func() {
		t.closed.Store(true)
		close(t.done)
		t.cancel()
		err = t.udp.Close()
		t.mu.Lock()
		conns := make([]*trackedConn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		t.wg.Wait()
	})
	return err
}

// readPackets reads datagrams until Shutdown and hands them to memberlist.
func (t *Transport) readPackets() {
	defer t.wg.Done()
	buf := t.rbuf
	bo := backoff.New(time.Millisecond, 100*time.Millisecond)
	for {
		n, from, err := t.udp.ReadFromUDP(buf)
		ts := time.Now()
		if err != nil {
			if t.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (ENOBUFS, ...): retry, without spinning.
			delay := bo.Next()
			t.log.Debug("membership: UDP read failed; retrying", "err", err, "delay", delay)
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-t.done:
				timer.Stop()
				return
			}
			continue
		}
		bo.Reset()
		if n < 1 {
			continue
		}
		if t.cfg.Filter != nil && !t.cfg.Filter(from.String()) {
			continue
		}
		pkt := bytes.Clone(buf[:n])
		if t.observe != nil {
			t.observe(true, pkt)
		}
		select {
		case t.packetCh <- &memberlist.Packet{Buf: pkt, From: from, Timestamp: ts}:
		case <-t.done:
			return
		}
	}
}

// track records c as open; it returns nil (and closes c) after Shutdown.
func (t *Transport) track(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, t: t, closed: make(chan struct{})}
	t.mu.Lock()
	if t.closed.Load() {
		t.mu.Unlock()
		c.Close()
		return nil
	}
	t.conns[tc] = struct{}{}
	t.mu.Unlock()
	return tc
}

// trackedConn is a stream the transport closes on Shutdown.
type trackedConn struct {
	net.Conn
	t      *Transport
	once   sync.Once
	closed chan struct{}
}

// NetConn returns the wrapped connection (so transport.ConnState sees
// through it).
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// Close closes the connection once and forgets it.
func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		err = c.Conn.Close()
		close(c.closed)
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return err
}

// privateIP returns this host's first private IPv4 address, or failing
// that its first global unicast address.
func privateIP() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("membership: list interface addresses: %w", err)
	}
	var global net.IP
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := ipn.IP
		if v4 := ip.To4(); v4 != nil && v4.IsPrivate() {
			return v4, nil
		}
		if global == nil && ip.IsGlobalUnicast() {
			global = ip
		}
	}
	if global == nil {
		return nil, errors.New("membership: no private or global IP address found; set AdvertiseHost")
	}
	return global, nil
}
