// Command minimal is the seed's "bare minimum" QCluster example: the leader
// does some work once a second, in RunWhileLeader, which stops it the
// moment leadership is lost; the others say once a second who leads, until
// one of them becomes the leader.
//
// Run one per terminal, from the repository root:
//
//	go run ./examples/minimal examples/minimal/server_a.json
//	go run ./examples/minimal examples/minimal/server_b.json
//	go run ./examples/minimal examples/minimal/server_c.json
//
// Stop the leader with Ctrl-C and watch another peer take over.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/qcluster/qcluster"
)

func main() {
	config := flag.String("config", "", "the peer's config file (e.g. examples/minimal/server_a.json)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: minimal -config <config.json>   (e.g. examples/minimal/server_a.json)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *config == "" && flag.NArg() == 1 {
		*config = flag.Arg(0) // the seed's form: minimal <config.json>
	} else if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *config == "" {
		flag.Usage()
		os.Exit(2)
	}
	// Ctrl-C (SIGINT) or SIGTERM cancels ctx: the loop ends and the peer
	// closes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string) error {
	cfg, err := qcluster.LoadConfig(path)
	if err != nil {
		return err
	}
	identifier := cfg.Identifier

	cluster, err := qcluster.New(cfg)
	if err != nil {
		return err
	}
	if err := cluster.Start(ctx); err != nil {
		return err
	}
	defer cluster.Close()

	// The leader's work. RunWhileLeader calls it each time this peer gains
	// leadership and cancels leaderCtx the moment the lease is lost (a
	// hand-over, a stop, the lease running out while this process was
	// paused): the work stops at once, not at its next check.
	work := func(leaderCtx context.Context) error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			slog.Info("I am the leader! " + identifier + " is doing some work...")
			select {
			case <-leaderCtx.Done():
				slog.Info("No longer the leader: "+identifier+" stops its work", "cause", context.Cause(leaderCtx))
				return nil // and waits to lead again
			case <-tick.C:
			}
		}
	}
	worked := make(chan error, 1)
	go func() { worked <- cluster.RunWhileLeader(ctx, work) }()

	// Meanwhile, once a second, a follower says who leads.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if !cluster.IsLeader() {
			slog.Info("I am not the leader :(")
			if leader, ok := cluster.Leader(); ok {
				// Metadata comes from the config files: a follower could use
				// the leader's server_port to send its traffic there.
				slog.Info("This is the leader", "identifier", leader.Identifier,
					"host", leader.Host, "port", leader.Port, "metadata", leader.Metadata)
			} else {
				slog.Info("No leader is elected right now (no majority of peers reachable, or an election is running)")
			}
		}
		select {
		case <-ctx.Done():
			slog.Info("Stopping " + identifier)
			<-worked // the work has stopped
			return nil
		case err := <-worked:
			return err // the peer stopped on its own (qcluster.ErrClosed)
		case <-tick.C:
		}
	}
}
