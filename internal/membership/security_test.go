package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/transport"
)

func gossipKey(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// withKeys sets the gossip keyring.
func withKeys(keys ...[]byte) func(*Config, *testNode) {
	return func(c *Config, _ *testNode) { c.GossipKeys = keys }
}

// noSuspicion fails the test if any node reported any other as suspect,
// failed or left.
func noSuspicion(t *testing.T, nodes []*testNode) {
	t.Helper()
	for _, n := range nodes {
		for _, o := range nodes {
			for _, ev := range n.events.about(o.name) {
				if ev == EventSuspect || ev == EventFailed || ev == EventLeft {
					t.Errorf("%s reported %s %v: %v", n.name, o.name, ev, n.events.about(o.name))
				}
			}
		}
	}
}

func TestGossipEncryption(t *testing.T) {
	k := gossipKey(1, 32)
	nodes := startCluster(t, "e", 3, withKeys(k))
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	// Large metadata (fetched over a stream) and small (in the gossip).
	big := bytes.Repeat([]byte("m"), InlineMetaSize+100)
	if err := nodes[0].SetMeta(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	eventually(t, "large metadata", func() bool {
		for _, m := range nodes[2].Members() {
			if m.Name == nodes[0].name {
				return bytes.Equal(m.Meta, big)
			}
		}
		return false
	})
	for _, n := range nodes {
		if s := n.Stats(); s.PacketsReceived == 0 || s.RejectedPackets != 0 || s.SecondaryKeyPackets != 0 {
			t.Errorf("%s stats %+v", n.name, s)
		}
		if keys := n.Keys(); len(keys) != 1 || !bytes.Equal(keys[0], k) {
			t.Errorf("%s keys %x", n.name, keys)
		}
	}
	// The observer reads encrypted gossip: a graceful leave is reported as
	// a leave (it decodes the leaver's dead message), not as a failure.
	leaver := nodes[2]
	if err := leaver.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[:2] {
		eventually(t, n.name+" to see the leave", func() bool {
			st, _ := stateOf(n, leaver.name)
			return st == StateLeft
		})
		if _, failed := n.events.first(EventFailed, leaver.name); failed {
			t.Errorf("%s reported the leaver failed", n.name)
		}
	}
}

func TestWrongGossipKeyCannotJoin(t *testing.T) {
	nodes := startCluster(t, "k", 2, withKeys(gossipKey(1, 16)))
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	for _, tc := range []struct {
		name string
		keys [][]byte
	}{
		{"wrongkey", [][]byte{gossipKey(2, 16)}},
		{"nokey", nil},
		{"otherlen", [][]byte{gossipKey(1, 32)}},
	} {
		intruder := startNode(t, tc.name, withKeys(tc.keys...))
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		n, err := intruder.Join(ctx, []string{nodes[0].addr})
		cancel()
		if n != 0 || !errors.Is(err, ErrJoin) {
			t.Errorf("%s: Join = %d, %v; want 0, ErrJoin", tc.name, n, err)
		}
		if got := liveNames(intruder); !slices.Equal(got, []string{tc.name}) {
			t.Errorf("%s sees %v", tc.name, got)
		}
		intruder.Shutdown()
	}
	// A packet sealed with another key, or in plain text, is rejected and
	// counted; the cluster never lists the intruders.
	before := nodes[0].Stats().RejectedPackets
	c, err := net.Dial("udp", nodes[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	label := append([]byte{wireHasLabel, byte(len("test"))}, "test"...)
	c.Write(append(label, []byte{1, 2, 3, 4, 5}...))                                    // plain text
	c.Write(append(label, append([]byte{1}, bytes.Repeat([]byte{7}, 40)...)...))        // garbage sealed
	c.Write(append([]byte{wireHasLabel, 5}, append([]byte("other"), 1, 2, 3, 4, 5)...)) // another cluster
	eventually(t, "rejected packets counted", func() bool { return nodes[0].Stats().RejectedPackets >= before+3 })
	for _, n := range nodes {
		if got := liveNames(n); !slices.Equal(got, names(nodes)) {
			t.Errorf("%s sees %v", n.name, got)
		}
	}
}

func TestKeyRotationWithoutSuspicion(t *testing.T) {
	old, next := gossipKey(1, 32), gossipKey(2, 32)
	nodes := startCluster(t, "r", 3, withKeys(old))
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	// packetsAfter waits until every node has received more packets than
	// when it was called: gossip sent before has been handed over.
	packetsAfter := func(what string) {
		t.Helper()
		base := make([]uint64, len(nodes))
		for i, n := range nodes {
			base[i] = n.Stats().PacketsReceived
		}
		eventually(t, what, func() bool {
			for i, n := range nodes {
				if n.Stats().PacketsReceived < base[i]+3 {
					return false
				}
			}
			return true
		})
	}

	for _, n := range nodes {
		if err := n.InstallKey(next); err != nil {
			t.Fatal(err)
		}
	}
	packetsAfter("gossip with both keys installed")
	for _, n := range nodes {
		if err := n.UseKey(next); err != nil {
			t.Fatal(err)
		}
	}
	// Remove the old key once nobody sends with it any more: the
	// secondary-key counters stop growing everywhere.
	eventually(t, "every member to use the new key", func() bool {
		before := make([]uint64, len(nodes))
		for i, n := range nodes {
			before[i] = n.Stats().SecondaryKeyPackets
		}
		packetsAfter("gossip with the new key")
		for i, n := range nodes {
			if n.Stats().SecondaryKeyPackets != before[i] {
				return false
			}
		}
		return true
	})
	rejected := make([]uint64, len(nodes))
	for i, n := range nodes {
		rejected[i] = n.Stats().RejectedPackets
		if err := n.RemoveKey(old); err != nil {
			t.Fatal(err)
		}
		if keys := n.Keys(); len(keys) != 1 || !bytes.Equal(keys[0], next) {
			t.Fatalf("%s keys after rotation: %x", n.name, keys)
		}
	}
	// Gossip keeps flowing for a few probe rounds, with nothing rejected
	// and nobody suspected.
	for range 3 {
		packetsAfter("gossip after the rotation")
	}
	for i, n := range nodes {
		if s := n.Stats(); s.RejectedPackets != rejected[i] {
			t.Errorf("%s rejected %d packets after the rotation", n.name, s.RejectedPackets-rejected[i])
		}
	}
	noSuspicion(t, nodes)
	if !converged(nodes, names(nodes)) {
		t.Error("the cluster no longer agrees after the rotation")
	}

	// Only the new key gets in now.
	newcomer := startNode(t, "rnew", withKeys(next))
	if _, err := newcomer.Join(context.Background(), []string{nodes[1].addr}); err != nil {
		t.Fatalf("join with the new key: %v", err)
	}
	stale := startNode(t, "rstale", withKeys(old))
	if _, err := stale.Join(context.Background(), []string{nodes[1].addr}); !errors.Is(err, ErrJoin) {
		t.Fatalf("join with the old key: %v", err)
	}
	all := append(slices.Clone(nodes), newcomer)
	eventually(t, "newcomer", func() bool { return converged(all, names(all)) })
	noSuspicion(t, all)
}

func TestKeyringCalls(t *testing.T) {
	a, b, c := gossipKey(1, 16), gossipKey(2, 24), gossipKey(3, 32)
	n := startNode(t, "kr", withKeys(a))
	for _, k := range [][]byte{b, c, b} {
		if err := n.InstallKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Keys(); len(got) != 3 || !bytes.Equal(got[0], a) {
		t.Fatalf("keys %x", got)
	}
	if err := n.InstallKey(gossipKey(4, 20)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("InstallKey(20 bytes) = %v", err)
	}
	if err := n.UseKey(gossipKey(9, 16)); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("UseKey(unknown) = %v", err)
	}
	if err := n.RemoveKey(a); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "primary") {
		t.Errorf("RemoveKey(primary) = %v", err)
	}
	// Removing a key that is not last keeps the others, in order.
	if err := n.RemoveKey(b); err != nil {
		t.Fatal(err)
	}
	if got := n.Keys(); len(got) != 2 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], c) {
		t.Fatalf("keys after removing the middle one: %x", got)
	}
	if err := n.RemoveKey(b); err != nil {
		t.Errorf("RemoveKey(absent) = %v", err)
	}
	if err := n.UseKey(c); err != nil {
		t.Fatal(err)
	}
	if got := n.Keys(); !bytes.Equal(got[0], c) {
		t.Errorf("primary after UseKey: %x", got[0])
	}
	got := n.Keys()
	got[0][0] = 0xff
	if n.Keys()[0][0] == 0xff {
		t.Error("Keys shares the keyring's memory")
	}

	plain := startNode(t, "plain", nil)
	for _, err := range []error{plain.InstallKey(a), plain.UseKey(a), plain.RemoveKey(a)} {
		if !errors.Is(err, ErrNoEncryption) {
			t.Errorf("without encryption: %v", err)
		}
	}
	if plain.Keys() != nil {
		t.Error("Keys without encryption")
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.Mux, cfg.GossipKeys = "x", plain.mux, [][]byte{gossipKey(1, 10)}
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "GossipKeys[0]") {
		t.Errorf("Validate(short key) = %v", err)
	}
}

// tlsSetup gives a member TLS credentials from ca for its name (nil ca: a
// fresh, foreign CA), and gossip encryption.
func tlsSetup(ca *pki.CA, authorize func(string) error) (transport.MuxOptions, func(*Config, *testNode), func(name string) *pki.Credentials) {
	creds := func(name string) *pki.Credentials {
		c := ca
		if c == nil {
			c, _ = pki.NewCA("foreign", time.Hour)
		}
		id := pki.Identity{Cluster: "test", Identifier: name}
		is, err := c.Issue(id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			panic(err)
		}
		return pki.NewCredentials(c.Pool(), is.TLSCertificate(), id)
	}
	return transport.MuxOptions{}, func(cfg *Config, _ *testNode) {
		cfg.GossipKeys = [][]byte{gossipKey(5, 32)}
		cfg.Authorize = authorize
	}, creds
}

// startTLSNode starts a member whose Mux and streams use creds.
func startTLSNode(t *testing.T, name string, creds *pki.Credentials, mutate func(*Config, *testNode)) *testNode {
	t.Helper()
	return startNodeMux(t, name, transport.MuxOptions{TLS: creds.ServerTLS()}, func(c *Config, n *testNode) {
		c.TLS = creds.ClientTLS()
		if mutate != nil {
			mutate(c, n)
		}
	})
}

func TestTLSMembership(t *testing.T) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	refuse := func(id string) error {
		if strings.HasPrefix(id, "banned") {
			return fmt.Errorf("%s is banned", id)
		}
		return nil
	}
	_, mutate, creds := tlsSetup(ca, refuse)
	var nodes []*testNode
	for i := range 3 {
		name := fmt.Sprintf("t%d", i)
		n := startTLSNode(t, name, creds(name), mutate)
		if i > 0 {
			if _, err := n.Join(context.Background(), []string{nodes[0].addr}); err != nil {
				t.Fatalf("%s join: %v", name, err)
			}
		}
		nodes = append(nodes, n)
	}
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	big := bytes.Repeat([]byte("b"), InlineMetaSize+1)
	if err := nodes[1].SetMeta(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	eventually(t, "large metadata over TLS", func() bool {
		for _, m := range nodes[0].Members() {
			if m.Name == nodes[1].name {
				return bytes.Equal(m.Meta, big)
			}
		}
		return false
	})

	// Refused: a member with another CA's certificate (at the TLS
	// handshake), one whose identifier Authorize refuses (by the member),
	// and one without TLS (by the Mux).
	_, _, foreign := tlsSetup(nil, nil)
	intruders := []*testNode{
		startTLSNode(t, "foreign", foreign("foreign"), mutate),
		startTLSNode(t, "banned1", creds("banned1"), mutate),
		startNode(t, "plaintext", func(c *Config, _ *testNode) { c.GossipKeys = [][]byte{gossipKey(5, 32)} }),
	}
	for _, in := range intruders {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		n, err := in.Join(ctx, []string{nodes[0].addr})
		cancel()
		if n != 0 || !errors.Is(err, ErrJoin) {
			t.Errorf("%s: Join = %d, %v; want 0, ErrJoin", in.name, n, err)
		}
	}
	if s := nodes[0].Stats(); s.RefusedStreams == 0 {
		t.Errorf("banned member's stream not counted: %+v", s)
	}
	if s := nodes[0].mux.Stats(); s.HandshakeFailed == 0 || s.PlainText == 0 {
		t.Errorf("mux stats %+v", s)
	}
	if !nodes[0].logs.contains("banned1 is banned") {
		t.Error("refusal not logged")
	}
	for _, n := range nodes {
		if got := liveNames(n); !slices.Equal(got, names(nodes)) {
			t.Errorf("%s sees %v", n.name, got)
		}
	}
	noSuspicion(t, nodes)

	// A plain stream that reaches the handler directly (a Mux without TLS
	// in front of a TLS member) is refused too.
	if err := nodes[0].authenticate(&net.TCPConn{}); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("authenticate(plain) = %v", err)
	}
}

