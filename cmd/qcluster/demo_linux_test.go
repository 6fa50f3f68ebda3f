//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoLeavesNoAgents interrupts the demo (SIGINT) and kills it
// (SIGKILL) while its agents run: no agent may outlive it.
func TestDemoLeavesNoAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs agent processes; skipped with -short")
	}
	bin := qclusterBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			// A long election timeout keeps the demo in its first wait.
			cmd := exec.CommandContext(ctx, bin, "demo", "--heartbeat", "1s", "--election-timeout", "20s")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pids := readAgentPIDs(t, bufio.NewScanner(stdout), 3)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			if err == nil {
				t.Errorf("the interrupted demo exited 0, want a failure")
			}
			deadline := time.Now().Add(10 * time.Second)
			for _, pid := range pids {
				for !processGone(pid) {
					if time.Now().After(deadline) {
						t.Fatalf("agent pid %d outlived the demo (%v)", pid, sig)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// readAgentPIDs reads the demo's output until it has listed n agents'
// process IDs and returns them.
func readAgentPIDs(t *testing.T, sc *bufio.Scanner, n int) []int {
	t.Helper()
	re := regexp.MustCompile(`server_[a-z]\s+pid (\d+)`)
	dirRE := regexp.MustCompile(`Files \(configs, data, logs\): (\S+)`)
	var pids []int
	for len(pids) < n && sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			pids = append(pids, atoi(t, m[1]))
		}
		if m := dirRE.FindStringSubmatch(sc.Text()); m != nil {
			// A killed demo cannot remove its directory.
			t.Cleanup(func() { os.RemoveAll(m[1]) })
		}
	}
	if len(pids) < n {
		t.Fatalf("the demo listed %d agent PIDs, want %d (scan: %v)", len(pids), n, sc.Err())
	}
	return pids
}

// processGone reports whether pid no longer runs (gone, or a zombie that
// nobody has reaped yet).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] == "Z"
}

// TestDemoKeepStaysUpForTheDashboard: "qcluster demo --keep" prints the
// dashboard's address, keeps the cluster up after the demo, serves the
// dashboard there, and on Ctrl-C (SIGINT) stops its agents and exits 0,
// keeping its directory.
func TestDemoKeepStaysUpForTheDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs agent processes; skipped with -short")
	}
	bin := qclusterBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--keep")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	pids := readAgentPIDs(t, sc, 3)
	var out strings.Builder
	dash := regexp.MustCompile(`Dashboard: (http://\S+/ui/)`)
	up := regexp.MustCompile(`The cluster stays up: watch it at (http://\S+/ui/)`)
	var url string
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if m := dash.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
		}
		if m := up.FindStringSubmatch(sc.Text()); m != nil {
			if m[1] != url {
				t.Errorf("the demo names the dashboard %s, then %s", url, m[1])
			}
			break
		}
	}
	if url == "" || !up.MatchString(out.String()) {
		t.Fatalf("the demo did not say where its dashboard is and that it stays up:\n%s", out.String())
	}
	// The cluster is up and serves the dashboard, past the demo's end.
	for _, path := range []string{"", "app.js"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", url+path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", url+path, resp.Status)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the kept demo ended by Ctrl-C: %v, want exit code 0; output:\n%s", err, out.String())
	}
	for _, want := range []string{"All 3 agents exited cleanly", "Kept "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output does not contain %q:\n%s", want, out.String())
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("agent pid %d outlived the demo", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
