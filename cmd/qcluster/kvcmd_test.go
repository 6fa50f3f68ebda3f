package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/api/apitest"
)

// runKV runs qcluster with stdin in.
func runIn(ctx context.Context, in string, args ...string) (stdout, stderr string, err error) {
	var out, errOut syncBuffer
	m := &Main{Stdin: strings.NewReader(in), Stdout: &out, Stderr: &errOut}
	err = m.Run(ctx, args)
	return out.String(), errOut.String(), err
}

func kvFake(t *testing.T) (*apitest.Backend, []string) {
	t.Helper()
	clearEnv(t)
	f := newFakePeer()
	addr := serveFake(t, f, api.Options{Token: "tok", KeepAlive: 50 * time.Millisecond})
	t.Cleanup(f.Stop) // first: the streams end, so the server can close
	return f, []string{"--addr", addr, "--token", "tok"}
}

func TestKVCommand(t *testing.T) {
	f, conn := kvFake(t)
	ctx := t.Context()
	run := func(in string, args ...string) (string, error) {
		t.Helper()
		out, _, err := runIn(ctx, in, append(args, conn...)...)
		return out, err
	}
	if out, err := run("", "kv", "put", "config/db", "postgres://db1"); err != nil || out != "put config/db: revision 1\n" {
		t.Fatalf("kv put: %q %v", out, err)
	}
	if out, err := run("line1\nline2\n", "kv", "put", "config/motd"); err != nil || !strings.Contains(out, "revision 2") {
		t.Fatalf("kv put from stdin: %q %v", out, err)
	}
	if out, err := run("", "kv", "get", "config/motd"); err != nil || out != "line1\nline2\n\n" {
		t.Fatalf("kv get: %q %v", out, err)
	}
	out, err := run("", "kv", "get", "config/db", "--stale", "-o", "json")
	var kv api.KeyValue
	if err != nil || json.Unmarshal([]byte(out), &kv) != nil || string(kv.Value) != "postgres://db1" || kv.ModRevision != 1 {
		t.Fatalf("kv get -o json: %q %v", out, err)
	}
	if out, err := run("", "kv", "get", "--prefix", "config/"); err != nil || out != "config/db=postgres://db1\nconfig/motd=line1\nline2\n\n" {
		t.Fatalf("kv get --prefix: %q %v", out, err)
	}
	// Compare-and-swap.
	args := []string{"kv", "put", "--cas", "5", "config/db", "x"}
	_, err = run("", args...)
	wantExit(t, args, err, 1, "compare failed: the mod revision of config/db is 1")
	if _, err := run("", "kv", "put", "--cas", "1", "config/db", "postgres://db2"); err != nil {
		t.Fatalf("kv put --cas 1: %v", err)
	}
	args = []string{"kv", "put", "--cas", "0", "config/db", "x"}
	_, err = run("", args...)
	wantExit(t, args, err, 1, "compare failed")
	// Ephemeral, in the list with its owner.
	if _, err := run("", "kv", "put", "--ephemeral", "svc/b", "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	out, err = run("", "kv", "ls")
	if err != nil || !strings.Contains(out, "KEY") || !strings.Contains(out, "svc/b") || !strings.Contains(out, "server_b") || !strings.Contains(out, "config/motd") {
		t.Fatalf("kv ls: %q %v", out, err)
	}
	if out, err := run("", "kv", "ls", "svc/", "-o", "json"); err != nil || !strings.Contains(out, `"owner": "server_b"`) {
		t.Fatalf("kv ls -o json: %q %v", out, err)
	}
	// Delete, and what is not there.
	if out, err := run("", "kv", "del", "config/db"); err != nil || !strings.HasPrefix(out, "deleted config/db: revision") {
		t.Fatalf("kv del: %q %v", out, err)
	}
	for _, args := range [][]string{{"kv", "get", "config/db"}, {"kv", "del", "config/db"}} {
		_, err := run("", args...)
		wantExit(t, args, err, 1, "key not found: config/db")
	}
	// The token is needed for changes.
	_, _, err = runMain(ctx, "kv", "put", "k", "v", "--addr", conn[1])
	wantExit(t, []string{"kv", "put"}, err, 1, "unauthorized")
	if n := f.KVRevision(); n != 5 {
		t.Errorf("store revision %d, want 5", n)
	}
}

func TestKVCommandUsage(t *testing.T) {
	clearEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"kv"}, "name an action"},
		{[]string{"kv", "frob"}, `unknown action "frob"`},
		{[]string{"kv", "get"}, "name the KEY"},
		{[]string{"kv", "get", "a", "b"}, `unexpected argument "b"`},
		{[]string{"kv", "put"}, "name the KEY"},
		{[]string{"kv", "get", "--cas", "3", "k"}, "--cas does not apply (it goes with put, del)"},
		{[]string{"kv", "del", "--ephemeral", "k"}, "--ephemeral does not apply"},
		{[]string{"kv", "put", "--cas", "x", "k", "v"}, "not a revision"},
		{[]string{"kv", "watch", "--from", "-1"}, "from"},
		{[]string{"kv", "lss"}, `unknown action "lss"`},
	} {
		_, _, err := runMain(t.Context(), c.args...)
		wantExit(t, c.args, err, 2, c.want)
	}
	out, _, err := runMain(t.Context(), "kv", "-h")
	if err != nil || !strings.Contains(out, "qcluster kv put") || !strings.Contains(out, "-cas") || !strings.Contains(out, "-ephemeral") {
		t.Fatalf("kv -h: %v\n%s", err, out)
	}
}

