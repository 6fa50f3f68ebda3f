package transport

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/pki"
)

// testPKI is a cluster CA that issues credentials to test nodes, whose
// identifiers are their node IDs in decimal.
type testPKI struct {
	ca *pki.CA
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca}
}

// creds issues credentials for identifier in cluster "test".
func (p *testPKI) creds(t testing.TB, identifier string) *pki.Credentials {
	t.Helper()
	return p.credsIn(t, "test", identifier)
}

func (p *testPKI) credsIn(t testing.TB, cluster, identifier string) *pki.Credentials {
	t.Helper()
	id := pki.Identity{Cluster: cluster, Identifier: identifier}
	is, err := p.ca.Issue(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pki.NewCredentials(p.ca.Pool(), is.TLSCertificate(), id)
}

// testNodeID maps a test identifier (a decimal node ID) to its node ID.
func testNodeID(identifier string) uint64 {
	id, _ := strconv.ParseUint(identifier, 10, 64)
	return id
}

// startTLSNode starts node id with TLS on its Mux and its Transport, with
// the given credentials (nil: issued by p for its own ID).
func startTLSNode(t testing.TB, p *testPKI, id uint64, creds *pki.Credentials, muxOpts MuxOptions, opts ...nodeOption) *node {
	t.Helper()
	if creds == nil {
		creds = p.creds(t, strconv.FormatUint(id, 10))
	}
	muxOpts.TLS = creds.ServerTLS()
	opts = append([]nodeOption{func(c *Config) {
		c.TLS = creds.ClientTLS()
		c.NodeID = testNodeID
	}}, opts...)
	return startNodeMux(t, id, muxOpts, opts...)
}

func TestTLSExchange(t *testing.T) {
	p := newTestPKI(t)
	a, b := startTLSNode(t, p, 1, nil, MuxOptions{}), startTLSNode(t, p, 2, nil, MuxOptions{})
	connect(a, b)
	sendUntil(t, a, b, 1)
	sendUntil(t, b, a, 1)
	if !b.mux.TLS() {
		t.Error("Mux.TLS() is false")
	}
	for _, n := range []*node{a, b} {
		if r := n.tr.Refusals(); r != (Refusals{}) {
			t.Errorf("node %d refused streams: %+v", n.id, r)
		}
		if s := n.mux.Stats(); s.Accepted == 0 || s.HandshakeFailed+s.PlainText+s.Unauthenticated+s.Timeouts+s.ConnLimited != 0 {
			t.Errorf("node %d mux stats %+v", n.id, s)
		}
	}
}

func TestTLSLargeMessages(t *testing.T) {
	// Frames larger than a TLS record arrive in pieces: the frame reader's
	// slow path, under TLS.
	p := newTestPKI(t)
	a, b := startTLSNode(t, p, 1, nil, MuxOptions{}), startTLSNode(t, p, 2, nil, MuxOptions{})
	connect(a, b)
	big := strings.Repeat("y", 3<<20)
	var msgs []raftpb.Message
	for i := uint64(1); i <= 6; i++ {
		m := msg(1, 2, i)
		if i%2 == 0 {
			m.Entries = []raftpb.Entry{{Index: i, Term: 1, Data: []byte(big)}}
		}
		msgs = append(msgs, m)
	}
	a.tr.Send(msgs)
	eventually(t, "all messages", func() bool { return b.in.len() == len(msgs) })
	for _, m := range b.in.snapshot() {
		if m.Index%2 == 0 && string(m.Entries[0].Data) != big {
			t.Fatalf("message %d corrupted", m.Index)
		}
	}
}

// TestTLSRefusesImpostors: peers with a certificate from another CA, an
// expired certificate, a certificate of another cluster, a certificate for
// another identifier than the node they claim to be, no certificate, or no
// TLS at all are refused and counted, deliver nothing, and the legitimate
// peers keep talking throughout.
func TestTLSRefusesImpostors(t *testing.T) {
	p := newTestPKI(t)
	a := startTLSNode(t, p, 1, nil, MuxOptions{})
	b := startTLSNode(t, p, 2, nil, MuxOptions{})
	connect(a, b)
	next := sendUntil(t, a, b, 1) + 1

	// Keep the legitimate traffic going, and check it at the end.
	keepTalking := func() { next = sendUntil(t, a, b, next) + 1 }

	other := newTestPKI(t)
	old, err := p.ca.IssueBetween(pki.Identity{Cluster: "test", Identifier: "1"}, nil, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired := pki.NewCredentials(p.ca.Pool(), old.TLSCertificate(), pki.Identity{Cluster: "test", Identifier: "1"})

	// Each impostor claims to be node 1 and dials b as node 1 would. Each
	// case waits for its own refusal (the counter grows past its value
	// when the case starts) and sends at least a few messages, which b
	// must never deliver.
	handshakes := func() uint64 { return b.mux.Stats().HandshakeFailed }
	wrongIdentity := func() uint64 { return b.tr.Refusals().WrongIdentity }
	cases := []struct {
		name    string
		creds   *pki.Credentials
		counter func() uint64 // grows when b refuses the impostor
	}{
		{"other CA", other.creds(t, "1"), handshakes},
		{"expired", expired, handshakes},
		{"other cluster", p.credsIn(t, "prod", "1"), handshakes},
		{"other identifier", p.creds(t, "3"), wrongIdentity},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.counter()
			cl := tc.creds.ClientTLS()
			cl.VerifyConnection = nil // an impostor trusts anyone
			cl.NextProtos = []string{ALPNPeer}
			imp := New(Config{
				LocalID: 1, ClusterName: "test", Deliver: func(raftpb.Message) {},
				TLS: cl, NodeID: func(string) uint64 { return 2 }, // it would accept any server
			})
			defer imp.Close()
			imp.SetPeer(2, b.addr())
			deadline := time.Now().Add(waitTimeout)
			for i := uint64(1); i <= 3 || tc.counter() == before; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("b did not count the refusal: mux %+v, transport %+v", b.mux.Stats(), b.tr.Refusals())
				}
				imp.Send([]raftpb.Message{msg(1, 2, 1_000_000+i)})
				time.Sleep(5 * time.Millisecond)
			}
			keepTalking()
		})
	}
	eventually(t, "refusals logged", func() bool {
		return b.logs.contains("TLS handshake failed") && b.logs.contains("certificate names \"3\"")
	})

	// Plain text, and TLS without a client certificate.
	expectClosed(t, rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(1, 2, "test"), msgFrame(t, msg(1, 2, 2_000_000))))
	eventually(t, "plain text counted", func() bool { return b.mux.Stats().PlainText == 1 })
	noCert := p.creds(t, "1").ClientTLS()
	noCert.GetClientCertificate = nil
	noCert.NextProtos = []string{ALPNPeer}
	before := handshakes()
	// With TLS 1.3 the client's side of the handshake completes before the
	// server has checked the client certificate, so the dial itself may
	// succeed or fail; the refusal is counted either way.
	if c, err := tls.Dial("tcp", b.addr(), noCert); err == nil {
		io.WriteString(c, RaftPreamble)
		c.Write(helloFrame(1, 2, "test"))
		c.Write(msgFrame(t, msg(1, 2, 2_000_001)))
		expectClosed(t, c)
	}
	eventually(t, "no-certificate handshake counted", func() bool { return handshakes() > before })
	keepTalking()

	for _, m := range b.in.snapshot() {
		if m.Index >= 1_000_000 {
			t.Fatalf("b delivered a message from an impostor: %+v", m)
		}
	}
}

