package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/qcluster/qcluster/internal/loglimit"
	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/quiettimer"
	"github.com/qcluster/qcluster/internal/transport"
)

// maxConcurrentMetaRequests bounds the metadata requests served at once.
const maxConcurrentMetaRequests = 16

// Membership is this peer's membership in a gossip cluster: memberlist on
// the peer's single port, plus metadata of up to MaxMetaSize, suspect /
// left reporting, periodic rejoin and rendezvous ownership. Its methods are
// safe for concurrent use.
type Membership struct {
	cfg        Config
	log        *slog.Logger
	tr         *Transport
	ml         *memberlist.Memberlist
	reg        *registry
	advertise  string // this member's host:port
	bindAddr   string // the bound UDP host:port
	tcpTimeout time.Duration
	retention  time.Duration
	probeEvery time.Duration
	// mlConfig is the memberlist config New built (read-only after New).
	mlConfig *memberlist.Config

	metaMu   sync.Mutex             // serializes SetMeta
	nodeMeta atomic.Pointer[[]byte] // the envelope memberlist gossips
	check    Check                  // the health-check state it carries (under metaMu)
	metaSem  chan struct{}          // bounds metadata requests served

	seedMu sync.Mutex
	seeds  []string // every address given to Join, for the rejoin loop

	// Gossip encryption: the keyring memberlist reads, changed only under
	// keyMu, and the observer's ciphers for it (nil without encryption).
	keyMu   sync.Mutex
	keyring *memberlist.Keyring
	ciphers atomic.Pointer[gossipCiphers]

	packets, rejectedPackets, secondaryKeyPackets, refusedStreams atomic.Uint64
	refusalLog                                                    loglimit.Limiter // a refusal warning a second

	lifeMu       sync.Mutex // serializes memberlist's Leave and Shutdown
	closed       atomic.Bool
	ctx          context.Context // canceled by Shutdown
	cancel       context.CancelFunc
	done         chan struct{}
	wg           sync.WaitGroup // dispatcher, fetcher, fetches, maintenance
	shutdownOnce sync.Once
	shutdownErr  error
}

