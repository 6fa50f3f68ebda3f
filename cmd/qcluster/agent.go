package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/idleprocs"
)

const agentUsage = `Usage: qcluster agent [--config <file>] [--<field> value ...] [--print-config]
                      [--log-level info] [--log-format text] [--insecure]

Runs one QCluster peer as a process, configured by a JSON file in QCluster's
config format, for example:

	{
	  "identifier": "server_a",
	  "listen_host": "localhost",
	  "listen_port": 7001,
	  "peers": [
	    {"host": "localhost", "port": 7002, "identifier": "server_b"},
	    {"host": "localhost", "port": 7003, "identifier": "server_c"}
	  ]
	}

The peer serves its HTTP API on its listen port (GET /v1/status,
/v1/leader, /v1/peers, /v1/watch, /healthz, /readyz, /metrics,
/v1/openapi.json; POST /v1/leader/transfer, /v1/leader/resign, /v1/join,
/v1/self/leave; PUT /v1/self/metadata; DELETE /v1/peers/{identifier}: see
docs/api.md) and logs every leadership change, with the term and the
leader, to stderr.

SIGINT or SIGTERM stops it cleanly (exit code 0); a leader first hands
leadership to the best follower, so the others need not wait out an
election timeout. It stays a member and comes back when restarted. With "leave_on_terminate": true in the config,
SIGTERM first makes it leave the cluster gracefully (hand leadership over,
leave the members), within --leave-timeout; exit code 1 if that fails. A
peer that leaves through the API (qcluster leave) stops too, with exit
code 0.

Without TLS nothing on the port is authenticated: anyone who can reach it
can send raft and gossip frames in any member's name (votes, log entries,
membership and health), and, unless the config sets an api_token, change
the cluster through the API (join, remove, leave, move leadership). An
api_token protects the API only, not the raft and gossip streams on the
same port. So the agent refuses to start when it listens on an address
other than loopback (including 0.0.0.0 or ::) without TLS: set
"cluster_key" (made by qcluster tls key) or "tls" (qcluster tls init) in
the config, or pass --insecure to run anyway (a trusted private network).

Every field of the file can also be set by an environment variable
QCLUSTER_<FIELD> and by a flag --<field> (listed below): flags override the
environment, which overrides the file. Text values: peers as a compact list
"server_b@10.0.0.2:7002,server_c@10.0.0.3:7003" (or the file's JSON array),
metadata and tls as JSON objects, extra_gossip_keys comma-separated. So a
peer may run with no file at all:

	QCLUSTER_IDENTIFIER=server_a QCLUSTER_LISTEN_PORT=7001 \
	QCLUSTER_PEERS=server_b@localhost:7002,server_c@localhost:7003 qcluster agent

--print-config prints the effective config (file, environment and flags,
with the defaults filled in) as JSON, with the secrets (api_token,
cluster_key, gossip_key, extra_gossip_keys) shown as "REDACTED", and exits.

An idle agent runs its Go code on one processor (--idle-procs, on by
default): after 10 s under 5 % of a core, on a machine whose tasks waited
for a CPU less than 10 % of the time (Linux's /proc/pressure/cpu), it sets
GOMAXPROCS to 1, which spares the thread wake-ups that are most of an idle
peer's CPU; the first second above 20 % of a core, or on a machine starved
of CPU, gives the runtime its default back. It leaves a GOMAXPROCS set in
the environment alone.

Examples:

	qcluster agent --config a.json
	qcluster agent --config a.json --advertise-host 10.0.0.1 --print-config

A bad config is reported with the field at fault and where it was set (the
file's line, the environment variable or the flag), and exit code 2.

Flags:
`

// AgentCommand is "qcluster agent": it runs one peer until it is signalled
// to stop.
type AgentCommand struct {
	// Stdout receives help when asked for.
	Stdout io.Writer
	// Stderr receives the peer's logs.
	Stderr io.Writer
	// Stdin is what --exit-on-stdin-eof watches (default os.Stdin).
	Stdin io.Reader
	// Environ is the environment the QCLUSTER_<FIELD> config variables are
	// read from, in os.Environ's form (default os.Environ()).
	Environ []string
	// Procs, when set, is what --idle-procs moves between one processor
	// and the runtime's default (main sets idleprocs.Runtime()). Nil
	// leaves the process's GOMAXPROCS alone, as the tests that run agents
	// in their own process need.
	Procs idleprocs.Procs

	// idle is the governor's config before Procs and the logger are set
	// (zero: idleprocs' defaults); tests make it quicker.
	idle idleprocs.Config
}

