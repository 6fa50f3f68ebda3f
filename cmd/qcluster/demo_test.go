package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemoEndToEnd builds the binary and runs "qcluster demo" as a user
// would.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs agent processes; skipped with -short")
	}
	bin := qclusterBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "demo").CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("qcluster demo: %v, want exit code 0; output:\n%s", err, text)
	}
	t.Logf("output:\n%s", text)

	first := regexp.MustCompile(`\d+\. (server_[a-z]) was elected leader \(term (\d+)\)`).FindStringSubmatch(text)
	if first == nil {
		t.Fatalf("the output does not name the first leader")
	}
	second := regexp.MustCompile(`\d+\. (server_[a-z]) is the new leader \(term (\d+)\)`).FindStringSubmatch(text)
	if second == nil {
		t.Fatalf("the output does not name a new leader after the kill")
	}
	if first[1] == second[1] {
		t.Errorf("the new leader %s is the killed one", second[1])
	}
	if t1, t2 := atoi(t, first[2]), atoi(t, second[2]); t2 <= t1 {
		t.Errorf("the new leader's term %d is not above the first's (%d)", t2, t1)
	}
	for _, want := range []string{
		first[1] + " was the leader (term " + first[2] + "). Killing it with SIGKILL",
		"rejoined as a follower of " + second[1],
		"All 3 agents exited cleanly",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the output does not contain %q", want)
		}
	}
	if !regexp.MustCompile(`Fail-over took \d+ ms`).MatchString(text) {
		t.Errorf("the output does not give the fail-over time")
	}
	// A kill -9 on a live host is proven (the survivors' metrics say so),
	// and the demo explains the fail-over by it, not by a timeout.
	if m := regexp.MustCompile(`\(([0-9]) of 2 survivors took it; see qcluster_leader_gone_reports_total\)`).FindStringSubmatch(text); m == nil || m[1] == "0" {
		t.Errorf("the output does not say that the survivors took the proof that the leader's process was gone")
	}
	// The temporary directory is gone.
	m := regexp.MustCompile(`Files \(configs, data, logs\): (\S+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("the output does not name the temporary directory")
	}
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s was not removed (stat: %v)", m[1], err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