func TestTLSPeerWithoutCertWhenHTTPMayHaveNone(t *testing.T) {
	// With AllowHTTPWithoutClientCert, a handshake without a certificate
	// succeeds, but peer streams still need one.
	p := newTestPKI(t)
	b := startTLSNode(t, p, 2, nil, MuxOptions{AllowHTTPWithoutClientCert: true})
	noCert := p.creds(t, "1").ClientTLS()
	noCert.GetClientCertificate = nil
	noCert.NextProtos = []string{ALPNPeer}
	c, err := tls.Dial("tcp", b.addr(), noCert)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, RaftPreamble)
	c.Write(helloFrame(1, 2, "test"))
	c.Write(msgFrame(t, msg(1, 2, 1)))
	expectClosed(t, c)
	eventually(t, "refusal counted", func() bool { return b.mux.Stats().Unauthenticated == 1 })
	if b.in.len() != 0 {
		t.Error("delivered a message from a peer without a certificate")
	}
	// ALPNPeer followed by no known preamble is refused too.
	noCert = p.creds(t, "1").ClientTLS()
	noCert.NextProtos = []string{ALPNPeer}
	c, err = tls.Dial("tcp", b.addr(), noCert)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\n\r\n")
	expectClosed(t, c)
	eventually(t, "refusal counted", func() bool { return b.mux.Stats().Unauthenticated == 2 })
}