// New starts a member: it binds the UDP socket, registers GossipPreamble
// and MetaPreamble on cfg.Mux (so call it before cfg.Mux.Serve) and starts
// memberlist. The member knows only itself until Join. A UDP port already
// in use is reported with the bind error wrapped (errors.Is(err,
// syscall.EADDRINUSE)).
func New(cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Meta = nilIfEmpty(bytes.Clone(cfg.Meta))
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("member", cfg.Name)

	bindIP, port := cfg.BindAddr, cfg.Port
	if bindIP == "" || port == 0 {
		ln, ok := cfg.Mux.Addr().(*net.TCPAddr)
		if !ok {
			return nil, fmt.Errorf("%w: Mux listens on %v, not TCP; set BindAddr and Port", ErrInvalidConfig, cfg.Mux.Addr())
		}
		if bindIP == "" {
			bindIP = ln.IP.String()
		}
		if port == 0 {
			port = ln.Port
		}
	}
	advIP, err := resolveAdvertise(cfg.AdvertiseHost, bindIP)
	if err != nil {
		return nil, err
	}
	advPort := cfg.AdvertisePort
	if advPort == 0 {
		advPort = port
	}

	mc, err := cfg.memberlistConfig()
	if err != nil {
		return nil, err
	}
	eventBuffer := cfg.EventBuffer
	if eventBuffer == 0 {
		eventBuffer = DefaultEventBuffer
	}
	retention := cfg.DeadMemberRetention
	if retention == 0 {
		retention = DefaultDeadMemberRetention
	}
	m := &Membership{
		cfg:        cfg,
		log:        log,
		reg:        newRegistry(cfg.Name, eventBuffer, cfg.Events != nil),
		advertise:  hostPort(advIP.String(), advPort),
		bindAddr:   hostPort(bindIP, port),
		tcpTimeout: mc.TCPTimeout,
		retention:  retention,
		probeEvery: mc.ProbeInterval,
		mlConfig:   mc,
		metaSem:    make(chan struct{}, maxConcurrentMetaRequests),
		done:       make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.reg.setLocalMeta(cfg.Meta)
	m.check = cfg.Check
	env := encodeEnvelope(cfg.Meta, cfg.Check)
	m.nodeMeta.Store(&env)

	if mc.Keyring != nil {
		m.keyring = mc.Keyring
		if err := m.refreshCiphers(); err != nil {
			return nil, fmt.Errorf("%w: GossipKeys: %v", ErrInvalidConfig, err)
		}
	}
	m.tr, err = newTransport(TransportConfig{
		BindAddr:     bindIP,
		Port:         port,
		Filter:       cfg.Filter,
		Logger:       log,
		TLS:          cfg.TLS,
		Authenticate: m.authenticate,
	}, m.observe)
	if err != nil {
		m.cancel()
		return nil, err
	}
	if err := registerMux(cfg.Mux, m.tr.HandleStream, m.serveMeta); err != nil {
		m.cancel()
		m.tr.Shutdown()
		return nil, err
	}

	mc.Transport = m.tr
	mc.BindAddr = bindIP
	mc.BindPort = port
	mc.AdvertiseAddr = advIP.String()
	mc.AdvertisePort = advPort
	mc.Delegate = mlDelegate{m}
	mc.Events = mlDelegate{m}
	mc.Alive = mlDelegate{m}
	mc.Logger = newMemberlistLogger(log)
	m.ml, err = memberlist.Create(mc)
	if err != nil {
		m.closed.Store(true)
		m.cancel()
		m.tr.Shutdown()
		return nil, fmt.Errorf("membership: start memberlist: %w", err)
	}

	if cfg.Events != nil {
		m.wg.Add(1)
		go m.dispatch()
	}
	m.wg.Add(2)
	go m.fetchLoop()
	go m.maintain()
	return m, nil
}

// registerMux registers the gossip and metadata handlers, turning the
// Mux's panic (Serve already called, preamble already registered) into an
// error.
func registerMux(mux *transport.Mux, gossip, meta func(net.Conn)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: cannot register on Mux (call New once per Mux, before Mux.Serve): %v", ErrInvalidConfig, p)
		}
	}()
	mux.Handle(GossipPreamble, gossip)
	mux.Handle(MetaPreamble, meta)
	return nil
}

// resolveAdvertise returns the IP address to advertise.
func resolveAdvertise(host, bindIP string) (net.IP, error) {
	if host == "" {
		ip := net.ParseIP(bindIP)
		if ip != nil && !ip.IsUnspecified() {
			return normalizeIP(ip), nil
		}
		return privateIP()
	}
	if ip := net.ParseIP(host); ip != nil {
		return normalizeIP(ip), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("%w: AdvertiseHost %q does not resolve (%v); use an IP address", ErrInvalidConfig, host, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return normalizeIP(ip), nil
		}
	}
	return ips[0], nil
}

func normalizeIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// canonicalAddr returns host:port with the host as a canonical IP, and
// false if addr is not an IP address and port.
func canonicalAddr(addr string) (string, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), true
}

// Join contacts the given members (host:port each) and merges their view
// of the cluster with this one's, one address at a time, stopping early if
// ctx is done; each attempt is bounded by the profile's stream timeout. It
// returns how many addresses answered, and an error wrapping ErrJoin if
// none did (or ErrInvalidAddress, before contacting anyone, if an address is
// malformed). Addresses of this member are skipped. Every address is
// remembered as a seed for the periodic rejoin (Config.RejoinInterval),
// even when it could not be reached now.
func (m *Membership) Join(ctx context.Context, addrs []string) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return 0, fmt.Errorf("%w: %q: want host:port", ErrInvalidAddress, a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return 0, fmt.Errorf("%w: %q: port must be 1-65535", ErrInvalidAddress, a)
		}
	}
	m.addSeeds(addrs)
	joined := 0
	var errs []error
	for _, a := range addrs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if m.closed.Load() {
			return joined, ErrClosed
		}
		if m.isSelf(a) {
			continue
		}
		n, err := m.ml.Join([]string{a})
		joined += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a, err))
		}
	}
	if joined == 0 && len(errs) > 0 {
		return 0, fmt.Errorf("%w: %w", ErrJoin, errors.Join(errs...))
	}
	return joined, nil
}

