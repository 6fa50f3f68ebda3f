package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestWatchStdinEndsOnEOF: data on stdin is ignored; EOF ends the context
// with cause ErrStdinClosed, a read error too (wrapping it).
func TestWatchStdinEndsOnEOF(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pr, pw := io.Pipe()
	ctx, stop := watchStdin(t.Context(), pr)
	defer stop()
	if _, err := pw.Write([]byte("anything\n")); err != nil { // consumed by the watchdog
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("context ended after data on stdin: %v", context.Cause(ctx))
	}
	pw.Close()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context still running 10s after stdin reached EOF")
	}
	if cause := context.Cause(ctx); !errors.Is(cause, ErrStdinClosed) {
		t.Fatalf("cause %v, want ErrStdinClosed", cause)
	}

	pr, pw = io.Pipe()
	ctx, stop = watchStdin(t.Context(), pr)
	defer stop()
	boom := errors.New("boom")
	pw.CloseWithError(boom)
	<-ctx.Done()
	if cause := context.Cause(ctx); !errors.Is(cause, ErrStdinClosed) || !errors.Is(cause, boom) {
		t.Fatalf("cause %v, want ErrStdinClosed wrapping the read error", cause)
	}
}

// countingReader counts reads and blocks like an open pipe until closed.
type countingReader struct {
	reads atomic.Int32
	r     io.Reader
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// runSoloAgent runs "qcluster agent" in-process on a cluster of one with
// the given stdin and extra flags, and returns once it logged itself as the
// leader: a channel with Run's result, and its stderr.
func runSoloAgent(t *testing.T, ctx context.Context, stdin io.Reader, flags ...string) (<-chan error, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
attempts:
	for attempt := 0; ; attempt++ { // the free port may be taken meanwhile
		cfg := writeFile(t, dir, "solo.json", fmt.Sprintf(`{"identifier": "solo", "listen_port": %d, "data_dir": %q,
			"heartbeat_interval": "10ms", "election_timeout": "50ms"}`, freePort(t), filepath.Join(dir, "data")))
		stderr := &syncBuffer{}
		done := make(chan error, 1)
		args := append([]string{"--config", cfg, "--log-format", "json"}, flags...)
		go func() {
			done <- (&AgentCommand{Stdout: io.Discard, Stderr: stderr, Stdin: stdin}).Run(ctx, args)
		}()
		deadline := time.After(20 * time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
		for {
			select {
			case err := <-done:
				tick.Stop()
				if attempt < 2 && strings.Contains(stderr.String()+fmt.Sprint(err), "address already in use") {
					continue attempts
				}
				t.Fatalf("agent returned early: %v\n%s", err, stderr.String())
			case <-deadline:
				t.Fatalf("the agent did not log itself as leader in time:\n%s", stderr.String())
			case <-tick.C:
				if strings.Contains(stderr.String(), `"msg":"leadership changed","peer":"solo","state":"leader"`) {
					tick.Stop()
					return done, stderr
				}
			}
		}
	}
}

// TestAgentExitOnStdinEOF: with --exit-on-stdin-eof the agent stops
// cleanly (Run returns nil, "agent stopped" logged, no goroutine left) when
// its stdin reaches EOF.
func TestAgentExitOnStdinEOF(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done, stderr := runSoloAgent(t, ctx, pr, "--exit-on-stdin-eof")
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent returned %v after stdin EOF, want nil\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("agent still running 10s after its stdin reached EOF\n%s", stderr.String())
	}
	log := stderr.String()
	if !strings.Contains(log, "stdin reached EOF") || !strings.Contains(log, `"msg":"agent stopped"`) {
		t.Errorf("the log should say why the agent stops and that it stopped:\n%s", log)
	}
}

// TestAgentIgnoresStdinWithoutFlag: without the flag the agent never reads
// stdin, so an application that closes it does not stop its agent.
func TestAgentIgnoresStdinWithoutFlag(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pr, pw := io.Pipe()
	defer pw.Close()
	in := &countingReader{r: pr}
	ctx, cancel := context.WithCancel(t.Context())
	done, stderr := runSoloAgent(t, ctx, in)
	if n := in.reads.Load(); n != 0 {
		t.Errorf("the agent read its stdin %d times without --exit-on-stdin-eof", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent: %v\n%s", err, stderr.String())
	}
}

// TestAgentProcessExitsWhenParentPipeCloses runs the agent binary as a
// child whose stdin is a pipe, as the Python SDK does, and closes the
// pipe's write end (what the kernel does when the parent dies, even by
// SIGKILL): the agent must exit with code 0.
func TestAgentProcessExitsWhenParentPipeCloses(t *testing.T) {
	bin := qclusterBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	cfg := writeFile(t, dir, "solo.json", fmt.Sprintf(`{"identifier": "solo", "listen_port": %d, "data_dir": %q}`,
		port, filepath.Join(dir, "data")))
	cmd := exec.Command(bin, "agent", "--config", cfg, "--exit-on-stdin-eof")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("agent exited before it answered: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not answer %s within 20s\n%s", url, stderr.String())
		}
	}

	stdin.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exited with %v after its stdin closed, want exit code 0\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("agent still running 10s after its stdin closed\n%s", stderr.String())
	}
}
