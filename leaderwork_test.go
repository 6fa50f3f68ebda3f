package qcluster

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/leaderwork"
)

// slowLease: timings under which a lease lasts long enough (about 880 ms)
// that only the tenure's own mechanisms, not a lucky schedule, can explain
// what the tests see, and the gap between an old leader's lease end and a
// new leader's start (drift margin, tick, election) is about 100 ms or
// more even on a loaded machine.
func slowLease(c *Config) {
	c.ElectionTimeout = Duration(time.Second)
	c.HeartbeatInterval = Duration(100 * time.Millisecond)
}

// workRun is one call of a RunWhileLeader fn.
type workRun struct {
	peer  string
	start time.Time // when fn was called
	ctx   context.Context
	done  chan struct{} // closed when fn saw leaderCtx end
}

// lostAt returns when the tenure of r ended (zero while it lasts).
func (r *workRun) lostAt() time.Time { return leaderwork.Of(r.ctx).LostAt() }

// workLog runs RunWhileLeader on every peer of a test cluster and records
// each call of fn, by one clock (this process's).
type workLog struct {
	t    *testing.T
	mu   sync.Mutex
	runs []*workRun
	// changed is signalled at every new run.
	changed chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   []error
}

// runWork starts RunWhileLeader on every running peer of tc. Each fn
// waits for its leaderCtx to end and returns leaderCtx.Err(), which
// RunWhileLeader must take as "this tenure is over", not as a failure.
func runWork(t *testing.T, tc *testCluster) *workLog {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workLog{t: t, changed: make(chan struct{}, 1), cancel: cancel}
	w.errs = make([]error, len(tc.peers))
	for i, p := range tc.peers {
		if p == nil {
			continue
		}
		id := tc.cfgs[i].Identifier
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.errs[i] = p.RunWhileLeader(ctx, func(leaderCtx context.Context) error {
				r := &workRun{peer: id, start: time.Now(), ctx: leaderCtx, done: make(chan struct{})}
				w.mu.Lock()
				w.runs = append(w.runs, r)
				w.mu.Unlock()
				select {
				case w.changed <- struct{}{}:
				default:
				}
				<-leaderCtx.Done()
				close(r.done)
				return leaderCtx.Err()
			})
		}()
	}
	t.Cleanup(w.stop)
	return w
}

// stop ends every RunWhileLeader and checks how they ended.
func (w *workLog) stop() {
	w.cancel()
	w.wg.Wait()
	for i, err := range w.errs {
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
			w.t.Errorf("RunWhileLeader on peer %d returned %v, want context.Canceled or ErrClosed", i, err)
		}
	}
}

// waitRun waits for a run on peer (any peer when "") other than those in
// seen.
func (w *workLog) waitRun(timeout time.Duration, what, peer string, seen ...*workRun) *workRun {
	w.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for _, r := range w.runs {
			if (peer == "" || r.peer == peer) && !slices.Contains(seen, r) {
				w.mu.Unlock()
				return r
			}
		}
		w.mu.Unlock()
		select {
		case <-w.changed:
		case <-deadline.C:
			w.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// checkNoOverlap checks that no two runs' leaderCtx lifetimes overlap:
// each run's tenure ended before the next run started, by one clock.
func (w *workLog) checkNoOverlap() {
	w.t.Helper()
	w.mu.Lock()
	runs := slices.Clone(w.runs)
	w.mu.Unlock()
	slices.SortFunc(runs, func(a, b *workRun) int { return a.start.Compare(b.start) })
	for i := 1; i < len(runs); i++ {
		prev, next := runs[i-1], runs[i]
		end := prev.lostAt()
		if end.IsZero() || !end.Before(next.start) {
			w.t.Errorf("%s's work (from %v, ended %v) overlaps %s's (from %v)",
				prev.peer, prev.start.Format("15:04:05.000000"), end.Format("15:04:05.000000"),
				next.peer, next.start.Format("15:04:05.000000"))
			continue
		}
		w.t.Logf("%s's work ended %v before %s's began", prev.peer, next.start.Sub(end).Round(time.Microsecond), next.peer)
	}
}

// waitDone waits until r's fn saw its leaderCtx end.
func waitDone(t *testing.T, r *workRun, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// freeze blocks p's node loop (its raft goroutine) until the returned
// function is called: no tick, no message, no view, as in a stalled
// process. The Cluster's other goroutines (gossip, the API) go on.
func freeze(t *testing.T, p *Cluster) (thaw func()) {
	t.Helper()
	frozen, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(returned)
		_ = p.node().Do(context.Background(), func(*consensus.Core) error {
			close(frozen)
			<-release
			return nil
		})
	}()
	select {
	case <-frozen:
	case <-time.After(10 * time.Second):
		t.Fatal("the node loop did not take the freezing call")
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			close(release)
			<-returned
		})
	}
	t.Cleanup(thaw) // before the cluster closes (cleanups run last first)
	return thaw
}