func TestKVWatchCommand(t *testing.T) {
	f, conn := kvFake(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runIn(ctx, "", append([]string{"kv", "put", "svc/a", "1"}, conn...)...) // 1
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		m := &Main{Stdout: &out, Stderr: &out}
		done <- m.Run(ctx, append([]string{"kv", "watch", "--prefix", "svc/", "--from", "1"}, conn...))
	}()
	waitForText(t, &out, "1 put svc/a 1\n")
	runIn(ctx, "", append([]string{"kv", "put", "svc/b", "2"}, conn...)...) // 2
	runIn(ctx, "", append([]string{"kv", "put", "other", "x"}, conn...)...) // 3
	runIn(ctx, "", append([]string{"kv", "del", "svc/a"}, conn...)...)      // 4
	waitForText(t, &out, "1 put svc/a 1\n2 put svc/b 2\n4 delete svc/a\n")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kv watch after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kv watch did not stop")
	}
	// From a revision no longer kept: exit 1 and why.
	f.Compact(3)
	args := append([]string{"kv", "watch", "--prefix", "svc/", "--from", "1"}, conn...)
	_, _, err := runMain(t.Context(), args...)
	wantExit(t, args, err, 1, "oldest revision kept is 3")
}

// waitForText waits until b holds exactly want.
func waitForText(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for b.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, want %q", b.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitForOutput waits until b contains want.
func waitForOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, want it to contain %q", b.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func needShell(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
}

// TestLockCommand: the command runs while the lock is held, with its token,
// its exit code is qcluster's, and the lock is released after it.
func TestLockCommand(t *testing.T) {
	needShell(t)
	f, conn := kvFake(t)
	args := append(append([]string{"lock"}, conn...), "backup", "--", "sh", "-c", `echo "token=$QCLUSTER_LOCK_TOKEN name=$QCLUSTER_LOCK_NAME"; exit 3`)
	out, errOut, err := runIn(t.Context(), "", args...)
	if ExitCode(err) != 3 || out != "token=1 name=backup\n" || !strings.Contains(errOut, `lock "backup" held (token 1)`) {
		t.Fatalf("lock: exit %d (%v), stdout %q, stderr %q", ExitCode(err), err, out, errOut)
	}
	var msg strings.Builder
	if code := (&Main{Stderr: &msg}).Report(err); code != 3 || msg.Len() != 0 {
		t.Errorf("Report: %d %q; want 3 and nothing said", code, msg.String())
	}
	waitFor(t, "the lock released", func() bool { return len(f.Locks()) == 0 })
	// Success, and stdin reaches the command.
	args = append(append([]string{"lock"}, conn...), "backup", "--", "sh", "-c", "cat")
	if out, _, err := runIn(t.Context(), "hello\n", args...); err != nil || out != "hello\n" {
		t.Fatalf("lock with cat: %q %v", out, err)
	}
	// Held elsewhere: --wait gives up.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, _, err := f.Lock(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	args = append(append([]string{"lock", "--wait", "100ms"}, conn...), "busy", "--", "true")
	_, _, err = runIn(t.Context(), "", args...)
	wantExit(t, args, err, 1, `lock "busy": still held`)
	// Usage.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"lock"}, "name the lock"},
		{[]string{"lock", "x"}, "give the command"},
		{[]string{"lock", "x", "--"}, "give the command"},
		{[]string{"lock", "--grace", "-1s", "x", "--", "true"}, "must not be negative"},
	} {
		_, _, err := runMain(t.Context(), c.args...)
		wantExit(t, c.args, err, 2, c.want)
	}
	_, _, err = runMain(t.Context(), append(append([]string{"lock"}, conn...), "x", "--", "/no/such/command")...)
	wantExit(t, []string{"lock", "x", "--", "/no/such/command"}, err, 1, "cannot run")
}

// TestLockCommandStopsTheCommandWhenTheLockIsLost: SIGTERM, then SIGKILL
// after --grace for a command that ignores it.
func TestLockCommandStopsTheCommandWhenTheLockIsLost(t *testing.T) {
	needShell(t)
	f, conn := kvFake(t)
	for _, c := range []struct {
		name, script, grace string
		code                int
	}{
		// The shell runs its trap only once its sleep ends: a grace of
		// 300 ms lost that race on a loaded machine (exit 137, not 7). The
		// kill case alone needs the grace to run out.
		{"term", `trap 'echo stopping; exit 7' TERM; echo ready; while :; do sleep 0.05; done`, "20s", 7},
		{"kill", `trap '' TERM; echo ready; exec sleep 60`, "300ms", 128 + 9},
	} {
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out}
			done <- m.Run(t.Context(), append(append([]string{"lock", "--grace", c.grace}, conn...), c.name, "--", "sh", "-c", c.script))
		}()
		waitForOutput(t, &out, "ready\n")
		if !f.LoseLock(c.name) {
			t.Fatalf("%s: the lock is not held", c.name)
		}
		select {
		case err := <-done:
			if ExitCode(err) != c.code || !strings.Contains(err.Error(), "lost") {
				t.Fatalf("%s: exit %d (%v), want %d; output %q", c.name, ExitCode(err), err, c.code, out.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the command was not stopped after the lock was lost; output %q", c.name, out.String())
		}
		if c.name == "term" && !strings.Contains(out.String(), "stopping") {
			t.Errorf("the command did not get SIGTERM: %q", out.String())
		}
	}
}

// TestLockCommandPassesCtrlC: qcluster's own stop reaches the command,
// and the lock is released after it exits.
func TestLockCommandPassesCtrlC(t *testing.T) {
	needShell(t)
	f, conn := kvFake(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out}
		done <- m.Run(ctx, append(append([]string{"lock"}, conn...), "job", "--", "sh", "-c", `trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done`))
	}()
	waitForOutput(t, &out, "ready\n")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the command was not stopped")
	}
	waitFor(t, "the lock released", func() bool { return len(f.Locks()) == 0 })
}