func TestTLSDialChecksServerIdentity(t *testing.T) {
	// a believes node 3 lives at b's address: b's certificate names node 2,
	// so a refuses the connection instead of sending node 3's messages.
	p := newTestPKI(t)
	a, b := startTLSNode(t, p, 1, nil, MuxOptions{}), startTLSNode(t, p, 2, nil, MuxOptions{})
	a.tr.SetPeer(3, b.addr())
	a.tr.Send([]raftpb.Message{msg(1, 3, 1)})
	eventually(t, "a to refuse b's certificate", func() bool { return a.tr.Refusals().DialFailed > 0 })
	eventually(t, "a to report 3 unreachable", func() bool { return a.unr.count(3) > 0 })
	if !a.logs.contains("wrong peer certificate") {
		t.Error("refusal not logged")
	}
	if b.in.len() != 0 {
		t.Error("message for node 3 delivered to node 2")
	}
}

func TestTLSInboundPlainStreamRefusedByTLSTransport(t *testing.T) {
	// A Transport that requires TLS refuses a stream that reached it over
	// plain TCP (a Mux without TLS, a misconfiguration).
	p := newTestPKI(t)
	creds := p.creds(t, "2")
	b := startNode(t, 2, func(c *Config) { c.TLS, c.NodeID = creds.ClientTLS(), testNodeID })
	expectClosed(t, rawStream(t, b.addr(), []byte(RaftPreamble), helloFrame(1, 2, "test"), msgFrame(t, msg(1, 2, 1))))
	eventually(t, "refusal", func() bool { return b.tr.Refusals().Unauthenticated == 1 })
	if b.in.len() != 0 {
		t.Error("delivered")
	}
}

func TestTLSHTTP(t *testing.T) {
	p := newTestPKI(t)
	strict := startTLSNode(t, p, 2, nil, MuxOptions{})
	lax := startTLSNode(t, p, 3, nil, MuxOptions{AllowHTTPWithoutClientCert: true})
	for _, n := range []*node{strict, lax} {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			who := "anonymous"
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				who = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			io.WriteString(w, "hello "+who)
		})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(n.mux.HTTPListener()) }()
		t.Cleanup(func() {
			srv.Close()
			<-served
		})
	}
	get := func(cfg *tls.Config, url string) (string, error) {
		ht := &http.Transport{TLSClientConfig: cfg}
		defer ht.CloseIdleConnections()
		resp, err := (&http.Client{Transport: ht, Timeout: waitTimeout}).Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b), err
	}
	admin := p.creds(t, "admin").ClientTLS()
	anon := p.creds(t, "x").ClientTLS()
	anon.GetClientCertificate = nil

	if got, err := get(admin, "https://"+strict.addr()+"/"); err != nil || got != "200 OK hello admin" {
		t.Errorf("HTTPS with a client certificate: %q, %v", got, err)
	}
	if _, err := get(anon, "https://"+strict.addr()+"/"); err == nil {
		t.Error("HTTPS without a client certificate accepted by default")
	}
	if got, err := get(anon, "https://"+lax.addr()+"/"); err != nil || got != "200 OK hello anonymous" {
		t.Errorf("HTTPS without a client certificate, allowed: %q, %v", got, err)
	}
	// Plain HTTP to a TLS peer: refused, with a readable answer.
	resp, err := (&http.Client{Timeout: waitTimeout}).Get("http://" + strict.addr() + "/")
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "requires TLS") {
		t.Errorf("plain HTTP: %s %q", resp.Status, body)
	}
	// The server counts the failed handshake once it has failed on its
	// side, which may be after the client has its error.
	eventually(t, "the refused handshake and plain-text request to be counted", func() bool {
		s := strict.mux.Stats()
		return s.PlainText == 1 && s.HandshakeFailed == 1
	})
	if s := strict.mux.Stats(); s.PlainText != 1 || s.HandshakeFailed != 1 {
		t.Errorf("stats %+v", s)
	}

	// A client that negotiates no ALPN protocol is classified by its bytes.
	noALPN := p.creds(t, "admin").ClientTLS()
	c, err := tls.Dial("tcp", strict.addr(), noALPN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello admin" {
		t.Errorf("no-ALPN HTTP: %q", body)
	}
}

