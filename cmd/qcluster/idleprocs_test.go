package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/idleprocs"
)

// recordProcs records what the agent's governor does to the processors.
type recordProcs struct {
	mu    sync.Mutex
	moves []string
}

func (r *recordProcs) One()     { r.add("one") }
func (r *recordProcs) Default() { r.add("default") }
func (r *recordProcs) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.moves = append(r.moves, s)
}
func (r *recordProcs) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.moves, " ")
}

// TestAgentIdleProcs: the agent governs the processors (--idle-procs, on by
// default) while it runs and gives the default back when it stops; with
// GOMAXPROCS in its environment it leaves them alone.
func TestAgentIdleProcs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    string // the moves once the agent has stopped
		logLine string // a debug line to wait for
	}{
		{"governs", nil, "one default", ""},
		{"GOMAXPROCS set", []string{"GOMAXPROCS=2"}, "", "GOMAXPROCS is set: --idle-procs leaves it alone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, dir, "solo.json", fmt.Sprintf(`{"identifier": "solo", "listen_port": %d, "data_dir": %q,
				"heartbeat_interval": "10ms", "election_timeout": "50ms"}`, freePort(t), dir+"/data"))
			procs := &recordProcs{}
			var reads atomic.Int32
			var stderr syncBuffer
			a := &AgentCommand{Stdout: &stderr, Stderr: &stderr, Environ: append([]string{}, tc.environ...), Procs: procs,
				idle: idleprocs.Config{Every: 5 * time.Millisecond, IdleFor: 2,
					CPU:     func() (time.Duration, error) { reads.Add(1); return 0, nil },
					Stalled: func() (time.Duration, error) { return 0, nil }}}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx, []string{"--config", cfg, "--log-level", "debug"}) }()
			deadline := time.Now().Add(20 * time.Second)
			for {
				logs := stderr.String()
				ready := strings.Contains(logs, `state=leader`) && strings.Contains(logs, tc.logLine)
				if tc.want != "" {
					ready = ready && procs.String() == "one"
				}
				if ready {
					break
				}
				if tc.want == "" && reads.Load() != 0 {
					// Fail at once rather than at the deadline.
					t.Fatalf("the governor read the CPU time with GOMAXPROCS set (moves %q)\n%s", procs, logs)
				}
				select {
				case err := <-done:
					t.Fatalf("agent stopped: %v\n%s", err, logs)
				case <-time.After(5 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("no leader, log line %q or move to one processor within 20s (moves %q)\n%s", tc.logLine, procs, logs)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("agent: %v", err)
			}
			if got := procs.String(); got != tc.want {
				t.Errorf("moves %q, want %q", got, tc.want)
			}
			if tc.want == "" && reads.Load() != 0 {
				t.Errorf("the governor read the CPU time %d times with GOMAXPROCS set", reads.Load())
			}
		})
	}
}

// TestAgentUsageSaysIdleProcsDefaults: the numbers agent --help gives for
// --idle-procs are idleprocs' defaults.
func TestAgentUsageSaysIdleProcsDefaults(t *testing.T) {
	want := fmt.Sprintf("after %d s under %g %% of a core", int(idleprocs.DefaultIdleFor*idleprocs.DefaultEvery/time.Second), idleprocs.DefaultIdle*100)
	want2 := fmt.Sprintf("first second above %g %% of a core", idleprocs.DefaultBusy*100)
	want3 := fmt.Sprintf("waited for a CPU less than %g %% of the time", idleprocs.DefaultStarved*100)
	flat := strings.Join(strings.Fields(agentUsage), " ")
	for _, w := range []string{want, want2, want3} {
		if !strings.Contains(flat, w) {
			t.Errorf("agent usage does not say %q", w)
		}
	}
	if idleprocs.DefaultEvery != time.Second {
		t.Errorf("agent usage says \"first second\": DefaultEvery is %v", idleprocs.DefaultEvery)
	}
}
