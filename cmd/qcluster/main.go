// Command qcluster runs QCluster peers as processes, shows a cluster at
// work, and asks a running cluster about its leader through the HTTP API.
//
// Usage:
//
//	qcluster <command> [flags]
//
// Commands:
//
//	agent     run one peer as a process, from its JSON config file
//	demo      start a local cluster of agent processes, kill its leader and
//	          watch another peer take over
//	tls       make the CA, certificates and keys of a secure cluster
//	status    show a peer's view: role, term, leader, lease
//	leader    print the leader (exit code 1 when there is none)
//	peers     list the members (a table, or JSON with -o json)
//	watch     print each leadership change as it happens, until Ctrl-C
//	transfer  hand leadership to a given member (or the best one)
//	resign    make the leader hand over to the best other member
//	join      add a member to the cluster
//	remove    remove a member from the cluster
//	leave     make the peer asked leave the cluster and stop
//	metadata  show or replace the metadata of the peer asked
//	kv        get, put, delete, list and watch keys of the replicated KV store
//	lock      run a command while holding a cluster-wide lock
//	completion  print a shell completion script (bash, zsh or fish)
//
// A mistyped command or flag gets a suggestion ("did you mean").
//
// The client commands take --addr (default $QCLUSTER_ADDR, else
// 127.0.0.1:7001; a comma-separated list is tried in turn, except by leave
// and metadata, which act on the one peer they ask) and --token (default
// $QCLUSTER_TOKEN); against a TLS cluster, --cluster-key, or --cacert with
// --cert and --key (default $QCLUSTER_CLUSTER_KEY, $QCLUSTER_CACERT, ...).
//
// Exit codes: 0 success, 1 runtime failure (no peer reachable, no leader,
// refused), 2 usage error (bad flags or a bad config file); qcluster lock
// exits with its command's code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/idleprocs"
)

func main() {
	ctx, stop := notifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	m := NewMain()
	err := m.Run(ctx, os.Args[1:])
	stop()
	os.Exit(m.Report(err))
}

// SignalError is the cause (context.Cause) of the context Run gets when
// the process receives a signal, so a command can tell SIGTERM from
// SIGINT.
type SignalError struct {
	// Signal is the signal received.
	Signal os.Signal
}

// Error says which signal was received.
func (e *SignalError) Error() string { return e.Signal.String() + " signal received" }

// notifyContext is signal.NotifyContext with a *SignalError as the cause.
func notifyContext(parent context.Context, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			cancel(&SignalError{Signal: s})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// receivedSignal reports whether ctx was cancelled because the process
// received sig.
func receivedSignal(ctx context.Context, sig os.Signal) bool {
	var se *SignalError
	return errors.As(context.Cause(ctx), &se) && se.Signal == sig
}

// Main is the qcluster program: it dispatches a command line to a
// subcommand. It exits nothing itself, so tests can run it in-process.
type Main struct {
	// Stdin is read by the commands that take input (kv put, the command
	// of lock); nil: the process's.
	Stdin io.Reader
	// Stdout receives a command's output, and help that was asked for.
	Stdout io.Writer
	// Stderr receives logs, errors and usage after a usage error.
	Stderr io.Writer
	// Procs is what "agent --idle-procs" governs (AgentCommand.Procs);
	// nil leaves GOMAXPROCS alone.
	Procs idleprocs.Procs
}

// NewMain returns a Main that writes to the process's stdout and stderr
// and lets the agent govern the process's processors.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Procs: idleprocs.Runtime()}
}

// UsageError reports bad command-line arguments or a bad config file. The
// process exits with code 2.
type UsageError struct {
	// Err says what is wrong.
	Err error
	// Hint, when not empty, says where to find help, on a line of its own.
	Hint string
}

// Error returns the message of Err.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *UsageError) Unwrap() error { return e.Err }

// usageErrorf returns a *UsageError with a formatted message and a hint
// naming the help of command cmd (the top level when empty).
func usageErrorf(cmd, format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...), Hint: helpHint(cmd)}
}

func helpHint(cmd string) string {
	if cmd == "" {
		return "Run 'qcluster -h' for usage."
	}
	return "Run 'qcluster " + cmd + " -h' for usage."
}

// ExitCode maps an error returned by Run to the process exit code: 0 for
// nil, 2 for a *UsageError, the command's code for a *CommandExitError, 1
// for anything else.
func ExitCode(err error) int {
	var ue *UsageError
	var ce *CommandExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce):
		return ce.Code
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// Report prints err (if any) to Stderr and returns the exit code for it.
func (m *Main) Report(err error) int {
	if err == nil {
		return 0
	}
	var ce *CommandExitError
	if errors.As(err, &ce) && ce.Message == "" {
		return ce.Code // the command's exit code says it all
	}
	msg := strings.TrimPrefix(err.Error(), "qcluster: ")
	fmt.Fprintf(m.Stderr, "qcluster: %s\n", msg)
	var ue *UsageError
	if errors.As(err, &ue) && ue.Hint != "" {
		fmt.Fprintln(m.Stderr, ue.Hint)
	}
	return ExitCode(err)
}