// addSeeds remembers addrs for the rejoin loop.
func (m *Membership) addSeeds(addrs []string) {
	m.seedMu.Lock()
	defer m.seedMu.Unlock()
	for _, a := range addrs {
		if !slices.Contains(m.seeds, a) {
			m.seeds = append(m.seeds, a)
		}
	}
}

// isSelf reports whether addr is this member's advertised or bound address.
func (m *Membership) isSelf(addr string) bool {
	c, ok := canonicalAddr(addr)
	if !ok {
		return false
	}
	adv, _ := canonicalAddr(m.advertise)
	bind, _ := canonicalAddr(m.bindAddr)
	return c == adv || c == bind
}

// Members returns every member this one knows, itself included, sorted by
// name: live ones (alive, suspect) and those that failed or left within
// Config.DeadMemberRetention. The slice and its members are copies.
func (m *Membership) Members() []Member { return m.reg.list() }

// Local returns this member (a copy).
func (m *Membership) Local() Member {
	if mem, ok := m.reg.get(m.cfg.Name); ok {
		return mem
	}
	return Member{Name: m.cfg.Name, Meta: bytes.Clone(m.reg.localMetaData())}
}

// Owner returns the live member (alive or suspect) that owns key by
// rendezvous hashing, and false if no member is live: each live member's
// weight for the key is a 64-bit hash of the key and the member's name
// (FNV-1a and MurmurHash3's finalizer, fixed across versions; see owner.go)
// and the heaviest member owns the key. Members that agree on who is live
// agree on every owner; when a member fails, only the keys it owned change
// owner. Suspect members keep their keys until
// declared dead, so a false suspicion does not move work around. Owner does
// not lock and costs one hash per live member.
func (m *Membership) Owner(key string) (Member, bool) {
	p := m.reg.live.Load()
	if p == nil {
		return Member{}, false
	}
	i := ownerOf(*p, key)
	if i < 0 {
		return Member{}, false
	}
	return (*p)[i].m.clone(), true
}

// DroppedEvents returns how many events were dropped because the Events
// callback fell EventBuffer events behind.
func (m *Membership) DroppedEvents() uint64 {
	if m.reg.events == nil {
		return 0
	}
	return m.reg.events.dropped.Load()
}

// SetMeta replaces this member's metadata (at most MaxMetaSize bytes,
// otherwise ErrMetaTooLarge) and gossips it. The new metadata is in effect
// locally at once; SetMeta then waits until memberlist has broadcast the
// change, until ctx's deadline (DefaultOpTimeout without one), and
// returns ErrNotConfirmed if that did not happen in time — the change still
// spreads. Metadata larger than InlineMetaSize is announced by hash and
// fetched by each peer (see MetaPreamble), so it reaches them one stream later.
// Concurrent calls are applied one at a time.
func (m *Membership) SetMeta(ctx context.Context, meta []byte) error {
	if len(meta) > MaxMetaSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMetaTooLarge, len(meta), MaxMetaSize)
	}
	if m.closed.Load() {
		return ErrClosed
	}
	timeout, err := opTimeout(ctx)
	if err != nil {
		return err
	}
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	data := nilIfEmpty(bytes.Clone(meta))
	m.reg.setLocalMeta(data)
	env := encodeEnvelope(data, m.check)
	m.nodeMeta.Store(&env)
	if err := m.ml.UpdateNode(timeout); err != nil {
		if m.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("%w: metadata set locally: %v", ErrNotConfirmed, err)
	}
	return nil
}

