package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if parent := os.Getenv(childEnvParent); parent != "" {
		runChild(parent) // until killed
	}
	goleak.VerifyTestMain(m)
}

// waitTimeout is generous: the tests must pass on a loaded 2-core machine.
const waitTimeout = 20 * time.Second

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// within fails the test if f does not return within d.
func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// logRecorder is a slog.Handler that keeps every record's message and
// attributes in memory.
type logRecorder struct {
	mu    *sync.Mutex
	lines *[]string
	attrs string
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), lines: new([]string)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	*h.lines = append(*h.lines, b.String())
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	for _, a := range as {
		c.attrs += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return &c
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// contains reports whether some recorded line contains s.
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

// inbox collects delivered messages.
type inbox struct {
	mu   sync.Mutex
	msgs []raftpb.Message
}

func (b *inbox) deliver(m raftpb.Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

func (b *inbox) snapshot() []raftpb.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]raftpb.Message(nil), b.msgs...)
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

// has reports whether a message with the given From and Index was delivered.
func (b *inbox) has(from, index uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		if m.From == from && m.Index == index {
			return true
		}
	}
	return false
}

// unreachables counts Unreachable callbacks per peer.
type unreachables struct {
	mu sync.Mutex
	n  map[uint64]int
}

func (u *unreachables) report(id uint64) {
	u.mu.Lock()
	if u.n == nil {
		u.n = make(map[uint64]int)
	}
	u.n[id]++
	u.mu.Unlock()
}

func (u *unreachables) count(id uint64) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n[id]
}

// node is a Transport served through its own Mux on 127.0.0.1.
type node struct {
	id    uint64
	tr    *Transport
	mux   *Mux
	in    *inbox
	unr   *unreachables
	logs  *logRecorder
	serve chan error
	opts  MuxOptions // for startMux
}

func (n *node) addr() string { return n.mux.Addr().String() }

type nodeOption func(*Config)

func listenLocal(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startMux serves ln through a new Mux with the node's transport attached.
func (n *node) startMux(t testing.TB, ln net.Listener) {
	t.Helper()
	opts := n.opts
	opts.Logger = slog.New(n.logs)
	n.mux = NewMux(ln, opts)
	n.mux.Handle(RaftPreamble, n.tr.HandleStream)
	n.serve = make(chan error, 1)
	go func(m *Mux, c chan error) { c <- m.Serve() }(n.mux, n.serve)
}

// stopMux closes the node's Mux and checks that Serve returned nil.
func (n *node) stopMux(t testing.TB) {
	t.Helper()
	if err := n.mux.Close(); err != nil {
		t.Errorf("Mux.Close: %v", err)
	}
	if err := <-n.serve; err != nil {
		t.Errorf("Mux.Serve: %v", err)
	}
}

func startNode(t testing.TB, id uint64, opts ...nodeOption) *node {
	t.Helper()
	return startNodeMux(t, id, MuxOptions{}, opts...)
}

// startNodeMux is startNode with Mux options.
func startNodeMux(t testing.TB, id uint64, muxOpts MuxOptions, opts ...nodeOption) *node {
	t.Helper()
	n := &node{id: id, in: new(inbox), unr: new(unreachables), logs: newLogRecorder(), opts: muxOpts}
	cfg := Config{
		LocalID:     id,
		ClusterName: "test",
		Deliver:     n.in.deliver,
		Unreachable: n.unr.report,
		Logger:      slog.New(n.logs),
	}
	for _, o := range opts {
		o(&cfg)
	}
	n.tr = New(cfg)
	n.startMux(t, listenLocal(t))
	t.Cleanup(func() {
		n.tr.Close()
		n.stopMux(t)
	})
	return n
}

// connect makes a and b know each other.
func connect(a, b *node) {
	a.tr.SetPeer(b.id, b.addr())
	b.tr.SetPeer(a.id, a.addr())
}

func msg(from, to, index uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgApp, From: from, To: to, Term: 1, Index: index}
}

// sendUntil sends increasing-index messages from a to b until b has
// received one of them, and returns that index.
func sendUntil(t testing.TB, a, b *node, first uint64) uint64 {
	t.Helper()
	got, _ := sendCounted(t, a, b, first)
	return got
}

// sendCounted is sendUntil, and says how many messages it sent.
func sendCounted(t testing.TB, a, b *node, first uint64) (got, sent uint64) {
	t.Helper()
	idx := first
	deadline := time.Now().Add(waitTimeout)
	for {
		for i := first; i <= idx; i++ {
			if b.in.has(a.id, i) {
				return i, idx - first
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message from %d reached %d", a.id, b.id)
		}
		idx++
		a.tr.Send([]raftpb.Message{msg(a.id, b.id, idx)})
		time.Sleep(5 * time.Millisecond)
	}
}