// TestRunWhileLeaderFrozenLeader: the leader's node loop stalls, so no
// view says that its lease ends; leaderCtx must end anyway, when the lease
// runs out (the tenure's timer), while the loop is still stalled, and
// before another peer's work begins. Then leadership comes back to the
// thawed peer by a transfer, and its fn runs again; the transfer ends the
// new leader's leaderCtx at once.
func TestRunWhileLeaderFrozenLeader(t *testing.T) {
	tc := newTestCluster(t, 3, slowLease)
	leader := tc.waitLeader(20 * time.Second)
	li := tc.index(leader)
	w := runWork(t, tc)
	first := w.waitRun(20*time.Second, "the leader's work", tc.cfgs[li].Identifier)

	thaw := freeze(t, leader)
	// The snapshot no longer changes: this is where the lease ends.
	leaseEnd, ok := first.ctx.Deadline()
	if !ok {
		t.Fatal("leaderCtx has no deadline")
	}
	if left := time.Until(leaseEnd); left > time.Second {
		t.Errorf("leaderCtx's deadline is %v away, more than an election timeout", left)
	}
	waitDone(t, first, 20*time.Second, "the frozen leader's leaderCtx to end at its lease's end")
	lost := first.lostAt()
	if leader.IsLeader() {
		t.Error("the frozen leader's leaderCtx ended while IsLeader is still true")
	}
	t.Logf("frozen leader: leaderCtx ended %v after the lease's end (deadline before the freeze)", lost.Sub(leaseEnd).Round(time.Microsecond))
	if lost.Before(leaseEnd.Add(-time.Millisecond)) {
		t.Errorf("leaderCtx ended %v before the lease's end", leaseEnd.Sub(lost))
	}
	if d, _ := first.ctx.Deadline(); !d.Equal(leaseEnd) && d.After(lost) {
		t.Errorf("after the loss Deadline is %v, after the loss at %v", d, lost)
	}
	if cause := context.Cause(first.ctx); !errors.Is(cause, ErrLeadershipLost) || !strings.Contains(cause.Error(), "ran out") {
		t.Errorf("cause %v, want ErrLeadershipLost: the lease ran out", cause)
	}
	next := w.waitRun(30*time.Second, "another peer's work", "", first)
	select {
	case <-first.done:
	default:
		t.Fatal("another peer's work began while the frozen leader's leaderCtx lasts")
	}
	thaw()

	// Leadership back to the thawed peer: its fn runs again.
	nl := tc.peers[slices.IndexFunc(tc.cfgs, func(c Config) bool { return c.Identifier == next.peer })]
	waitFor(t, 20*time.Second, "the thawed peer to follow "+next.peer, func() bool {
		l, ok := leader.Leader()
		return ok && l.Identifier == next.peer
	})
	// The thawed peer may still be catching up: a transfer to it that
	// raft gives up on is tried again.
	var start time.Time
	for tries := 1; ; tries++ {
		start = time.Now()
		err := nl.Transfer(ctxTimeout(t, 20*time.Second), tc.cfgs[li].Identifier)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrTransferFailed) || tries == 5 {
			t.Fatalf("transfer back to %s: %v", tc.cfgs[li].Identifier, err)
		}
	}
	waitDone(t, next, 10*time.Second, "the old leader's leaderCtx to end on the transfer")
	t.Logf("transfer: leaderCtx ended %v after Transfer was called", next.lostAt().Sub(start).Round(time.Microsecond))
	again := w.waitRun(20*time.Second, "the first leader's work again", tc.cfgs[li].Identifier, first)
	if again.start.Before(lost) {
		t.Error("the second run began before the first tenure ended")
	}
	w.checkNoOverlap()
}