// SetCheck sets this member's health-check state, which every member sees
// as Member.Check (QCluster: a member whose application's check fails is
// no candidate for leadership), and gossips it as SetMeta gossips
// metadata, with the same waiting and errors.
func (m *Membership) SetCheck(ctx context.Context, check Check) error {
	if check > CheckFailing {
		return fmt.Errorf("membership: check state %d out of range", check)
	}
	if m.closed.Load() {
		return ErrClosed
	}
	timeout, err := opTimeout(ctx)
	if err != nil {
		return err
	}
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if m.check == check {
		return nil
	}
	m.check = check
	env := encodeEnvelope(m.reg.localMetaData(), check)
	m.nodeMeta.Store(&env)
	if err := m.ml.UpdateNode(timeout); err != nil {
		if m.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("%w: health-check state set locally: %v", ErrNotConfirmed, err)
	}
	return nil
}

// Leave leaves the cluster gracefully: it broadcasts a leave notice, so
// that the others report this member as left (EventLeft) rather than
// failed, waits until the notice is out (until ctx's deadline, or
// DefaultOpTimeout), and shuts down. It returns ErrNotConfirmed (joined
// with any Shutdown error) if the notice could not be confirmed in time,
// and ctx's error, without sending the notice, if ctx is already done; the
// member is shut down in every case.
func (m *Membership) Leave(ctx context.Context) error {
	timeout, err := opTimeout(ctx)
	if err != nil {
		timeout = 0 // still shut down below
	}
	m.lifeMu.Lock()
	if m.closed.Load() {
		m.lifeMu.Unlock()
		return ErrClosed
	}
	var lerr error
	if timeout > 0 {
		m.reg.setLeaving()
		if err := m.ml.Leave(timeout); err != nil {
			lerr = fmt.Errorf("%w: leave: %v", ErrNotConfirmed, err)
		}
		m.reg.setSelfState(StateLeft)
	} else {
		lerr = err
	}
	m.lifeMu.Unlock()
	return errors.Join(lerr, m.Shutdown())
}

// Shutdown stops the member without a leave notice: the others will
// detect it as failed. It closes the socket and every stream, stops event
// delivery and waits for this package's goroutines (memberlist's own wind
// down within a probe interval). It is idempotent; calls after the first
// return the first one's result. It must not be called from the Events
// callback.
func (m *Membership) Shutdown() error {
	m.shutdownOnce.Do(func() {
		m.lifeMu.Lock()
		m.closed.Store(true)
		m.cancel()
		err := m.ml.Shutdown()
		m.lifeMu.Unlock()
		if self := m.Local(); self.State == StateAlive || self.State == StateSuspect {
			m.reg.setSelfState(StateDead)
		}
		m.reg.close()
		close(m.done)
		m.wg.Wait()
		m.shutdownErr = err
	})
	return m.shutdownErr
}

// opTimeout returns how long an operation under ctx may wait.
func opTimeout(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return 0, context.DeadlineExceeded
		}
		return d, nil
	}
	return DefaultOpTimeout, nil
}

// observe is the Transport's packet observer (see wire.go). It also
// counts the inbound packets memberlist will drop: another cluster's, and
// those no gossip key decrypts.
func (m *Membership) observe(inbound bool, buf []byte) {
	var ciphers gossipCiphers
	if p := m.ciphers.Load(); p != nil {
		ciphers = *p
	}
	key, err := decodeSealed(buf, m.cfg.ClusterName, ciphers, func(g gossipMsg) { m.reg.observe(inbound, g) })
	if !inbound {
		return
	}
	m.packets.Add(1)
	switch {
	case errors.Is(err, errWireLabel), errors.Is(err, errWireDecrypt):
		m.rejectedPackets.Add(1)
		m.log.Debug("membership: gossip packet rejected", "err", err)
	case err != nil:
		m.log.Debug("membership: undecodable gossip packet", "err", err)
	}
	if key > 0 {
		m.secondaryKeyPackets.Add(1)
	}
}