// Run parses args, loads the config and runs the peer until ctx ends, then
// closes it and returns nil. Bad flags or a bad config file return a
// *UsageError; a peer that cannot start or stops on its own returns another
// error.
func (c *AgentCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	configPath := fs.String("config", "", "the peer's JSON config `file` (required unless the fields are set by QCLUSTER_<FIELD> variables or flags)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	insecure := fs.Bool("insecure", false, "run even when listening beyond loopback without TLS (cluster_key or tls)")
	leaveTimeout := fs.Duration("leave-timeout", defaultLeaveTimeout, "how long leaving the cluster on SIGTERM may take (with leave_on_terminate)")
	exitOnEOF := fs.Bool("exit-on-stdin-eof", false, "stop cleanly when stdin reaches EOF: the program that started the agent with a pipe on its stdin has exited (the Python SDK does this)")
	idle := fs.Bool("idle-procs", true, "run Go code on one processor while the agent idles (under 5 % of a core for 10 s, the machine not starved of CPU) and on the default number again once it is busy; off when GOMAXPROCS is set")
	printConfig := fs.Bool("print-config", false, "print the effective config (secrets redacted) as JSON and exit")
	flagOverrides := configFlags(fs)
	if err := parseFlags(fs, args, c.Stdout, agentUsage); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *exitOnEOF {
		var stop context.CancelFunc
		ctx, stop = watchStdin(ctx, c.stdin())
		defer stop()
	}
	envOverrides, err := qcluster.ConfigEnvOverrides(c.environ())
	if err != nil {
		return &UsageError{Err: err}
	}
	// Flags override the environment, which overrides the file.
	overrides := append(envOverrides, *flagOverrides...)
	if *configPath == "" && len(overrides) == 0 {
		return usageErrorf("agent", "agent: --config is required: give the peer's JSON config file (or set its fields with QCLUSTER_<FIELD> variables or --<field> flags)")
	}
	logger, err := newLogger(c.Stderr, *level, *format)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("agent: %w", err), Hint: helpHint("agent")}
	}

	cfg, err := qcluster.LoadConfigLayers(*configPath, overrides...)
	if err != nil {
		return &UsageError{Err: err}
	}
	if *printConfig {
		b, err := json.MarshalIndent(cfg.Redacted(), "", "  ")
		if err != nil {
			return fmt.Errorf("agent: --print-config: %w", err)
		}
		_, err = fmt.Fprintf(c.Stdout, "%s\n", b)
		return err
	}
	if host, open := unauthenticatedPort(cfg); open && !*insecure {
		return &UsageError{Err: fmt.Errorf("agent: config %s: %s", configName(*configPath), unauthenticatedPortProblem(cfg, host))}
	}
	if *leaveTimeout <= 0 {
		return usageErrorf("agent", "agent: --leave-timeout %v: give a positive duration such as 10s", *leaveTimeout)
	}
	// The SDK logs every leadership change (qcluster.LeadershipLogMessage).
	cfg.Logger = logger
	cl, err := qcluster.New(cfg)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("config %s: %w", configName(*configPath), err)}
	}
	if err := cl.Start(ctx); err != nil {
		cl.Close()
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	log := logger.With("peer", cfg.Identifier)
	if *idle {
		defer c.governProcs(log)()
	}

	// The SDK logs every leadership change. Watch only to notice a peer
	// that stops on its own (its channel closes; Err says why).
	watchCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := cl.Watch(watchCtx)
	// Under systemd (Type=notify) the agent is ready once it knows a
	// leader (as GET /readyz); masterless, once it has started.
	ready := false
	notify := func(state string) {
		if err := sdNotify(state); err != nil {
			log.Warn("agent cannot notify systemd", "err", err)
		}
	}
	if cfg.Mode == qcluster.ModeMasterless {
		ready = true
		notify("READY=1\nSTATUS=masterless")
	}
	defer notify("STOPPING=1")
	for {
		select {
		case st, ok := <-states:
			if ok && cfg.Mode != qcluster.ModeMasterless {
				if !ready && st.HasLeader {
					ready = true
					notify("READY=1\n" + sdStatus(st))
				} else {
					notify(sdStatus(st))
				}
			}
			if !ok {
				if cl.Err() == nil {
					// Closed without a failure: it left the cluster
					// (POST /v1/self/leave).
					log.Info("agent stopped", "reason", "the peer left the cluster")
					return cl.Close()
				}
				return errors.Join(errors.New("agent: the peer stopped on its own"), cl.Err(), cl.Close())
			}
		case <-ctx.Done():
			log.Info("agent stopping", "reason", context.Cause(ctx).Error())
			if cfg.LeaveOnTerminate && receivedSignal(ctx, syscall.SIGTERM) {
				log.Info("agent leaving the cluster (leave_on_terminate)", "timeout", leaveTimeout.String())
				lctx, lcancel := context.WithTimeout(context.Background(), *leaveTimeout)
				err := cl.Leave(lctx) // closes the peer, even on error
				lcancel()
				if err != nil {
					log.Error("agent stopped without leaving the cluster", "err", err)
					return fmt.Errorf("agent: leave on SIGTERM: %w", err)
				}
				log.Info("agent stopped", "left", true)
				return nil
			}
			if err := cl.Close(); err != nil {
				return fmt.Errorf("agent: close: %w", err)
			}
			log.Info("agent stopped")
			return nil
		}
	}
}

