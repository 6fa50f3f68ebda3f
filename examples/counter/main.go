// Command counter is a replicated counter and a job lock on QCluster's
// key-value store: every peer adds one to the counter "counter" once a
// second with a compare-and-swap (a lost race is retried, so no increment
// is ever lost or counted twice), and every few seconds runs a "report"
// job under the lock "report" (one peer at a time, each with a larger
// fencing token).
//
// Run one per terminal, from the repository root:
//
//	go run ./examples/counter -config examples/counter/server_a.json
//	go run ./examples/counter -config examples/counter/server_b.json
//	go run ./examples/counter -config examples/counter/server_c.json
//
// Stop one with Ctrl-C: the others go on counting; start it again and it
// reads the counter where the cluster left it (the store lives in the
// Raft log, in data_dir).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/kv"
)

func main() {
	config := flag.String("config", "", "the peer's config file (e.g. examples/counter/server_a.json)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: counter -config <config.json>   (e.g. examples/counter/server_a.json)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *config == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *config, os.Stdout, timing{add: time.Second, report: 5 * time.Second, job: 2 * time.Second}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// timing is how often a peer adds to the counter and tries to run the
// report, and how long the report runs.
type timing struct{ add, report, job time.Duration }

func run(ctx context.Context, path string, out io.Writer, tm timing) error {
	cfg, err := qcluster.LoadConfig(path)
	if err != nil {
		return err
	}
	c, err := qcluster.New(cfg)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer c.Close()
	me := cfg.Identifier

	jobs := make(chan error, 1)
	go func() { jobs <- reports(ctx, c, me, out, tm) }()

	tick := time.NewTicker(tm.add)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-jobs
		case err := <-jobs:
			return err
		case <-tick.C:
		}
		if err := add(ctx, c, me, out); err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "%s: counter: %v (trying again in a moment)\n", me, err)
		}
	}
}

// add adds one to the counter: read it (linearizable), write the next
// value only if nobody changed it since (IfModRevision; IfAbsent the first
// time), and start again if somebody did.
func add(ctx context.Context, c *qcluster.Cluster, me string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		n, cond := 0, kv.IfAbsent()
		cur, err := c.KV().Get(ctx, "counter")
		switch {
		case err == nil:
			if n, err = strconv.Atoi(string(cur.Value)); err != nil {
				return fmt.Errorf("the counter holds %q: %w", cur.Value, err)
			}
			cond = kv.IfModRevision(cur.ModRevision)
		case !errors.Is(err, qcluster.ErrKeyNotFound):
			return err
		}
		res, err := c.KV().Put(ctx, "counter", []byte(strconv.Itoa(n+1)), cond)
		if errors.Is(err, qcluster.ErrCompareFailed) {
			continue // another peer added first: read again
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: counter %d -> %d (revision %d)\n", me, n, n+1, res.Revision)
		return nil
	}
}

// reports runs the report job under the lock "report", every tm.report.
func reports(ctx context.Context, c *qcluster.Cluster, me string, out io.Writer, tm timing) error {
	tick := time.NewTicker(tm.report)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		lctx, cancel := context.WithTimeout(ctx, tm.report)
		l, err := c.Lock(lctx, "report")
		cancel()
		if err != nil {
			continue // another peer's report ran the whole time
		}
		fmt.Fprintf(out, "%s: report: started, fencing token %d\n", me, l.Token())
		select {
		case <-time.After(tm.job): // the job's work
			fmt.Fprintf(out, "%s: report: done, token %d\n", me, l.Token())
		case <-l.Lost():
			fmt.Fprintf(out, "%s: report: lock lost, stopped, token %d\n", me, l.Token())
		case <-ctx.Done():
		}
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = l.Unlock(uctx)
		cancel()
	}
}
