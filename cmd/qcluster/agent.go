package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/qcluster/qcluster"
)

const agentUsage = `Usage: qcluster agent --config <file> [--log-level info] [--log-format text]

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
/v1/leader, /v1/peers, /v1/watch, /healthz, /readyz, /metrics; POST
/v1/leader/transfer and /v1/leader/resign: see docs/api.md) and logs every
leadership change, with the term and the leader, to stderr. SIGINT or SIGTERM stops it cleanly (exit code 0). A bad
config file is reported with the field at fault and exit code 2.

Flags:
`

// AgentCommand is "qcluster agent": it runs one peer until it is signalled
// to stop.
type AgentCommand struct {
	// Stdout receives help when asked for.
	Stdout io.Writer
	// Stderr receives the peer's logs.
	Stderr io.Writer
}

// Run parses args, loads the config and runs the peer until ctx ends, then
// closes it and returns nil. Bad flags or a bad config file return a
// *UsageError; a peer that cannot start or stops on its own returns another
// error.
func (c *AgentCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	configPath := fs.String("config", "", "the peer's JSON config `file` (required)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	if err := parseFlags(fs, args, c.Stdout, agentUsage); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *configPath == "" {
		return usageErrorf("agent", "agent: --config is required: give the peer's JSON config file")
	}
	logger, err := newLogger(c.Stderr, *level, *format)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("agent: %w", err), Hint: helpHint("agent")}
	}

	cfg, err := qcluster.LoadConfig(*configPath)
	if err != nil {
		return &UsageError{Err: err}
	}
	// The SDK logs every leadership change (qcluster.LeadershipLogMessage).
	cfg.Logger = logger
	cl, err := qcluster.New(cfg)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("config %s: %w", *configPath, err)}
	}
	if err := cl.Start(ctx); err != nil {
		cl.Close()
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	log := logger.With("peer", cfg.Identifier)

	// The SDK logs every leadership change. Watch only to notice a peer
	// that stops on its own (its channel closes; Err says why).
	watchCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := cl.Watch(watchCtx)
	for {
		select {
		case _, ok := <-states:
			if !ok {
				return errors.Join(errors.New("agent: the peer stopped on its own"), cl.Err(), cl.Close())
			}
		case <-ctx.Done():
			log.Info("agent stopping", "reason", context.Cause(ctx).Error())
			if err := cl.Close(); err != nil {
				return fmt.Errorf("agent: close: %w", err)
			}
			log.Info("agent stopped")
			return nil
		}
	}
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
