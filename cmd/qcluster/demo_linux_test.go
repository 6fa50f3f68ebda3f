//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