// Stats are a member's security counters.
type Stats struct {
	// PacketsReceived counts inbound gossip packets.
	PacketsReceived uint64
	// RejectedPackets counts inbound gossip packets memberlist drops: of
	// another cluster (label), or that no gossip key decrypts (a wrong
	// key, or plain text while encryption is on).
	RejectedPackets uint64
	// SecondaryKeyPackets counts inbound packets decrypted with a key
	// other than the primary one. During a key rotation, once every
	// member uses the new key, this stops growing on every member: the old
	// key can then be removed.
	SecondaryKeyPackets uint64
	// RefusedStreams counts inbound gossip and metadata streams refused
	// for want of authentication (with Config.TLS).
	RefusedStreams uint64
}

// Stats returns the member's security counters.
func (m *Membership) Stats() Stats {
	return Stats{
		PacketsReceived:     m.packets.Load(),
		RejectedPackets:     m.rejectedPackets.Load(),
		SecondaryKeyPackets: m.secondaryKeyPackets.Load(),
		RefusedStreams:      m.refusedStreams.Load(),
	}
}

// authenticate vets an inbound stream (gossip or metadata) when TLS is on:
// it must be TLS, with a verified certificate naming a peer of this cluster
// that Config.Authorize accepts. A refusal is counted and logged (a warning
// at most once a second).
func (m *Membership) authenticate(c net.Conn) error {
	if m.cfg.TLS == nil {
		return nil
	}
	err := m.checkPeer(c)
	if err != nil {
		m.refusedStreams.Add(1)
		if m.refusalLog.Allow(time.Now()) {
			m.log.Warn("membership: stream refused", "remote", c.RemoteAddr(), "err", err)
		} else {
			m.log.Debug("membership: stream refused", "remote", c.RemoteAddr(), "err", err)
		}
	}
	return err
}

func (m *Membership) checkPeer(c net.Conn) error {
	cs, ok := transport.ConnState(c)
	if !ok {
		return fmt.Errorf("%w: not TLS (this member requires TLS)", ErrUnauthenticated)
	}
	id, err := (&pki.Verifier{Cluster: m.cfg.ClusterName}).Peer(cs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	if m.cfg.Authorize != nil {
		if err := m.cfg.Authorize(id.Identifier); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnauthenticated, id, err)
		}
	}
	return nil
}

// Key rotation.
//
// A cluster's gossip key changes without downtime in three rounds, each
// done on every member before the next starts:
//
//  1. InstallKey(new) on every member: all can now decrypt both keys.
//  2. UseKey(new) on every member: each encrypts with the new key; the
//     others can read it since round 1.
//  3. RemoveKey(old) on every member, once no member still sends with the
//     old key (Stats.SecondaryKeyPackets stops growing everywhere; a few
//     gossip intervals after round 2).
//
// Then put the new key in every member's configuration, for its next
// start. The calls are local: QCluster's API or tooling runs them on every
// member.

// InstallKey adds key (16, 24 or 32 bytes) to the keyring, for decryption
// only; installing a key twice is a no-op.
func (m *Membership) InstallKey(key []byte) error {
	if err := memberlist.ValidateKey(key); err != nil {
		return fmt.Errorf("%w: %d bytes; use 16, 24 or 32", ErrInvalidKey, len(key))
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if m.keyring == nil {
		return ErrNoEncryption
	}
	if err := m.keyring.AddKey(bytes.Clone(key)); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return m.refreshCiphers()
}

// UseKey makes an installed key the primary one: the key this member
// encrypts with from now on.
func (m *Membership) UseKey(key []byte) error {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if m.keyring == nil {
		return ErrNoEncryption
	}
	if !slices.ContainsFunc(m.keyring.GetKeys(), func(k []byte) bool { return bytes.Equal(k, key) }) {
		return fmt.Errorf("%w: the key is not installed; InstallKey it first (on every member)", ErrInvalidKey)
	}
	if err := m.keyring.UseKey(bytes.Clone(key)); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return m.refreshCiphers()
}

// RemoveKey removes a key that is not the primary one; removing a key that
// is not installed is a no-op.
func (m *Membership) RemoveKey(key []byte) error {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if m.keyring == nil {
		return ErrNoEncryption
	}
	keys := m.keyring.GetKeys()
	i := slices.IndexFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) })
	switch {
	case i < 0:
		return nil
	case i == 0:
		return fmt.Errorf("%w: cannot remove the primary key; UseKey another one first", ErrInvalidKey)
	}
	// memberlist's Keyring.RemoveKey shifts the slice it shares with
	// readers in place unless the key is the last one, which would race
	// with a packet being decrypted. So remove the keys after it (last
	// first), then it, then put those back: every step removes the last
	// key and writes nothing shared. (In a rotation the old key is always
	// last: install appends the new key, use moves it first.)
	tail := slices.Clone(keys[i+1:])
	for j := len(tail) - 1; j >= 0; j-- {
		if err := m.keyring.RemoveKey(tail[j]); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
	}
	if err := m.keyring.RemoveKey(keys[i]); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	for _, k := range tail {
		if err := m.keyring.AddKey(k); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
	}
	return m.refreshCiphers()
}

