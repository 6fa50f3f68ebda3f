package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// The stdin watchdog of "qcluster agent --exit-on-stdin-eof".
//
// An agent started by an application (the Python SDK's QCluster(**config),
// or any program that runs a sidecar agent as its child) must live and die
// with it, even when the application is killed with SIGKILL and runs no
// clean-up code at all. The application starts the agent with its stdin a
// pipe whose write end only the application holds. The kernel closes that
// end when the application exits, however it exits, so the agent reads EOF
// on stdin and stops cleanly, as on SIGINT: its peers see it leave at once
// instead of after a failure-detection delay, and no orphaned agent keeps
// claiming leadership for an application that is gone.
//
// Whatever the application writes to the pipe is read and ignored. A read
// error is taken like EOF: the agent cannot tell that its parent is alive.
// With stdin at /dev/null (or a closed stdin) the flag makes the agent stop
// at once, by design.

// ErrStdinClosed is the cause (context.Cause) of the agent's context when
// --exit-on-stdin-eof is set and stdin reaches EOF.
var ErrStdinClosed = errors.New("stdin reached EOF: the process that started the agent is gone (--exit-on-stdin-eof)")

// stdin returns the reader the watchdog watches: c.Stdin, else the
// process's stdin.
func (c *AgentCommand) stdin() io.Reader {
	if c.Stdin != nil {
		return c.Stdin
	}
	return os.Stdin
}

// watchStdin returns a context that ends, with cause ErrStdinClosed
// (wrapping the read error if it was not EOF), once r reaches EOF or fails,
// and a function that releases it. The goroutine reading r ends when r
// does: a read on a process's stdin cannot be interrupted, and the process
// exits anyway once the agent returns.
func watchStdin(ctx context.Context, r io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		_, err := io.Copy(io.Discard, r)
		if err != nil {
			cancel(fmt.Errorf("%w: %w", ErrStdinClosed, err))
			return
		}
		cancel(ErrStdinClosed)
	}()
	return ctx, func() { cancel(nil) }
}