// TestTenureEndsBeforeTransferLeaves: a transfer drops the lease early.
// The tenure must end on the node goroutine, before the messages that let
// the transferee lead are sent: by the time the transfer call returns (no
// goroutine reading Watch helps here, and the lease has most of an
// election timeout left).
func TestTenureEndsBeforeTransferLeaves(t *testing.T) {
	tc := newTestCluster(t, 3, slowLease)
	leader := tc.waitLeader(20 * time.Second)
	ctx := ctxTimeout(t, 30*time.Second)
	var tn *leaderwork.Tenure
	waitFor(t, 10*time.Second, "a tenure on the leader", func() bool {
		tn = leader.tenures.Gain(ctx)
		return tn != nil
	})
	defer tn.Release()
	if left := time.Until(tn.Deadline()); left < 200*time.Millisecond {
		t.Logf("only %v of lease left: the timer may explain the result", left)
	}
	start := time.Now()
	err := leader.node().Do(ctx, func(core *consensus.Core) error {
		core.TransferLeadership(core.BestTransferee(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tn.IsLost() || tn.Context().Err() == nil {
		t.Fatalf("the transfer has been sent and the tenure lasts (%v of its lease left)", time.Until(tn.Deadline()))
	}
	t.Logf("tenure ended %v after the transfer call began", tn.LostAt().Sub(start))
	if cause := context.Cause(tn.Context()); !errors.Is(cause, ErrLeadershipLost) || !strings.Contains(cause.Error(), "gave the lease up") {
		t.Errorf("cause %v, want ErrLeadershipLost: gave the lease up", cause)
	}
	if d, _ := tn.Context().Deadline(); d.After(tn.LostAt()) {
		t.Errorf("Deadline %v after the loss at %v", d, tn.LostAt())
	}
}

// TestRunWhileLeaderClose: closing the leader ends its leaderCtx (the
// hand-over ends it first) and RunWhileLeader returns ErrClosed; another
// peer's work begins only after.
func TestRunWhileLeaderClose(t *testing.T) {
	tc := newTestCluster(t, 3, slowLease)
	leader := tc.waitLeader(20 * time.Second)
	li := tc.index(leader)
	w := runWork(t, tc)
	first := w.waitRun(20*time.Second, "the leader's work", tc.cfgs[li].Identifier)
	start := time.Now()
	tc.stop(li)
	waitDone(t, first, 10*time.Second, "leaderCtx to end on Close")
	t.Logf("Close: leaderCtx ended %v after Close was called (cause: %v)", first.lostAt().Sub(start).Round(time.Microsecond), context.Cause(first.ctx))
	if cause := context.Cause(first.ctx); !errors.Is(cause, ErrLeadershipLost) {
		t.Errorf("cause %v, want ErrLeadershipLost", cause)
	}
	w.waitRun(20*time.Second, "another peer's work", "", first)
	w.checkNoOverlap()
}

// singleLeader starts a cluster of one and waits for its lease.
func singleLeader(t *testing.T) *Cluster {
	tc := newTestCluster(t, 1)
	return tc.waitLeader(20 * time.Second)
}

// TestRunWhileLeaderReturns: what RunWhileLeader does when fn returns nil
// (no new call while the lease lasts: no spinning), an error (returned),
// and when ctx ends or the Cluster closes.
func TestRunWhileLeaderReturns(t *testing.T) {
	t.Run("nil waits for the next gain", func(t *testing.T) {
		p := singleLeader(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var mu sync.Mutex
		calls := 0
		var first context.Context
		errc := make(chan error, 1)
		go func() {
			errc <- p.RunWhileLeader(ctx, func(leaderCtx context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				first = leaderCtx
				return nil
			})
		}()
		waitFor(t, 10*time.Second, "the first call", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return calls > 0
		})
		mu.Lock()
		leaderCtx := first
		mu.Unlock()
		waitFor(t, 5*time.Second, "leaderCtx to end when fn returned", func() bool { return leaderCtx.Err() != nil })
		if cause := context.Cause(leaderCtx); cause != context.Canceled {
			t.Errorf("cause %v after fn returned, want context.Canceled", cause)
		}
		// The lease is renewed several times over three election timeouts;
		// fn must not be called again meanwhile, unless the lease really
		// lapsed (a node loop starved on a loaded machine): the first
		// tenure must then have been lost, not ended because fn returned.
		et := time.Duration(p.cfg.ElectionTimeout)
		for end := time.Now().Add(3 * et); time.Now().Before(end); time.Sleep(et / 10) {
			mu.Lock()
			n := calls
			mu.Unlock()
			if n == 1 {
				continue
			}
			why := leaderwork.Of(leaderCtx).Why()
			if !errors.Is(why, ErrLeadershipLost) {
				t.Fatalf("fn was called %d times while the peer kept its lease (first tenure: %v)", n, why)
			}
			t.Logf("fn called again after a real lapse: %v", why)
			break
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("RunWhileLeader returned %v after ctx ended, want context.Canceled", err)
		}
	})
	t.Run("an error is returned", func(t *testing.T) {
		p := singleLeader(t)
		boom := errors.New("boom")
		var leaderCtx context.Context
		err := p.RunWhileLeader(ctxTimeout(t, 20*time.Second), func(ctx context.Context) error {
			leaderCtx = ctx
			return fmt.Errorf("work: %w", boom)
		})
		if !errors.Is(err, boom) {
			t.Fatalf("RunWhileLeader returned %v, want boom", err)
		}
		if leaderCtx.Err() == nil {
			t.Error("leaderCtx lasts after RunWhileLeader returned")
		}
	})
	t.Run("ctx ends", func(t *testing.T) {
		p := singleLeader(t)
		ctx, cancel := context.WithCancelCause(context.Background())
		why := errors.New("shutting down")
		var leaderCtx context.Context
		err := p.RunWhileLeader(ctx, func(lctx context.Context) error {
			leaderCtx = lctx
			cancel(why)
			<-lctx.Done()
			return context.Cause(lctx)
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RunWhileLeader returned %v, want context.Canceled", err)
		}
		if cause := context.Cause(leaderCtx); cause != why {
			t.Errorf("leaderCtx's cause %v, want ctx's", cause)
		}
	})
	t.Run("close", func(t *testing.T) {
		tc := newTestCluster(t, 1)
		p := tc.waitLeader(20 * time.Second)
		errc := make(chan error, 1)
		started := make(chan context.Context, 1)
		go func() {
			errc <- p.RunWhileLeader(context.Background(), func(lctx context.Context) error {
				started <- lctx
				<-lctx.Done()
				return nil
			})
		}()
		lctx := <-started
		tc.stop(0)
		select {
		case err := <-errc:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("RunWhileLeader returned %v after Close, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("RunWhileLeader did not return after Close")
		}
		if cause := context.Cause(lctx); !errors.Is(cause, ErrLeadershipLost) || !errors.Is(cause, ErrClosed) {
			t.Errorf("cause %v, want ErrLeadershipLost and ErrClosed", cause)
		}
		if err := p.RunWhileLeader(context.Background(), func(context.Context) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("RunWhileLeader on a closed Cluster: %v, want ErrClosed", err)
		}
	})
	t.Run("masterless", func(t *testing.T) {
		c, err := New(Config{Identifier: "m", ListenPort: 1, Mode: ModeMasterless, DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RunWhileLeader(context.Background(), func(context.Context) error { return nil }); !errors.Is(err, ErrMasterless) {
			t.Errorf("RunWhileLeader in masterless mode: %v, want ErrMasterless", err)
		}
	})
}

// TestLeaderDeadlineTracksTheLease: Deadline is the lease's end, within an
// election timeout from now, and moves forward as the lease is renewed;
// leaderCtx outlives the lease's first end while the lease is renewed (the
// timer is re-armed, not fired). The lease is long (slowLease): a node
// loop starved for most of a second would be needed to lose it.
func TestLeaderDeadlineTracksTheLease(t *testing.T) {
	tc := newTestCluster(t, 1, slowLease)
	p := tc.waitLeader(20 * time.Second)
	et := time.Duration(p.cfg.ElectionTimeout)
	err := p.RunWhileLeader(ctxTimeout(t, 30*time.Second), func(ctx context.Context) error {
		d1, ok := ctx.Deadline()
		if !ok || time.Until(d1) > et || time.Until(d1) < -et {
			return fmt.Errorf("deadline %v from now, want within %v", time.Until(d1), et)
		}
		waitFor(t, 10*time.Second, "the deadline to move forward", func() bool {
			d, _ := ctx.Deadline()
			return d.After(d1)
		})
		waitFor(t, 10*time.Second, "the lease's first end to pass", func() bool {
			return time.Now().After(d1.Add(et / 5))
		})
		if ctx.Err() != nil || !p.IsLeader() {
			return fmt.Errorf("leaderCtx ended (%v) at the lease's first end; IsLeader %v", context.Cause(ctx), p.IsLeader())
		}
		return errors.New("done")
	})
	if err == nil || err.Error() != "done" {
		t.Fatal(err)
	}
}

// TestOnLeadership: the callbacks follow a transfer and a Close; stop
// ends them and leaves no goroutine (the package's TestMain checks).
func TestOnLeadership(t *testing.T) {
	tc := newTestCluster(t, 3, slowLease)
	leader := tc.waitLeader(20 * time.Second)
	type rec struct {
		mu       sync.Mutex
		started  []context.Context
		stopped  int
		leaders  []string
		returned int
	}
	recs := make([]*rec, 3)
	stops := make([]func(), 3)
	for i, p := range tc.peers {
		r := &rec{}
		recs[i] = r
		stops[i] = p.OnLeadership(LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				r.mu.Lock()
				r.started = append(r.started, ctx)
				r.mu.Unlock()
				<-ctx.Done()
				r.mu.Lock()
				r.returned++
				r.mu.Unlock()
			},
			OnStoppedLeading: func() {
				r.mu.Lock()
				r.stopped++
				r.mu.Unlock()
			},
			OnNewLeader: func(l Peer) {
				r.mu.Lock()
				r.leaders = append(r.leaders, l.Identifier)
				r.mu.Unlock()
			},
		})
	}
	li := tc.index(leader)
	lid := tc.cfgs[li].Identifier
	read := func(i int) (started, stopped, returned int, leaders []string) {
		r := recs[i]
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.started), r.stopped, r.returned, slices.Clone(r.leaders)
	}
	waitFor(t, 10*time.Second, "OnStartedLeading on the leader, OnNewLeader everywhere", func() bool {
		s, _, _, _ := read(li)
		for i := range 3 {
			if _, _, _, l := read(i); len(l) == 0 || l[0] != lid {
				return false
			}
		}
		return s == 1
	})
	to := tc.cfgs[(li+1)%3].Identifier
	if err := leader.Transfer(ctxTimeout(t, 20*time.Second), to); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "OnStoppedLeading on the old leader, OnStartedLeading on the new", func() bool {
		_, stopped, returned, _ := read(li)
		s, _, _, _ := read((li + 1) % 3)
		return stopped == 1 && returned == 1 && s == 1
	})
	for i := range 3 {
		waitFor(t, 10*time.Second, "every peer to report the new leader", func() bool {
			_, _, _, l := read(i)
			return len(l) == 2 && l[1] == to
		})
	}
	// Close the new leader: its callbacks end by themselves.
	ni := (li + 1) % 3
	tc.stop(ni)
	waitFor(t, 10*time.Second, "OnStoppedLeading on the closed leader", func() bool {
		_, stopped, returned, _ := read(ni)
		return stopped == 1 && returned == 1
	})
	stops[ni]() // returns at once: already ended
	// stop on a leader: OnStoppedLeading, and OnStartedLeading returned.
	nl := tc.waitLeader(20*time.Second, ni)
	nli := tc.index(nl)
	waitFor(t, 10*time.Second, "OnStartedLeading on the third leader", func() bool {
		s, _, _, _ := read(nli)
		return s >= 1
	})
	stops[nli]()
	s, stopped, returned, _ := read(nli)
	if stopped != s || returned != s {
		t.Errorf("after stop: %d started, %d stopped, %d returned", s, stopped, returned)
	}
	for _, stop := range stops {
		stop()
		stop() // idempotent
	}
}

// TestDocsRunWhileLeaderSnippet: the README's RunWhileLeader snippet is Go
// and names only methods and fields the package has.
func TestDocsRunWhileLeaderSnippet(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var snippet string
	for _, block := range strings.Split(string(b), "```go\n")[1:] {
		code, _, _ := strings.Cut(block, "```")
		if strings.Contains(code, "RunWhileLeader") {
			snippet = code
			break
		}
	}
	if snippet == "" {
		t.Fatal("README.md has no Go snippet with RunWhileLeader")
	}
	f, err := parser.ParseFile(token.NewFileSet(), "snippet.go", "package p\nfunc _() {\n"+snippet+"\n}\n", 0)
	if err != nil {
		t.Fatalf("README.md's RunWhileLeader snippet does not parse as Go statements: %v", err)
	}
	// The package's exported names and *Cluster's methods.
	names := map[string]bool{}
	files, _ := filepath.Glob("*.go")
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		pf, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range pf.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				names[d.Name.Name] = true
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						names[s.Name.Name] = true
						if st, ok := s.Type.(*ast.StructType); ok {
							for _, fl := range st.Fields.List {
								for _, n := range fl.Names {
									names[n.Name] = true
								}
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							names[n.Name] = true
						}
					}
				}
			}
		}
	}
	checked := 0
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); ok && (x.Name == "qcluster" || x.Name == "c" || x.Name == "cluster") {
			checked++
			if !names[sel.Sel.Name] {
				t.Errorf("README.md's snippet uses %s.%s, which package qcluster does not have", x.Name, sel.Sel.Name)
			}
		}
		return true
	})
	if checked < 2 {
		t.Errorf("README.md's RunWhileLeader snippet names only %d qcluster names", checked)
	}
}

// TestLeaderTerm: LeaderTerm finds the tenure's term through derived
// contexts, and nothing in other contexts.
func TestLeaderTerm(t *testing.T) {
	p := singleLeader(t)
	if _, ok := LeaderTerm(context.Background()); ok {
		t.Error("LeaderTerm of context.Background reports a term")
	}
	err := p.RunWhileLeader(ctxTimeout(t, 20*time.Second), func(ctx context.Context) error {
		child, cancel := context.WithCancel(ctx)
		defer cancel()
		term, ok := LeaderTerm(child)
		if !ok || term != p.Term() || term == 0 {
			return fmt.Errorf("LeaderTerm = %d, %v; the term is %d", term, ok, p.Term())
		}
		return errors.New("done")
	})
	if err == nil || err.Error() != "done" {
		t.Fatal(err)
	}
}