// Keys returns copies of the keyring's keys, the primary one first; nil
// without encryption.
func (m *Membership) Keys() [][]byte {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if m.keyring == nil {
		return nil
	}
	keys := m.keyring.GetKeys()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// refreshCiphers rebuilds the observer's ciphers from the keyring. Callers
// hold keyMu (or own m exclusively).
func (m *Membership) refreshCiphers() error {
	cs, err := newGossipCiphers(m.keyring.GetKeys())
	if err != nil {
		return err
	}
	m.ciphers.Store(&cs)
	return nil
}

// dispatch delivers events to Config.Events, one at a time.
func (m *Membership) dispatch() {
	defer m.wg.Done()
	q := m.reg.events
	for {
		select {
		case <-q.ready:
		case <-m.done:
			return
		}
		if ev, ok := q.pop(); ok {
			m.cfg.Events(ev)
		}
	}
}

// fetchLoop starts metadata fetches as they become due.
func (m *Membership) fetchLoop() {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		jobs, next := m.reg.dueFetches()
		for _, j := range jobs {
			m.wg.Add(1)
			go m.fetch(j)
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tick = timer.C
		}
		select {
		case <-m.done:
			return
		case <-m.reg.kick:
		case <-tick:
		}
		timer.Stop()
	}
}

// fetch runs one metadata fetch.
func (m *Membership) fetch(j fetchJob) {
	defer m.wg.Done()
	data, err := m.fetchMeta(j)
	if err != nil {
		m.log.Debug("membership: metadata fetch failed", "from", j.name, "addr", j.addr, "err", err)
	}
	m.reg.fetchDone(j, data, err)
}

// fetchMeta asks j's member for its metadata.
func (m *Membership) fetchMeta(j fetchJob) ([]byte, error) {
	c, err := m.tr.dial(j.addr, MetaPreamble, m.tcpTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(m.tcpTimeout)); err != nil {
		return nil, err
	}
	if err := writeMetaRequest(c, m.cfg.ClusterName, j.name, j.want); err != nil {
		return nil, err
	}
	return readMetaResponse(c)
}

// serveMeta answers a metadata fetch; the Mux calls it for connections
// starting with MetaPreamble and closes them when it returns.
func (m *Membership) serveMeta(c net.Conn) {
	if m.closed.Load() || m.authenticate(c) != nil {
		return
	}
	if err := c.SetDeadline(time.Now().Add(m.tcpTimeout)); err != nil {
		return
	}
	select {
	case m.metaSem <- struct{}{}:
		defer func() { <-m.metaSem }()
	default:
		_ = writeMetaResponse(c, metaStatusBusy, nil)
		return
	}
	req, status, err := readMetaRequest(c)
	switch {
	case err != nil:
		m.log.Debug("membership: bad metadata request", "remote", c.RemoteAddr(), "err", err)
	case req.cluster != m.cfg.ClusterName:
		status = metaStatusWrongGroup
	case req.name != m.cfg.Name:
		status = metaStatusWrongMember
	}
	_ = writeMetaResponse(c, status, m.reg.localMetaData())
}

