//go:build unix

package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/proccluster"
)

// TestAgentProcessesStopOnSIGTERM runs three agent processes, SIGTERMs the
// leader and checks that it exits 0 promptly, that the others elect a new
// leader, and that they log their leadership changes.
func TestAgentProcessesStopOnSIGTERM(t *testing.T) {
	bin := qclusterBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cl, err := proccluster.Start(ctx, proccluster.Options{
		Command: []string{bin, "agent"},
		Peers:   3,
		Dir:     t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	logsOnFailure(t, cl)

	wait := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(ctx, d)
		t.Cleanup(cancel)
		return c
	}
	first, err := cl.WaitAgreed(wait(20*time.Second), cl.Peers, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	leader := first.Leader

	if err := leader.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	state, err := leader.Wait(wait(10 * time.Second))
	if err != nil {
		t.Fatalf("%s did not exit within 10s of SIGTERM: %v", leader.ID, err)
	}
	if code := state.ExitCode(); code != 0 {
		t.Fatalf("%s exited with %v after SIGTERM, want exit code 0", leader.ID, state)
	}
	if tail := leader.LogTail(5); !strings.Contains(tail, `"msg":"agent stopped"`) {
		t.Errorf("%s's log does not end with 'agent stopped':\n%s", leader.ID, tail)
	}

	second, err := cl.WaitAgreed(wait(20*time.Second), cl.Except(leader), 0,
		func(a proccluster.Agreement) bool { return a.Leader != leader })
	if err != nil {
		t.Fatal(err)
	}
	if second.Term <= first.Term {
		t.Errorf("new leader %s has term %d, want more than %d", second.Leader.ID, second.Term, first.Term)
	}
	// Every survivor logged following the first leader, then the new one.
	for _, p := range cl.Except(leader) {
		evs, err := p.Events()
		if err != nil {
			t.Fatal(err)
		}
		var sawFirst, sawSecond bool
		for _, e := range evs {
			if e.Peer != p.ID {
				t.Errorf("%s logged an event for peer %q", p.ID, e.Peer)
			}
			sawFirst = sawFirst || (e.Names(leader.ID) && e.Term == first.Term)
			sawSecond = sawSecond || (e.Names(second.Leader.ID) && e.Term == second.Term)
		}
		if !sawFirst || !sawSecond {
			t.Errorf("%s's leadership events %+v: want %s in term %d, then %s in term %d",
				p.ID, evs, leader.ID, first.Term, second.Leader.ID, second.Term)
		}
	}

	if err := cl.Stop(wait(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
}

// logsOnFailure prints the agents' logs if the test fails.
func logsOnFailure(t *testing.T, cl *proccluster.Cluster) {
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range cl.Peers {
				t.Logf("--- %s (%s):\n%s", p.ID, p.LogPath, p.LogTail(30))
			}
		}
	})
}
