package proccluster

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/testpeers"
)

func TestName(t *testing.T) {
	for i, want := range map[int]string{0: "server_a", 2: "server_c", 25: "server_z", 26: "server_26"} {
		if got := Name(i); got != want {
			t.Errorf("Name(%d) = %q, want %q", i, got, want)
		}
	}
}

// TestWriteConfigLoads checks that the configs the package writes are
// valid QCluster configs that describe the cluster.
func TestWriteConfigLoads(t *testing.T) {
	c := &Cluster{opts: Options{Peers: 3, Dir: t.TempDir(), Heartbeat: 20 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond}.withDefaults()}
	for i := range 3 {
		c.Peers = append(c.Peers, &Peer{ID: Name(i), Host: "127.0.0.1", Port: 7001 + i, c: c,
			ConfigPath: c.opts.Dir + "/" + Name(i) + ".json", DataDir: c.opts.Dir + "/" + Name(i) + ".data"})
	}
	for _, p := range c.Peers {
		if err := p.writeConfig(); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := qcluster.LoadConfig(c.Peers[1].ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Identifier != "server_b" || cfg.ListenPort != 7002 || cfg.DataDir != c.Peers[1].DataDir {
		t.Errorf("config = %+v, want server_b on 7002 in %s", cfg, c.Peers[1].DataDir)
	}
	if time.Duration(cfg.HeartbeatInterval) != 20*time.Millisecond || time.Duration(cfg.ElectionTimeout) != 100*time.Millisecond {
		t.Errorf("timings = %v/%v, want 20ms/100ms", cfg.HeartbeatInterval, cfg.ElectionTimeout)
	}
	var peers []string
	for _, p := range cfg.Peers {
		peers = append(peers, p.Identifier+"@"+p.Addr())
	}
	if got, want := strings.Join(peers, ","), "server_a@127.0.0.1:7001,server_c@127.0.0.1:7003"; got != want {
		t.Errorf("peers = %s, want %s", got, want)
	}
	if cfg.ClusterKey != "" || cfg.Secured() {
		t.Errorf("cluster_key = %q without Options.ClusterKey", cfg.ClusterKey)
	}

	// With a cluster key, every config has it, readable by its owner only.
	key := pki.NewClusterKey()
	c.opts.ClusterKey = key
	if err := c.Peers[0].writeConfig(); err != nil {
		t.Fatal(err)
	}
	if cfg, err = qcluster.LoadConfig(c.Peers[0].ConfigPath); err != nil || cfg.ClusterKey != key || !cfg.Secured() {
		t.Errorf("config with Options.ClusterKey: cluster_key %q, %v; want %q", cfg.ClusterKey, err, key)
	}
	if fi, err := os.Stat(c.Peers[0].ConfigPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config with a cluster key: mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// TestStatusOverTLS polls a peer that has a cluster key: over HTTPS with a
// client certificate derived from the key.
func TestStatusOverTLS(t *testing.T) {
	key := pki.NewClusterKey()
	tp := testpeers.Start(t, 1, func(c *qcluster.Config) { c.ClusterKey = key })
	peerOf := func(c *Cluster) *Peer {
		cfg := tp.Configs[0]
		return &Peer{ID: cfg.Identifier, Host: "127.0.0.1", Port: cfg.ListenPort, c: c}
	}
	c, err := newCluster(Options{ClusterKey: key}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := peerOf(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := c.WaitAgreed(ctx, []*Peer{p}, 0, nil)
	if err != nil || a.Leader != p {
		t.Fatalf("WaitAgreed over TLS: %+v, %v", a, err)
	}
	// Its metrics, over TLS too: by name, by name and labels; a series
	// that is not there is an error, not 0.
	if v, err := p.Metric(ctx, "qcluster_elections_won_total"); err != nil || v < 1 {
		t.Errorf("Metric(elections won) = %v, %v; want at least 1", v, err)
	}
	if v, err := p.Metric(ctx, "qcluster_leader_gone_reports_total", "result", "taken"); err != nil || v != 0 {
		t.Errorf("Metric(gone reports taken) = %v, %v; want 0", v, err)
	}
	for _, q := range [][]string{{"qcluster_no_such_total"}, {"qcluster_leader_gone_reports_total", "result", "nope"}} {
		if v, err := p.Metric(ctx, q[0], q[1:]...); err == nil {
			t.Errorf("Metric(%v) = %v, want an error", q, v)
		}
	}

	// Without the key the peer refuses plain HTTP.
	plain, err := newCluster(Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := peerOf(plain).Status(ctx); err == nil || !strings.Contains(err.Error(), "requires TLS") {
		t.Errorf("Status in plain HTTP from a TLS peer: %v, want a refusal", err)
	}
	if _, err := newCluster(Options{ClusterKey: "not a key"}.withDefaults()); err == nil {
		t.Error("newCluster with a bad cluster key succeeded")
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// TestSDKLogParseEvents checks that the leadership records the SDK writes,
// ParseEvents reads back: a cluster of one logs "no leader", then leads.
func TestSDKLogParseEvents(t *testing.T) {
	var buf lockedBuffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := qcluster.DefaultConfig()
	cfg.Identifier = "server_a"
	cfg.Listener = ln
	cfg.DataDir = t.TempDir()
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	c, err := qcluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	buf.buf.WriteString("panic: not JSON\n{\"msg\": \"leadership changed\", \"term\": \"bad\"}\n")

	evs, err := ParseEvents(&buf.buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 2 {
		t.Fatalf("ParseEvents = %+v, want at least 2 events", evs)
	}
	first, last := evs[0], evs[len(evs)-1]
	if first.Peer != "server_a" || first.Leader != "" || first.IsLeader || first.Time.IsZero() {
		t.Errorf("first event %+v, want server_a without a leader", first)
	}
	if last.Peer != "server_a" || last.Leader != "server_a" || !last.IsLeader || last.Role != "leader" || last.Term < 2 {
		t.Errorf("last event %+v, want server_a leading", last)
	}
	if !last.Names("server_a") || last.Names("server_b") || first.Names("server_a") {
		t.Errorf("Names is wrong for %+v", evs)
	}
}

func TestNamedSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	evs := []Event{
		{Time: at(0), Peer: "a", Leader: "b", Term: 2},   // before the kill
		{Time: at(160), Peer: "a", Term: 2},              // no leader
		{Time: at(180), Peer: "a", Leader: "c", Term: 3}, // follows c
		{Time: at(250), Peer: "a", Term: 3},              // lost it
		{Time: at(400), Peer: "a", Leader: "c", Term: 5}, // follows c again
		{Time: at(900), Peer: "a", Leader: "d", Term: 6},
	}
	tests := []struct {
		leader       string
		after, until int
		want         int // -1: not named
	}{
		{"c", 10, 200, 180},
		{"c", 10, 300, -1},
		{"c", 10, 500, 400},
		{"c", 10, 1000, -1},
		{"b", 10, 100, -1}, // named before the kill only
		{"b", -1, 100, 0},
	}
	for _, tt := range tests {
		got, ok := NamedSince(evs, tt.leader, at(tt.after), at(tt.until))
		switch {
		case tt.want < 0 && ok:
			t.Errorf("NamedSince(%s, %d, %d) = %v, want not named", tt.leader, tt.after, tt.until, got.Sub(t0))
		case tt.want >= 0 && (!ok || !got.Equal(at(tt.want))):
			t.Errorf("NamedSince(%s, %d, %d) = %v, %v; want %dms", tt.leader, tt.after, tt.until, got.Sub(t0), ok, tt.want)
		}
	}
	// The new leader counts only once it holds its lease.
	self := []Event{
		{Time: at(170), Peer: "c", Leader: "c", Term: 3, Role: "leader"},
		{Time: at(175), Peer: "c", Leader: "c", Term: 3, Role: "leader", IsLeader: true},
	}
	if got, ok := NamedSince(self, "c", at(0), at(200)); !ok || !got.Equal(at(175)) {
		t.Errorf("NamedSince(leader itself) = %v, %v; want 175ms", got.Sub(t0), ok)
	}
}

func TestAgreement(t *testing.T) {
	a, b, c := &Peer{ID: "a"}, &Peer{ID: "b"}, &Peer{ID: "c"}
	st := func(p *Peer, leader string, isLeader bool, term uint64) PeerStatus {
		s := PeerStatus{Peer: p, Status: api.Status{Identifier: p.ID, Term: term, IsLeader: isLeader}}
		if leader != "" {
			s.Status.Leader = &api.Peer{Identifier: leader}
		}
		return s
	}
	if got, ok := agreement([]PeerStatus{st(a, "b", false, 2), st(b, "b", true, 2), st(c, "b", false, 2)}); !ok || got.Leader != b || got.Term != 2 {
		t.Errorf("agreement = %+v, %v; want b in term 2", got, ok)
	}
	for name, sts := range map[string][]PeerStatus{
		"split":              {st(a, "b", false, 2), st(b, "b", true, 2), st(c, "a", false, 2)},
		"one without leader": {st(a, "b", false, 2), st(b, "b", true, 2), st(c, "", false, 2)},
		"leader not polled":  {st(a, "c", false, 2), st(b, "c", false, 2)},
		"leader no lease":    {st(a, "b", false, 2), st(b, "b", false, 2)},
		"unreachable":        {st(a, "b", false, 2), {Peer: b, Err: net.ErrClosed}},
		"empty":              nil,
	} {
		if got, ok := agreement(sts); ok {
			t.Errorf("%s: agreement = %+v, want none", name, got)
		}
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts("127.0.0.1", 5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("FreePorts = %v: want 5 distinct ports", ports)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d from FreePorts is not free: %v", p, err)
		}
		ln.Close()
	}
}