func TestOpenSealedPackets(t *testing.T) {
	// Packets sealed as memberlist seals them (security.go): version 1
	// without padding, version 0 with PKCS #7 padding; the label is the
	// additional data.
	oldKey, newKey := gossipKey(1, 16), gossipKey(2, 32)
	cs, err := newGossipCiphers([][]byte{newKey, oldKey})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte{wireHasCRC, 0, 0, 0, 0} // any payload
	seal := func(key []byte, vsn byte, label string) []byte {
		c, _ := newGossipCiphers([][]byte{key})
		nonce := bytes.Repeat([]byte{9}, wireNonceSize)
		plain := msg
		if vsn == 0 {
			pad := 16 - len(msg)%16
			plain = append(slices.Clone(msg), bytes.Repeat([]byte{byte(pad)}, pad)...)
		}
		out := append([]byte{vsn}, nonce...)
		return c[0].Seal(out, nonce, plain, []byte(label))
	}
	for _, tc := range []struct {
		name    string
		pkt     []byte
		wantKey int
	}{
		{"v1 primary", seal(newKey, 1, "test"), 0},
		{"v1 secondary", seal(oldKey, 1, "test"), 1},
		{"v0 padded", seal(oldKey, 0, "test"), 1},
	} {
		plain, key, err := cs.open(tc.pkt, "test")
		if err != nil || key != tc.wantKey || !bytes.Equal(plain, msg) {
			t.Errorf("%s: %x key %d err %v", tc.name, plain, key, err)
		}
	}
	for _, bad := range [][]byte{
		seal(newKey, 1, "other"),          // another label
		seal(gossipKey(3, 16), 1, "test"), // unknown key
		{1, 2, 3},                         // too short
		append([]byte{7}, seal(newKey, 1, "test")[1:]...), // unknown version
	} {
		if _, _, err := cs.open(bad, "test"); !errors.Is(err, errWireDecrypt) {
			t.Errorf("open(%x) = %v", bad[:4], err)
		}
	}
	// Through decodeSealed, with the label header.
	pkt := append([]byte{wireHasLabel, 4}, append([]byte("test"), seal(oldKey, 1, "test")...)...)
	if key, err := decodeSealed(pkt, "test", cs, func(gossipMsg) {}); err != nil || key != 1 {
		t.Errorf("decodeSealed: key %d, %v", key, err)
	}
}