// maintain runs the periodic rejoin and forgets long-dead members.
func (m *Membership) maintain() {
	defer m.wg.Done()
	var rejoin <-chan time.Time
	if m.cfg.RejoinInterval > 0 {
		t := time.NewTicker(m.cfg.RejoinInterval)
		defer t.Stop()
		rejoin = t.C
	}
	reap := time.NewTicker(min(max(m.retention/2, 50*time.Millisecond), time.Minute))
	defer reap.Stop()
	// Every second on an idle peer: a quiettimer ticker wakes it once,
	// not three times (package quiettimer).
	reconcile := quiettimer.NewTicker(m.probeEvery)
	defer reconcile.Close()
	for {
		select {
		case <-m.done:
			return
		case <-rejoin:
			m.rejoin()
		case <-reap.C:
			m.reg.reap(m.retention)
		case <-reconcile.C():
			m.reconcileSuspects()
		}
	}
}

// reconcileSuspects clears suspicions that have outlived memberlist's
// longest suspicion timeout while memberlist still lists the member: it
// refuted them, and the refutation was not seen (see wire.go).
func (m *Membership) reconcileSuspects() {
	_, longest := suspicionTimeout(m.mlConfig, m.reg.numLive())
	cutoff := time.Now().Add(-longest - 2*m.probeEvery)
	stale := m.reg.staleSuspects(cutoff)
	if len(stale) == 0 {
		return
	}
	listed := make(map[string]bool)
	for _, n := range m.ml.Members() {
		listed[n.Name] = true
	}
	for _, name := range stale {
		if listed[name] {
			m.reg.clearSuspect(name, cutoff)
		}
	}
}

// rejoin re-joins every seed whose member is not live, so that the two
// sides of a long partition find each other again (memberlist#222).
func (m *Membership) rejoin() {
	m.seedMu.Lock()
	seeds := slices.Clone(m.seeds)
	m.seedMu.Unlock()
	if len(seeds) == 0 {
		return
	}
	live := m.reg.liveAddrs()
	for _, s := range seeds {
		if m.closed.Load() {
			return
		}
		if m.isSelf(s) || m.seedLive(s, live) {
			continue
		}
		n, err := m.ml.Join([]string{s})
		m.log.Debug("membership: periodic rejoin", "seed", s, "reached", n, "err", err)
	}
}

// seedLive reports whether the seed address belongs to a live member.
func (m *Membership) seedLive(seed string, live map[string]bool) bool {
	if c, ok := canonicalAddr(seed); ok {
		return live[c]
	}
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.tcpTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if live[hostPort(normalizeIP(ip.IP).String(), mustAtoi(port))] {
			return true
		}
	}
	return false
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// mlDelegate receives memberlist's callbacks. They run with memberlist's
// node lock held, so they only touch the registry.
type mlDelegate struct{ m *Membership }

// NodeMeta implements memberlist.Delegate: the metadata envelope (at most
// memberlist.MetaMaxSize bytes by construction).
func (d mlDelegate) NodeMeta(limit int) []byte { return *d.m.nodeMeta.Load() }

// NotifyMsg implements memberlist.Delegate; user messages are not used.
func (d mlDelegate) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate; nothing is broadcast.
func (d mlDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate; there is no user state.
func (d mlDelegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate; there is no user state.
func (d mlDelegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin implements memberlist.EventDelegate.
func (d mlDelegate) NotifyJoin(n *memberlist.Node) { d.m.reg.join(n) }

// NotifyLeave implements memberlist.EventDelegate.
func (d mlDelegate) NotifyLeave(n *memberlist.Node) { d.m.reg.leave(n) }

// NotifyUpdate implements memberlist.EventDelegate.
func (d mlDelegate) NotifyUpdate(n *memberlist.Node) { d.m.reg.update(n) }

// NotifyAlive implements memberlist.AliveDelegate: members whose node meta
// is not a QCluster envelope (another application sharing the label) are
// refused.
func (d mlDelegate) NotifyAlive(n *memberlist.Node) error {
	if _, err := parseEnvelope(n.Meta); err != nil {
		return fmt.Errorf("member %q: %w", n.Name, err)
	}
	return nil
}
