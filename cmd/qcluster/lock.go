package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/qcluster/qcluster/client"
)

const lockUsage = `Usage: qcluster lock [--addr 127.0.0.1:7001] [--token T] [--wait D] [--grace D] NAME -- COMMAND [ARGS...]

Takes the cluster's lock NAME (waiting for it as long as --wait allows;
default: as long as it takes), runs COMMAND while holding it, and releases
it when COMMAND exits, like 'consul lock'. The exit code is COMMAND's. At
most one COMMAND runs under a lock NAME in the whole cluster at a time.

If the lock is lost while COMMAND runs (the peer holding it for qcluster
is removed or stops, or the connection to it breaks), COMMAND gets SIGTERM
and, if it has not exited after --grace, SIGKILL: it must not go on without
the lock. Ctrl-C or SIGTERM to qcluster is passed on to COMMAND the same
way, and the lock is released once COMMAND exits.

COMMAND gets QCLUSTER_LOCK_NAME and QCLUSTER_LOCK_TOKEN in its environment:
the token is a fencing token (larger for every later holder) to hand to
what the lock protects. Flags come before NAME; everything after "--" is
the command.

Examples:

	qcluster lock nightly-backup -- /usr/local/bin/backup.sh --full
	qcluster lock --wait 10s --addr db1:7001,db2:7001 migrate -- ./migrate up

` + clientFlagsUsage + `
Flags:
`

// LockCommand is "qcluster lock".
type LockCommand struct {
	// Stdin, Stdout and Stderr are COMMAND's; Stderr also receives what
	// qcluster says about the lock. Stdin nil: the process's.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// CommandExitError is the exit of a command qcluster ran (qcluster lock):
// the process exits with Code. Message, when not empty, is printed.
type CommandExitError struct {
	// Code is the command's exit code (128 + the signal for a command a
	// signal ended).
	Code int
	// Message says what happened, for people; empty when the command's
	// own exit code says it all.
	Message string
}

// Error returns the message, or the exit code.
func (e *CommandExitError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return "the command exited with code " + strconv.Itoa(e.Code)
}

// Run takes the lock, runs the command while holding it and returns its
// exit (a *CommandExitError when it is not 0).
func (c *LockCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lock", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true, false)
	wait := fs.Duration("wait", 0, "give up if the lock is not free within this `duration` (0: wait as long as it takes)")
	grace := fs.Duration("grace", 10*time.Second, "after SIGTERM, how long COMMAND has to exit before SIGKILL")
	pos, err := lockArgs(fs, args, c.Stdout)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case len(pos) == 0:
		return usageErrorf("lock", "lock: name the lock, then the command after --, such as: qcluster lock backup -- ./backup.sh")
	case len(pos) == 1:
		return usageErrorf("lock", "lock: give the command to run while holding %q after --, such as: qcluster lock %s -- ./backup.sh", pos[0], pos[0])
	case *wait < 0 || *grace < 0:
		return usageErrorf("lock", "lock: --wait and --grace must not be negative")
	}
	name, argv := pos[0], pos[1:]
	if _, err := exec.LookPath(argv[0]); err != nil {
		return fmt.Errorf("lock: cannot run %q: %w", argv[0], err)
	}
	cl, err := f.client("lock")
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()

	lctx := ctx
	if *wait > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, *wait)
		defer cancel()
	}
	l, err := cl.Lock(lctx, name)
	if err != nil {
		var ae *client.APIError
		switch {
		case ctx.Err() != nil:
			return nil // Ctrl-C while waiting
		case lctx.Err() != nil, errors.As(err, &ae) && ae.Status == http.StatusRequestTimeout:
			return fmt.Errorf("lock %q: still held by another holder after --wait %v", name, *wait)
		}
		return kvError(err, cl, name)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = l.Unlock(uctx)
	}()
	fmt.Fprintf(c.Stderr, "qcluster: lock %q held (token %d); running %s\n", name, l.Token(), argv[0])

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = c.Stdin
	if cmd.Stdin == nil {
		cmd.Stdin = os.Stdin
	}
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	cmd.Env = append(os.Environ(), "QCLUSTER_LOCK_NAME="+name, "QCLUSTER_LOCK_TOKEN="+strconv.FormatUint(l.Token(), 10))
	// A command that leaves children holding its output is not waited for
	// long after it exits.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lock: cannot run %q: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var why string
	select {
	case err := <-done:
		return commandExit(err, "")
	case <-l.Lost():
		why = fmt.Sprintf("lock %q lost while %s ran; it was stopped", name, argv[0])
		fmt.Fprintf(c.Stderr, "qcluster: lock %q lost: stopping %s (SIGTERM, SIGKILL after %v)\n", name, argv[0], *grace)
	case <-ctx.Done():
		// Ctrl-C or SIGTERM: pass it on, and release the lock once the
		// command exits.
	}
	return commandExit(stop(cmd, done, *grace), why)
}

// stop sends SIGTERM to the command and, if it has not exited after
// grace, SIGKILL; it returns the command's exit.
func stop(cmd *exec.Cmd, done <-chan error, grace time.Duration) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	_ = cmd.Process.Kill()
	return <-done
}

// commandExit is Run's answer for the command's exit err: nil for 0, else
// a *CommandExitError with its code (128 + signal when a signal ended it).
func commandExit(err error, why string) error {
	if err == nil {
		if why != "" {
			return &CommandExitError{Code: 1, Message: why}
		}
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("lock: %w", err)
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	return &CommandExitError{Code: code, Message: why}
}

// lockArgs parses the flags before NAME; what follows NAME (after an
// optional "--") is the command, its flags included.
func lockArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, lockUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil, errHelp
	case err != nil:
		return nil, flagError(fs, err)
	}
	pos := fs.Args()
	if len(pos) > 1 && pos[1] == "--" {
		pos = append(pos[:1:1], pos[2:]...)
	}
	return pos, nil
}
