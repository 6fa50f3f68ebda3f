package idleprocs

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// fakeProcs records the governor's moves.
type fakeProcs struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeProcs) One()     { f.record("one") }
func (f *fakeProcs) Default() { f.record("default") }

func (f *fakeProcs) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeProcs) moves() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// calm is a machine whose tasks never wait for a CPU: a loaded test
// machine must not keep the governor from moving.
func calm() (time.Duration, error) { return 0, nil }

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGovernorMoves(t *testing.T) {
	const period = time.Second
	idle := 10 * time.Millisecond    // 1 % of a core
	middle := 100 * time.Millisecond // 10 %: neither idle nor busy
	busy := 300 * time.Millisecond   // 30 %
	calm := 50 * time.Millisecond    // the machine's tasks waited 5 % of the time
	starved := 100 * time.Millisecond
	steps := []struct {
		cpu, stalled time.Duration
		n            int
		wantOne      bool
		wantMove     []string
	}{
		{idle, 0, 9, false, nil},                                                // not yet IdleFor periods
		{middle, 0, 1, false, nil},                                              // a period between breaks the run
		{idle, calm, 9, false, nil},                                             // so nine more are not enough
		{idle, starved, 1, false, nil},                                          // nor is a tenth on a starved machine
		{idle, calm, 9, false, nil},                                             // which broke the run too
		{idle, 0, 1, true, []string{"one"}},                                     // the tenth in a row is
		{idle, calm, 5, true, []string{"one"}},                                  // and it stays there
		{middle, 0, 3, true, []string{"one"}},                                   // a middling load does not move it back
		{busy, 0, 1, false, []string{"one", "default"}},                         // one busy period does, at once
		{busy, 0, 2, false, []string{"one", "default"}},                         // busy at the default: no call
		{idle, 0, 10, true, []string{"one", "default", "one"}},                  // idle again
		{idle, starved, 1, false, []string{"one", "default", "one", "default"}}, // the machine starved: at once
	}
	f := &fakeProcs{}
	g := NewGovernor(Config{Procs: f})
	for i, s := range steps {
		for range s.n {
			g.Observe(s.cpu, s.stalled, period)
		}
		if g.One() != s.wantOne || !equal(f.moves(), s.wantMove) {
			t.Fatalf("step %d (cpu %v, stalled %v, x%d): One()=%v moves=%v, want %v %v", i, s.cpu, s.stalled, s.n, g.One(), f.moves(), s.wantOne, s.wantMove)
		}
	}
	g.Observe(0, 0, 0) // no time passed: ignored
	if g.One() {
		t.Error("a period of no length moved the governor")
	}
}

// TestRunCountsTheMachine: Run reads Config.Stalled each period; a
// machine starved of CPU keeps the default; a Stalled that fails at once
// is left out.
func TestRunCountsTheMachine(t *testing.T) {
	var waited atomic.Int64 // the machine's stall time so far
	f := &fakeProcs{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Every: time.Millisecond, IdleFor: 2, Procs: f,
			CPU: func() (time.Duration, error) { return 0, nil },
			Stalled: func() (time.Duration, error) {
				// Every read, a second more: starved whatever the period.
				return time.Duration(waited.Add(int64(time.Second))), nil
			}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for waited.Load() < int64(20*time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("Run read the machine's stall time fewer than 20 times in 10s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if got := f.moves(); len(got) != 0 {
		t.Fatalf("moves %v on a starved machine, want none", got)
	}

	// A Stalled that fails at once, or later (after starved periods),
	// is left out: an idle process then goes to one processor.
	for _, failAfter := range []int64{0, 3} {
		f = &fakeProcs{}
		var reads atomic.Int64
		ctx, cancel = context.WithCancel(context.Background())
		go func() {
			done <- Run(ctx, Config{Every: time.Millisecond, IdleFor: 2, Procs: f,
				CPU: func() (time.Duration, error) { return 0, nil },
				Stalled: func() (time.Duration, error) {
					n := reads.Add(1)
					if n > failAfter {
						return 0, errors.New("no PSI here")
					}
					return time.Duration(n) * time.Second, nil
				}})
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !equal(f.moves(), []string{"one"}) {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("Stalled failing after %d reads: moves %v, want [one]", failAfter, f.moves())
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Stalled failing after %d reads: Run = %v, want context.Canceled", failAfter, err)
		}
	}
}

func TestRunRestoresTheDefaultWhenItEnds(t *testing.T) {
	f := &fakeProcs{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Every: time.Millisecond, IdleFor: 2, Procs: f,
			CPU: func() (time.Duration, error) { return 0, nil }, Stalled: calm})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !equal(f.moves(), []string{"one"}) {
		if time.Now().After(deadline) {
			t.Fatalf("moves %v, want [one] within 10s", f.moves())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if got := f.moves(); !equal(got, []string{"one", "default"}) {
		t.Fatalf("moves %v, want [one default]: the default is restored when Run ends", got)
	}
}

func TestRunReturnsTheCPUSourcesError(t *testing.T) {
	boom := errors.New("boom")
	f := &fakeProcs{}
	if err := Run(context.Background(), Config{Procs: f,
		CPU: func() (time.Duration, error) { return 0, boom }, Stalled: calm}); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the first read's error", err)
	}
	var reads atomic.Int32
	err := Run(context.Background(), Config{Every: time.Millisecond, IdleFor: 1, Procs: f,
		Stalled: calm,
		CPU: func() (time.Duration, error) {
			if reads.Add(1) > 3 {
				return 0, boom
			}
			return 0, nil
		}})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the failed read's error", err)
	}
	if got := f.moves(); !equal(got, []string{"one", "default"}) {
		t.Fatalf("moves %v, want [one default]: a failed read restores the default", got)
	}
}

// TestRuntime runs a Governor on this test process: idle, it goes to one
// processor; a busy goroutine brings the default back; when Run ends the
// default is restored.
func TestRuntime(t *testing.T) {
	if _, err := processCPU(); err != nil {
		t.Skipf("no CPU time here: %v", err)
	}
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: the runtime's default is not what this process runs with")
	}
	want := runtime.GOMAXPROCS(0)
	if want < 2 {
		t.Skipf("GOMAXPROCS is %d: nothing to give back", want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// A calm machine: a loaded test machine would keep the default
		// (TestRunCountsTheMachine tests that).
		done <- Run(ctx, Config{Every: 20 * time.Millisecond, IdleFor: 3, Busy: 0.5, Stalled: calm})
	}()
	waitProcs := func(n int, why string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for runtime.GOMAXPROCS(0) != n {
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d, want %d within 20s (%s)", runtime.GOMAXPROCS(0), n, why)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitProcs(1, "idle")
	var stop atomic.Bool
	spun := make(chan struct{})
	go func() {
		defer close(spun)
		for !stop.Load() {
		}
	}()
	waitProcs(want, "a goroutine spinning")
	stop.Store(true)
	<-spun
	waitProcs(1, "idle again")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Fatalf("GOMAXPROCS %d after Run, want the default %d", got, want)
	}
}
