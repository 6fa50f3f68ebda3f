package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runMain runs the CLI in-process and returns its stdout, stderr and error.
func runMain(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errOut syncBuffer
	m := &Main{Stdout: &out, Stderr: &errOut}
	err = m.Run(ctx, args)
	return out.String(), errOut.String(), err
}

// writeFile writes a file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestRunUsageErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	badJSON := writeFile(t, dir, "bad.json", "{\n  \"identifier\": \"server_a\",\n  \"listen_port\": 7001,,\n}\n")
	misspelt := writeFile(t, dir, "misspelt.json", `{"identifier": "server_a", "listen_prot": 7001}`)
	badPort := writeFile(t, dir, "port.json", `{"identifier": "server_a", "listen_port": 70000}`)
	good := writeFile(t, dir, "good.json", `{"identifier": "server_a", "listen_port": 7001}`)

	tests := []struct {
		name string
		args []string
		want []string // substrings of the error message
	}{
		{"no command", nil, []string{"no command given"}},
		{"unknown command", []string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{"help for unknown command", []string{"help", "frobnicate"}, []string{`unknown command "frobnicate"`}},
		{"agent without config", []string{"agent"}, []string{"--config is required"}},
		{"agent unknown flag", []string{"agent", "--bogus"}, []string{"agent: flag provided but not defined: -bogus"}},
		{"agent extra argument", []string{"agent", "--config", good, "extra"}, []string{`unexpected argument "extra"`}},
		{"agent missing config file", []string{"agent", "--config", missing}, []string{"missing.json", "no such file"}},
		{"agent bad JSON", []string{"agent", "--config", badJSON}, []string{"bad.json", "line 3"}},
		{"agent misspelt field", []string{"agent", "--config", misspelt}, []string{"listen_prot", `did you mean "listen_port"`}},
		{"agent port out of range", []string{"agent", "--config", badPort}, []string{"listen_port", "70000"}},
		{"agent bad log level", []string{"agent", "--config", good, "--log-level", "loud"}, []string{"--log-level", `"loud"`}},
		{"agent bad log format", []string{"agent", "--config", good, "--log-format", "xml"}, []string{"--log-format", `"xml"`}},
		{"demo too few peers", []string{"demo", "--peers", "2"}, []string{"--peers 2", "3 to 26"}},
		{"demo bad timings", []string{"demo", "--heartbeat", "100ms", "--election-timeout", "150ms"}, []string{"election_timeout", "heartbeat_interval"}},
		{"demo extra argument", []string{"demo", "now"}, []string{`unexpected argument "now"`}},
		{"demo bad duration", []string{"demo", "--heartbeat", "fast"}, []string{"invalid value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runMain(t.Context(), tt.args...)
			if err == nil {
				t.Fatalf("Run(%q) = nil, want a usage error", tt.args)
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("Run(%q) = %v (%T), want a *UsageError", tt.args, err, err)
			}
			if got := ExitCode(err); got != 2 {
				t.Errorf("ExitCode = %d, want 2", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Run(%q) error %q does not contain %q", tt.args, err, w)
				}
			}
		})
	}
}