// governProcs runs an idle-processor governor (package idleprocs) unless
// c.Procs is nil or GOMAXPROCS is set in the environment, and returns the
// function that stops it and waits until it has restored the default.
func (c *AgentCommand) governProcs(log *slog.Logger) (stop func()) {
	if c.Procs == nil {
		return func() {}
	}
	for _, kv := range c.environ() {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok && v != "" {
			log.Debug("GOMAXPROCS is set: --idle-procs leaves it alone", "GOMAXPROCS", v)
			return func() {}
		}
	}
	cfg := c.idle
	cfg.Procs, cfg.Logger = c.Procs, log
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := idleprocs.Run(ctx, cfg)
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Debug("--idle-procs stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

// environ returns the environment the config variables are read from.
func (c *AgentCommand) environ() []string {
	if c.Environ != nil {
		return c.Environ
	}
	return os.Environ()
}

// configName names the config in messages: its file, or the environment
// and flags when there is none.
func configName(path string) string {
	if path == "" {
		return "(from the environment and flags)"
	}
	return path
}

// configFlags adds a flag --<field> for every config field to fs, and
// returns the overrides the flags given set, in the order given.
func configFlags(fs *flag.FlagSet) *[]qcluster.ConfigOverride {
	var out []qcluster.ConfigOverride
	for _, f := range qcluster.ConfigFields() {
		set := func(v string) error {
			out = append(out, qcluster.ConfigOverride{Field: f.Name, Value: v, Source: "flag --" + f.Flag})
			return nil
		}
		usage := fmt.Sprintf("config field %s: %s (env %s)", f.Name, f.Syntax, f.Env)
		if f.Bool {
			fs.BoolFunc(f.Flag, usage, set)
		} else {
			fs.Func(f.Flag, usage, set)
		}
	}
	return &out
}

// defaultLeaveTimeout bounds leaving the cluster on SIGTERM.
const defaultLeaveTimeout = 10 * time.Second

// unauthenticatedPort reports whether cfg would listen beyond loopback
// without TLS, so that nothing authenticates the raft and gossip streams on
// its port (an api_token guards only the HTTP API), and the host it would
// listen on.
func unauthenticatedPort(cfg qcluster.Config) (host string, open bool) {
	if cfg.Secured() {
		return "", false
	}
	host, _, err := net.SplitHostPort(cfg.Addr())
	if err != nil {
		host = cfg.ListenHost
	}
	return host, !isLoopback(host)
}

// unauthenticatedPortProblem explains why the agent refuses to listen on
// host without TLS, and what to do.
func unauthenticatedPortProblem(cfg qcluster.Config, host string) string {
	api := "and, with no api_token, join, remove or stop members and move leadership through the API"
	if cfg.APIToken != "" {
		api = "(api_token guards only the HTTP API, not these streams)"
	}
	return fmt.Sprintf("the peer would listen on %s, beyond loopback, without TLS (no \"cluster_key\" or \"tls\"): "+
		"anyone who can reach the port could send raft and gossip frames in any member's name (votes, log entries, membership) %s; "+
		"set \"cluster_key\" (made by qcluster tls key) or \"tls\" in the config, or pass --insecure to run anyway on a trusted private network", host, api)
}

// isLoopback reports whether host is "localhost" or a loopback IP address
// (a host name that is not "localhost" is taken as reachable from
// elsewhere).
func isLoopback(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// newLogger returns a logger writing to w at the given level and format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not a level; use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not a format; use text or json", format)
}
