// Command sharding splits a fixed set of keys among masterless workers with
// Cluster.Owner, and moves a worker's keys to the others when it dies or
// leaves. There is no leader and no coordination: every worker asks Owner
// about every key and works on the ones it owns; workers that see the same
// live members (through gossip) compute the same split.
//
// Run one per terminal, from the repository root:
//
//	go run ./examples/sharding -config examples/sharding/worker_a.json
//	go run ./examples/sharding -config examples/sharding/worker_b.json
//	go run ./examples/sharding -config examples/sharding/worker_c.json
//
// Each prints the keys it owns ("customer-0" to "customer-29"; -keys
// changes how many) and, whenever that changes, which keys it took over or
// released. kill -9 a worker: once gossip declares it dead (a few seconds
// with the "local" gossip profile of these configs) the survivors take
// over its keys, and only its keys. Ctrl-C (or SIGTERM) makes a worker
// leave the cluster instead, and the others take over its keys at once.
//
// The output, on stdout, is one line per event (the README describes it);
// QCluster's own logs go to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qcluster/qcluster"
)

// keyPrefix names the keys: customer-0, customer-1, ...
const keyPrefix = "customer-"

// rebalanceEvery is how often a worker recomputes its keys besides on each
// membership event (a safety net: the event can arrive a moment before
// Owner sees the change).
const rebalanceEvery = time.Second

func main() {
	config := flag.String("config", "", "the worker's config file (e.g. examples/sharding/worker_a.json)")
	nkeys := flag.Int("keys", 30, "how many keys to split: customer-0 to customer-<keys-1>")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: sharding -config <config.json> [-keys N]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *config == "" && flag.NArg() == 1 {
		*config = flag.Arg(0) // like the other examples: sharding <config.json>
	} else if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *config == "" || *nkeys < 1 {
		flag.Usage()
		os.Exit(2)
	}
	// Ctrl-C (SIGINT) or SIGTERM cancels ctx: the worker leaves the
	// cluster, so the others take over its keys at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *config, *nkeys, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string, nkeys int, out io.Writer) error {
	cfg, err := qcluster.LoadConfig(path)
	if err != nil {
		return err
	}
	if cfg.Mode != qcluster.ModeMasterless {
		return fmt.Errorf(`%s: mode is %q; this example runs masterless workers: set "mode": %q`, path, cfg.Mode, qcluster.ModeMasterless)
	}
	cluster, err := qcluster.New(cfg)
	if err != nil {
		return err
	}
	// Subscribe before Start so that no event is missed. The channel is
	// closed when the cluster stops (or when run returns).
	evctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := cluster.Events(evctx)
	if err := cluster.Start(ctx); err != nil {
		return err
	}
	defer cluster.Close()
	fmt.Fprintf(out, "%s started on %s, splitting %d keys\n", cfg.Identifier, cluster.Addr(), nkeys)

	w := &worker{self: cfg.Identifier, keys: keyNames(nkeys), out: out}
	w.rebalance(cluster.Owner)
	tick := time.NewTicker(rebalanceEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			leave(cluster, out)
			return nil
		case ev, ok := <-events:
			if !ok {
				if err := cluster.Err(); err != nil {
					return err
				}
				return fmt.Errorf("%s: the cluster stopped", w.self)
			}
			fmt.Fprintf(out, "%s sees %s %s\n", w.self, ev.Member.Identifier, ev.Type)
			w.rebalance(cluster.Owner)
		case <-tick.C:
			w.rebalance(cluster.Owner)
		}
	}
}

// leaveTimeout bounds the wait for the leave to reach another worker.
const leaveTimeout = 3 * time.Second

// leave leaves the cluster gracefully: the other workers see this one
// leave (rather than fail) and take over its keys at once. When the
// leave cannot be confirmed (the other workers are stopping too, say) it
// only warns: the worker is stopped either way, and the others then see it
// fail instead.
func leave(c *qcluster.Cluster, out io.Writer) {
	self := c.Self().Identifier
	fmt.Fprintf(out, "%s leaving the cluster\n", self)
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	if err := c.Leave(ctx); err != nil {
		slog.Warn("could not confirm the leave; the other workers will see this one fail instead", "peer", self, "err", err)
		return
	}
	fmt.Fprintf(out, "%s left the cluster\n", self)
}

// keyNames returns the n keys to split, in order.
func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = keyPrefix + strconv.Itoa(i)
	}
	return keys
}

// worker tracks which worker owns each key, as this worker last saw it.
type worker struct {
	self   string
	keys   []string
	out    io.Writer
	owners map[string]string // key -> owner's identifier; nil before the first rebalance
}

// rebalance asks owner (Cluster.Owner) about every key and prints what
// changed for this worker: a "took over" or "released" line per key that
// moved to or from it, then the keys it owns now. The first call prints
// only the keys it owns.
func (w *worker) rebalance(owner func(key string) (qcluster.Peer, bool)) {
	now := make(map[string]string, len(w.keys))
	for _, k := range w.keys {
		if p, ok := owner(k); ok {
			now[k] = p.Identifier
		}
	}
	first := w.owners == nil
	changed := first
	var mine []string
	for _, k := range w.keys {
		was, is := w.owners[k], now[k]
		switch {
		case is == w.self && was != w.self && !first:
			fmt.Fprintf(w.out, "%s took over %s (was %s)\n", w.self, k, orNobody(was))
			changed = true
		case was == w.self && is != w.self:
			fmt.Fprintf(w.out, "%s released %s (now %s)\n", w.self, k, orNobody(is))
			changed = true
		}
		if is == w.self {
			mine = append(mine, k)
		}
	}
	w.owners = now
	if changed {
		fmt.Fprintf(w.out, "%s owns %d keys:%s\n", w.self, len(mine), prefixEach(" ", mine))
	}
}

// prefixEach joins the strings, each after sep: " a b c" (or "").
func prefixEach(sep string, s []string) string {
	var b strings.Builder
	for _, x := range s {
		b.WriteString(sep)
		b.WriteString(x)
	}
	return b.String()
}

func orNobody(id string) string {
	if id == "" {
		return "nobody"
	}
	return id
}