func TestReport(t *testing.T) {
	var stderr bytes.Buffer
	m := &Main{Stdout: &bytes.Buffer{}, Stderr: &stderr}
	if got := m.Report(nil); got != 0 || stderr.Len() != 0 {
		t.Fatalf("Report(nil) = %d, printed %q; want 0 and nothing", got, stderr.String())
	}
	code := m.Report(usageErrorf("agent", "agent: --config is required"))
	if code != 2 {
		t.Errorf("Report(usage error) = %d, want 2", code)
	}
	want := "qcluster: agent: --config is required\nRun 'qcluster agent -h' for usage.\n"
	if stderr.String() != want {
		t.Errorf("Report printed %q, want %q", stderr.String(), want)
	}
	stderr.Reset()
	if code := m.Report(fmt.Errorf("qcluster: listen on 127.0.0.1:1: permission denied")); code != 1 {
		t.Errorf("Report(runtime error) = %d, want 1", code)
	}
	if want := "qcluster: listen on 127.0.0.1:1: permission denied\n"; stderr.String() != want {
		t.Errorf("Report printed %q, want %q (one program prefix)", stderr.String(), want)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}} {
		stdout, _, err := runMain(t.Context(), args...)
		if err != nil || !strings.Contains(stdout, "Commands:") || !strings.Contains(stdout, "qcluster demo") {
			t.Errorf("Run(%q) = %v, stdout %q; want nil and the command list", args, err, stdout)
		}
	}
	for _, args := range [][]string{{"agent", "-h"}, {"help", "agent"}} {
		stdout, _, err := runMain(t.Context(), args...)
		if err != nil || !strings.Contains(stdout, "qcluster agent --config") || !strings.Contains(stdout, "-log-format") {
			t.Errorf("Run(%q) = %v, stdout %q; want nil and the agent's usage", args, err, stdout)
		}
	}
	stdout, _, err := runMain(t.Context(), "demo", "--help")
	if err != nil || !strings.Contains(stdout, "-election-timeout") || !strings.Contains(stdout, "-keep") {
		t.Errorf("Run(demo --help) = %v, stdout %q; want nil and the demo's usage", err, stdout)
	}
	// No command at all is a usage error, with the usage on stderr.
	_, stderr, err := runMain(t.Context())
	if ExitCode(err) != 2 || !strings.Contains(stderr, "Commands:") {
		t.Errorf("Run() = %v, stderr %q; want a usage error and the usage on stderr", err, stderr)
	}
}

// TestAgentInProcess runs a one-peer agent in this process: it elects
// itself, logs the change, and stops cleanly (nil error, no goroutine left)
// when ctx ends.
func TestAgentInProcess(t *testing.T) {
	// Every goroutine the agent started must be gone once Run returns.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken meanwhile
		port := freePort(t)
		cfg := writeFile(t, dir, "solo.json", fmt.Sprintf(`{"identifier": "solo", "listen_port": %d, "data_dir": %q,
			"heartbeat_interval": "10ms", "election_timeout": "50ms"}`, port, filepath.Join(dir, "data")))
		ctx, cancel := context.WithCancel(t.Context())
		var stdout, stderr syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- (&Main{Stdout: &stdout, Stderr: &stderr}).Run(ctx, []string{"agent", "--config", cfg, "--log-format", "json"})
		}()
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
	wait:
		for {
			select {
			case err := <-done:
				cancel()
				tick.Stop()
				lastErr = fmt.Errorf("agent returned early: %v\n%s", err, stderr.String())
				if strings.Contains(stderr.String()+fmt.Sprint(err), "address already in use") {
					break wait
				}
				t.Fatal(lastErr)
			case <-deadline:
				cancel()
				t.Fatalf("the agent did not log itself as leader in time:\n%s", stderr.String())
			case <-tick.C:
				if strings.Contains(stderr.String(), `"msg":"leadership changed","peer":"solo","state":"leader"`) {
					tick.Stop()
					cancel()
					select {
					case err := <-done:
						if err != nil {
							t.Fatalf("agent returned %v after ctx ended, want nil", err)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("agent did not stop within 10s of ctx ending")
					}
					if !strings.Contains(stderr.String(), `"msg":"agent stopped"`) {
						t.Errorf("no 'agent stopped' log line:\n%s", stderr.String())
					}
					if strings.Contains(stderr.String(), `"msg":"leadership: `) {
						t.Errorf("the SDK's own leadership lines should be filtered (the agent logs them):\n%s", stderr.String())
					}
					return
				}
			}
		}
	}
	t.Fatal(lastErr)
}

// Building the binary, for the tests that run agents as processes.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// qclusterBinary builds this command once per test run (with the race
// detector when the tests use it) and returns the binary's path.
func qclusterBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build the qcluster binary")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "qcluster-test-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "qcluster")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}
