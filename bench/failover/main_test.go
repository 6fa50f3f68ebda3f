package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/proccluster"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-tls", "maybe"},
		{"-n", "0"},
		{"-peers", "2"},
		{"extra"},
	} {
		if err := run(t.Context(), args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestPrintSummary(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	off := &mode{name: "TLS off", rounds: []round{
		{termBefore: 2, termAfter: 3, logTime: ms(150), pollTime: ms(151)},
		{termBefore: 3, termAfter: 5, logTime: ms(250), pollTime: ms(252)},
	}}
	on := &mode{name: "TLS on", key: "k", rounds: []round{
		{termBefore: 2, termAfter: 3, logTime: ms(160), pollTime: ms(161)},
		{termBefore: 3, termAfter: 4, pollTime: ms(200)}, // no log time
	}}
	var b bytes.Buffer
	printSummary(&b, []*mode{off, on}, options{n: 2, poll: 2 * time.Millisecond})
	out := b.String()
	for _, want := range []string{
		"agents' logs (exact), TLS off                 2   150.0   150.0   250.0   250.0   250.0",
		"agents' logs (exact), TLS on                  1   160.0   160.0   160.0   160.0   160.0",
		"polling /v1/status every 2ms, TLS on          2   161.0   161.0   200.0   200.0   200.0",
		"(term jumped by > 1): TLS off 1 of 2, TLS on 0 of 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printSummary(&b, []*mode{off}, options{n: 2, poll: 2 * time.Millisecond})
	if out := b.String(); strings.Contains(out, "TLS") || !strings.Contains(out, "(term jumped by > 1): 1 of 2") {
		t.Errorf("summary of one mode:\n%s", out)
	}
}

func TestPrintIdle(t *testing.T) {
	modes := []*mode{{name: "TLS off"}, {name: "TLS on"}}
	procs := make([][]*idleProc, 2)
	for i := range modes {
		procs[i] = []*idleProc{
			{role: "leader", p: &proccluster.Peer{ID: "server_a"}, pid: 100 + i, rss: 20 * 1024, cpu: 1.5},
			{role: "follower", p: &proccluster.Peer{ID: "server_b"}, pid: 200 + i, rss: 10 * 1024, cpu: 0.5},
		}
	}
	var b bytes.Buffer
	printIdle(&b, modes, procs, 10*time.Second)
	lines := strings.Split(b.String(), "\n")
	if len(lines) < 5 {
		t.Fatalf("idle table:\n%s", b.String())
	}
	// The second group's heading is above its columns.
	if h, c := strings.Index(lines[0], "--- TLS on"), strings.LastIndex(lines[1], " id ")+1; h != c {
		t.Errorf("headings not aligned (%d, %d):\n%s", h, c, b.String())
	}
	if !strings.Contains(lines[2], "server_a") || strings.Count(lines[2], "20.0") != 2 || !strings.Contains(lines[4], "30.0") || !strings.Contains(lines[4], "2.00") {
		t.Errorf("idle table:\n%s", b.String())
	}
	for _, l := range lines {
		if strings.TrimRight(l, " ") != l {
			t.Errorf("trailing spaces in %q", l)
		}
	}
}

// TestRunBoth runs the benchmark end to end, one kill per cluster, with
// TLS off and on: agent processes, the HTTPS polls, the logs.
func TestRunBoth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and runs processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the idle measurement reads /proc")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"-n", "1", "-tls", "both", "-idle", "200ms"}, &out, &errOut); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{
		"agents' logs (exact), TLS off                 1",
		"agents' logs (exact), TLS on                  1",
		"--- TLS on ---",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