func TestUnnamedAndNamedClustersStayApart(t *testing.T) {
	// An empty cluster name is a name like any other: a member without one
	// and a member with one refuse each other, whoever joins whom.
	unnamed := startNode(t, "u", func(c *Config, _ *testNode) { c.ClusterName = "" })
	named := startNode(t, "n", nil) // "test"
	for _, tc := range []struct{ from, to *testNode }{{unnamed, named}, {named, unnamed}} {
		n, err := tc.from.Join(context.Background(), []string{tc.to.addr})
		if n != 0 || !errors.Is(err, ErrJoin) {
			t.Errorf("%s joining %s = %d, %v; want 0, ErrJoin", tc.from.name, tc.to.name, n, err)
		}
		eventually(t, tc.to.name+" to refuse the stream", func() bool { return tc.to.logs.contains("unacceptable label") })
	}
	for _, n := range []*testNode{unnamed, named} {
		if got := liveNames(n); !slices.Equal(got, []string{n.name}) {
			t.Errorf("%s sees %v", n.name, got)
		}
	}
	// A packet with the other's label (or none) is rejected and counted.
	before := named.Stats().RejectedPackets
	c, err := net.Dial("udp", named.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{wireAlive, 0x80}) // no label
	eventually(t, "unlabelled packet rejected", func() bool { return named.Stats().RejectedPackets > before })
}