const mainUsage = `qcluster runs QCluster peers as processes, shows a cluster at work, and
asks a running cluster about its leader.

Usage:

	qcluster <command> [flags]

Commands:

	agent     run one peer as a process, from its JSON config file
	demo      start a local cluster of agent processes, kill its leader and
	          watch another peer take over (needs no arguments or files)
	tls       make the CA, certificates and keys of a secure cluster

	status    show a peer's view: role, term, leader, lease
	leader    print the leader (exit code 1 when there is none)
	peers     list the members (a table, or JSON with -o json)
	watch     print each leadership change as it happens, until Ctrl-C
	transfer  hand leadership to a given member (or the best one)
	resign    make the leader hand over to the best other member
	join      add a member to the cluster (from flags or its config file)
	remove    remove a member from the cluster
	leave     make the peer asked leave the cluster gracefully and stop
	metadata  show or replace the metadata of the peer asked
	kv        get, put, delete, list and watch keys of the replicated KV
	          store (get|put|del|ls|watch)
	lock      run a command while holding a cluster-wide lock:
	          qcluster lock NAME -- COMMAND [ARGS...]

	completion  print a shell completion script: bash, zsh or fish

The twelve from status to lock ask a peer's HTTP API: --addr host:port (default
$QCLUSTER_ADDR, else 127.0.0.1:7001; a comma-separated list is tried in
turn, except by leave and metadata, which act on the one peer they ask),
--token for the commands that change the cluster, and for every command
when the peers protect reads (default $QCLUSTER_TOKEN), and for a cluster
secured with TLS --cluster-key KEY, or --cacert ca.pem with --cert and
--key (default $QCLUSTER_CLUSTER_KEY, $QCLUSTER_CACERT, $QCLUSTER_CERT,
$QCLUSTER_KEY).

Run 'qcluster <command> -h' for a command's flags.

Try it:

	qcluster demo

Exit codes: 0 success, 1 runtime failure (no peer reachable, no leader,
refused), 2 usage error (bad flags or a bad config file); qcluster lock
exits with its command's code.
`

// Run runs the command line args (without the program name). It returns a
// *UsageError for bad arguments; ctx ending stops a running command (the
// agent stops cleanly and Run returns nil).
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, mainUsage)
		return &UsageError{Err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "agent":
		return (&AgentCommand{Stdout: m.Stdout, Stderr: m.Stderr, Procs: m.Procs}).Run(ctx, rest)
	case "demo":
		return (&DemoCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "status":
		return (&StatusCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "leader":
		return (&LeaderCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "peers":
		return (&PeersCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "watch":
		return (&WatchCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "transfer":
		return (&TransferCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "resign":
		return (&ResignCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "join":
		return (&JoinCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "remove":
		return (&RemoveCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "leave":
		return (&LeaveCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "metadata", "meta":
		return (&MetadataCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "kv":
		return (&KVCommand{Stdin: m.Stdin, Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "lock":
		return (&LockCommand{Stdin: m.Stdin, Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "tls":
		return (&TLSCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, rest)
	case "completion":
		return (&CompletionCommand{Stdout: m.Stdout}).Run(ctx, rest)
	case "help", "-h", "-help", "--help":
		if cmd == "help" && len(rest) > 0 {
			// "qcluster help agent" is "qcluster agent -h".
			if slices.Contains(commands, rest[0]) || rest[0] == "meta" {
				return m.Run(ctx, []string{rest[0], "-h"})
			}
			return unknownCommand(rest[0])
		}
		fmt.Fprint(m.Stdout, mainUsage)
		return nil
	default:
		return unknownCommand(cmd)
	}
}

// commands are the names of qcluster's commands, for help, suggestions and
// shell completion.
var commands = []string{
	"agent", "demo", "tls", "status", "leader", "peers", "watch", "transfer", "resign",
	"join", "remove", "leave", "metadata", "kv", "lock", "completion", "help",
}

// unknownCommand is the usage error for a command qcluster does not have,
// with the command it looks like a misspelling of.
func unknownCommand(cmd string) error {
	if s := qcluster.Suggest(cmd, commands); s != "" {
		return usageErrorf("", "unknown command %q; did you mean %q?", cmd, s)
	}
	return usageErrorf("", "unknown command %q", cmd)
}

// parseFlags parses a subcommand's flags. It prints the command's usage to
// stdout and returns errHelp when help was asked for, and turns any other
// parse error into a *UsageError. The flag package's own error output is
// suppressed: the caller reports the error once.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, usage string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return errHelp
	case err != nil:
		return flagError(fs, err)
	case fs.NArg() > 0:
		return usageErrorf(fs.Name(), "%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// flagError is the usage error for err from fs.Parse: for a flag fs does
// not define, with the flag it looks like a misspelling of.
func flagError(fs *flag.FlagSet, err error) error {
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		if s := qcluster.Suggest(strings.TrimLeft(name, "-"), names); s != "" {
			dash := "--"
			if len(s) == 1 {
				dash = "-"
			}
			return usageErrorf(fs.Name(), "%s: unknown flag %s; did you mean %s%s?", fs.Name(), name, dash, s)
		}
	}
	return usageErrorf(fs.Name(), "%s: %w", fs.Name(), err)
}

// errHelp is returned by parseFlags when it printed help; the command then
// returns nil.
var errHelp = errors.New("help shown")
