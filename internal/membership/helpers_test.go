package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/transport"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// waitTimeout is generous: the tests must pass on a loaded 2-core machine
// with the race detector.
const waitTimeout = 60 * time.Second

// eventually polls cond until it holds, failing the test after waitTimeout.
func eventually(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// fastConfig has timings short enough for tests yet safe on a loaded
// machine.
func fastConfig(c *Config) {
	c.Profile = ProfileLocal
	c.ProbeInterval = 300 * time.Millisecond
	c.ProbeTimeout = 150 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 5 * time.Second
}

// testNode is one member plus its Mux and recorded events.
type testNode struct {
	*Membership
	name   string
	addr   string
	mux    *transport.Mux
	events *eventLog
	logs   *logRecorder
}

// startNode starts a member on 127.0.0.1 with an OS-chosen port: it binds
// TCP port 0 through a Mux, then UDP on the same number, retrying with a new
// port if that UDP port is taken. mutate, if not nil, adjusts the Config;
// it gets the node with its addr already set.
func startNode(t testing.TB, name string, mutate func(*Config, *testNode)) *testNode {
	t.Helper()
	return startNodeMux(t, name, transport.MuxOptions{}, mutate)
}

// startNodeMux is startNode with options for the node's Mux.
func startNodeMux(t testing.TB, name string, muxOpts transport.MuxOptions, mutate func(*Config, *testNode)) *testNode {
	t.Helper()
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mux := transport.NewMux(ln, muxOpts)
		n := &testNode{name: name, addr: ln.Addr().String(), mux: mux, events: newEventLog(), logs: newLogRecorder()}
		cfg := DefaultConfig()
		cfg.Name = name
		cfg.Mux = mux
		cfg.ClusterName = "test"
		cfg.Meta = []byte("meta-" + name)
		cfg.RejoinInterval = 0
		cfg.Events = n.events.add
		cfg.Logger = slog.New(n.logs)
		fastConfig(&cfg)
		if mutate != nil {
			mutate(&cfg, n)
		}
		m, err := New(cfg)
		if errors.Is(err, syscall.EADDRINUSE) && attempt < 20 {
			mux.Close()
			continue
		}
		if err != nil {
			mux.Close()
			t.Fatalf("New(%s): %v", name, err)
		}
		n.Membership = m
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := mux.Serve(); err != nil {
				t.Errorf("mux.Serve: %v", err)
			}
		}()
		t.Cleanup(func() {
			n.Shutdown()
			mux.Close()
			<-served
		})
		return n
	}
}

// startCluster starts n members named prefix0..prefixN-1; the others join
// the first. It does not wait for convergence.
func startCluster(t testing.TB, prefix string, n int, mutate func(*Config, *testNode)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, fmt.Sprintf("%s%02d", prefix, i), mutate)
		if i > 0 {
			if _, err := nodes[i].Join(context.Background(), []string{nodes[0].addr}); err != nil {
				t.Fatalf("%s join: %v", nodes[i].name, err)
			}
		}
	}
	return nodes
}

// liveNames returns the names node sees alive, sorted.
func liveNames(n *testNode) []string {
	var out []string
	for _, m := range n.Members() {
		if m.State == StateAlive {
			out = append(out, m.Name)
		}
	}
	return out
}

// converged reports whether every node sees exactly want alive.
func converged(nodes []*testNode, want []string) bool {
	for _, n := range nodes {
		if !slices.Equal(liveNames(n), want) {
			return false
		}
	}
	return true
}

func names(nodes []*testNode) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.name
	}
	slices.Sort(out)
	return out
}

// stateOf returns the state node sees for name, and false if unknown.
func stateOf(n *testNode, name string) (State, bool) {
	m, ok := memberOf(n, name)
	return m.State, ok
}

// memberOf returns what n knows of the member called name.
func memberOf(n *testNode, name string) (Member, bool) {
	for _, m := range n.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// eventLog records events with their arrival time.
type eventLog struct {
	mu     sync.Mutex
	events []timedEvent
}

type timedEvent struct {
	Event
	at time.Time
}

func newEventLog() *eventLog { return &eventLog{} }

func (l *eventLog) add(ev Event) {
	l.mu.Lock()
	l.events = append(l.events, timedEvent{ev, time.Now()})
	l.mu.Unlock()
}

// first returns the first event of type t about name.
func (l *eventLog) first(t EventType, name string) (timedEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Type == t && e.Member.Name == name {
			return e, true
		}
	}
	return timedEvent{}, false
}

// about returns the types of the events about name, in order.
func (l *eventLog) about(name string) []EventType {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []EventType
	for _, e := range l.events {
		if e.Member.Name == name {
			out = append(out, e.Type)
		}
	}
	return out
}

// logRecorder is a slog.Handler keeping every message in memory, and
// echoing to stderr when QC_TEST_LOG is set.
type logRecorder struct {
	mu    *sync.Mutex
	lines *[]string
}

func newLogRecorder() *logRecorder { return &logRecorder{mu: new(sync.Mutex), lines: new([]string)} }

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	if len(*h.lines) < 100000 {
		*h.lines = append(*h.lines, b.String())
	}
	h.mu.Unlock()
	if os.Getenv("QC_TEST_LOG") != "" {
		fmt.Fprintln(os.Stderr, b.String())
	}
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// contains reports whether some logged line contains s.
func (h *logRecorder) contains(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range *h.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// partition is a Filter shared by a set of members: while active, traffic
// flows only between members of the same group.
type partition struct {
	mu     sync.RWMutex
	active bool
	group  map[string]int // addr -> group
}

func newPartition() *partition { return &partition{group: make(map[string]int)} }

// filterFor returns the Filter for member n.
func (p *partition) filterFor(n *testNode) func(string) bool {
	self := n.addr
	return func(addr string) bool {
		p.mu.RLock()
		defer p.mu.RUnlock()
		return !p.active || p.group[self] == p.group[addr]
	}
}

func (p *partition) split(groups ...[]*testNode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, g := range groups {
		for _, n := range g {
			p.group[n.addr] = i
		}
	}
	p.active = true
}

func (p *partition) heal() {
	p.mu.Lock()
	p.active = false
	p.mu.Unlock()
}

// memInUse returns the live heap plus goroutine stacks after a full
// collection (a goroutine's buffers may live on its stack).
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// startNodeAt starts a member whose Mux listens on addr.
func startNodeAt(t testing.TB, name, addr string) (*testNode, error) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := transport.NewMux(ln, transport.MuxOptions{})
	n := &testNode{name: name, addr: addr, mux: mux, events: newEventLog(), logs: newLogRecorder()}
	cfg := DefaultConfig()
	cfg.Name, cfg.Mux, cfg.ClusterName, cfg.Meta = name, mux, "test", []byte("meta-"+name)
	cfg.Events, cfg.Logger = n.events.add, slog.New(n.logs)
	fastConfig(&cfg)
	m, err := New(cfg)
	if err != nil {
		mux.Close()
		return nil, err
	}
	n.Membership = m
	served := make(chan struct{})
	go func() { defer close(served); _ = mux.Serve() }()
	t.Cleanup(func() {
		n.Shutdown()
		mux.Close()
		<-served
	})
	return n, nil
}