func TestTLSHandshakeTimeout(t *testing.T) {
	p := newTestPKI(t)
	b := startTLSNode(t, p, 2, nil, MuxOptions{PreambleTimeout: 100 * time.Millisecond})
	// A ClientHello that stops after its record header.
	c := dial(t, b.mux.Addr())
	c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
	expectClosed(t, c)
	silent := dial(t, b.mux.Addr())
	expectClosed(t, silent)
	eventually(t, "timeouts counted", func() bool { return b.mux.Stats().Timeouts == 2 })
	// A legitimate peer still gets through.
	a := startTLSNode(t, p, 1, nil, MuxOptions{})
	connect(a, b)
	sendUntil(t, a, b, 1)
}

func TestConnState(t *testing.T) {
	if _, ok := ConnState(&replayConn{Conn: nil}); ok {
		t.Error("ConnState found TLS in a nil chain")
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if _, ok := ConnState(replay(c1, []byte("x"))); ok {
		t.Error("plain pipe reported as TLS")
	}
	tc := tls.Client(c1, &tls.Config{})
	if _, ok := ConnState(replay(tc, []byte("x"))); !ok {
		t.Error("TLS behind replay not found")
	}
}

// TestTLSIdentityComparedByIdentifier: a member's certificate must name
// that member's identifier exactly. NodeID is a 64-bit hash that can be
// made to collide: here "evil" and "evil2" map to the node IDs of members
// "1" and "2", yet their certificates are refused, inbound and outbound.
// A node that is no member yet (a joiner) is still checked by NodeID.
func TestTLSIdentityComparedByIdentifier(t *testing.T) {
	p := newTestPKI(t)
	collide := func(identifier string) uint64 {
		switch identifier {
		case "evil":
			return 1
		case "evil2":
			return 2
		}
		return testNodeID(identifier)
	}
	members := func(id uint64) (string, bool) {
		if id == 1 || id == 2 {
			return strconv.FormatUint(id, 10), true
		}
		return "", false
	}
	withIDs := func(c *Config) { c.NodeID, c.Identifier = collide, members }
	b := startTLSNode(t, p, 2, nil, MuxOptions{}, withIDs)

	// Inbound: "evil" claims to be member 1.
	imp := startTLSNode(t, p, 1, p.creds(t, "evil"), MuxOptions{}, withIDs)
	imp.tr.SetPeer(2, b.addr())
	for i := uint64(1); b.tr.Refusals().WrongIdentity == 0; i++ {
		if i > 2000 {
			t.Fatal("the certificate of \"evil\" was not refused as member 1")
		}
		imp.tr.Send([]raftpb.Message{msg(1, 2, i)})
		time.Sleep(10 * time.Millisecond)
	}
	if !b.logs.contains(`node 1 is member "1"`) {
		t.Error("refusal not logged with the member's identifier")
	}

	// Outbound: member 1 dials member 2's address, where "evil2" answers.
	evil2 := startTLSNode(t, p, 2, p.creds(t, "evil2"), MuxOptions{}, withIDs)
	a := startTLSNode(t, p, 1, nil, MuxOptions{}, withIDs)
	a.tr.SetPeer(2, evil2.addr())
	a.tr.Send([]raftpb.Message{msg(1, 2, 1)})
	eventually(t, "a to refuse the certificate of \"evil2\"", func() bool { return a.tr.Refusals().DialFailed > 0 })
	if b.in.len() != 0 || evil2.in.len() != 0 {
		t.Errorf("messages delivered: %d to b, %d to evil2", b.in.len(), evil2.in.len())
	}

	// A joiner, no member yet, with a certificate for its own identifier.
	j := startTLSNode(t, p, 5, nil, MuxOptions{}, withIDs)
	j.tr.SetPeer(2, b.addr())
	sendUntil(t, j, b, 1)
	// And member 1 itself.
	a.tr.SetPeer(2, b.addr())
	sendUntil(t, a, b, 1)
}
