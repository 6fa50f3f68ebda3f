// Command compare measures QCluster side by side with etcd and
// hashicorp/raft, in one run, with the same harness for every system, and
// prints the table of issue 13 with QCluster's ratio to each other system.
//
//	go run ./bench/compare [-n 20] [-idle 30s] [-warmup 20s] [-systems qcluster,etcd,etcd-default,hraft] [-quick]
//	go run ./bench/compare -starve [-starve-idle 60s] [-burners 4] [-n 20] [-systems qcluster]
//
// Run it from inside the QCluster module (Linux only: it reads /proc).
//
// The systems, 3 members each, all on 127.0.0.1, all running for the
// whole run:
//
//   - qcluster: `qcluster agent` processes built from ./cmd/qcluster of this
//     tree (or -bin), default timings, started by internal/proccluster as
//     bench/failover does; a member's view is GET /v1/status.
//   - etcd: Debian's etcd-server (3.4) with QCluster-like timings,
//     --heartbeat-interval 30 --election-timeout 150 (ms); a member's view
//     is POST /v3/maintenance/status (answered by the member itself).
//     etcd reports the term of its latest applied entry, which follows an
//     election once the new leader's first entry is applied: the count of
//     rounds with more than one election is a lower bound for etcd.
//   - etcd-default: the same etcd with its defaults (100 ms / 1 s).
//   - hraft: bench/hraft, a small hashicorp/raft node in a module of its
//     own (so this module does not depend on hashicorp/raft), built with
//     `go build` there; HeartbeatTimeout = ElectionTimeout = 150 ms; a
//     member's view is GET /status.
//
// When etcd is not on PATH (and no -etcd is given) and the harness runs as
// root, it installs Debian's etcd-server with apt-get update && apt-get
// install -y etcd-server; otherwise the etcd rows are skipped, and the
// output says why. A system that cannot be built is skipped the same way.
//
// What is measured, per system, the systems taking turns (round i runs a
// SIGKILL round of every system, then a SIGSTOP round of every system, in
// an order rotated by i):
//
//  1. SIGKILL: wait a random instant within 100 ms (so the fault falls at
//     a random point between two heartbeats), then until every member
//     agrees on the leader (polled right before the fault: the leader may
//     have changed since the system's previous round; such changes are
//     counted and reported), SIGKILL the leader and wait until its process
//     is gone. The time runs from just before the signal until both survivors
//     name the same new leader and that one says it leads (QCluster: it
//     holds its lease, IsLeader() is true), each asked every -poll (5 ms).
//     Then restart the killed member from its data and wait until it
//     follows the new leader.
//  2. SIGSTOP: the same with the leader frozen instead of killed; once the
//     survivors agree, SIGCONT, and wait until it follows the new leader.
//
// Then, after -warmup with nobody polling, every process of every system
// is measured over the same -idle window: VmRSS at its end
// (/proc/PID/status; the per-process lines add RssAnon, the process's own
// memory, the part not mapped from files such as the binary, and how much
// of that the process touched in the window, its working set: referenced
// bits cleared through /proc/PID/clear_refs at the start, the Referenced
// lines of its anonymous mappings in /proc/PID/smaps at the end — a file's
// page counts as referenced when any process mapping it runs it, so three
// members of one binary would each count what all three ran), CPU time
// utime+stime over it
// (/proc/PID/stat, in ticks of 10 ms) as % of one core, leader and
// followers apart.
//
// With -starve (issue 13, section 4) the machine is saturated first:
// -burners processes (default two per core, each a shell spinning in an
// empty loop) compete with the clusters for the CPU, started before the
// measurements and stopped after. Then an idle window (-starve-idle, 60 s)
// counts each system's elections (its term's rise from before to after
// the window) and changes of the agreed leader (polled every second), and
// -n SIGKILL rounds are timed as above; the output is one table of those
// figures, and whether QCluster met its goals (no election while idle,
// kill -9 p99 <= 1 s). -systems defaults to qcluster in this mode.
//
// The output: the systems and their settings, the table (kill -9 p50/p99,
// SIGSTOP p50/max, idle RSS range, idle CPU leader / followers), a second
// table of QCluster's figure divided by each other system's (below 1:
// QCluster is faster or cheaper; RSS and follower CPU compare means), and
// the distributions in detail. Percentiles are nearest-rank. The machine's
// load average at the start and the end is printed too: the figures are
// only comparable within one run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/qcluster/qcluster/internal/benchkit"
)

func main() { benchkit.Main("compare", run) }

var (
	errUsage = benchkit.ErrUsage
	// errFailed: a system's measurement stopped early (the table is still
	// printed).
	errFailed = errors.New("a system failed")
)

// faultJitter: a fault falls at a random instant within it after the
// cluster is found stable.
const faultJitter = 100 * time.Millisecond

// options are the command-line flags.
type options struct {
	n               int
	idle, warmup    time.Duration
	systems         string
	quick           bool
	poll, timeout   time.Duration
	bin, etcd       string
	keep, verbose   bool
	requestTimeout  time.Duration
	starve          bool
	starveIdle      time.Duration
	burners         int
	explicitlyGiven map[string]bool
}

func parseFlags(args []string, stderr io.Writer) (options, []string, error) {
	var o options
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 20, "rounds: SIGKILLs and SIGSTOPs of the leader per system")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "window of the idle RSS and CPU measurement (0 skips it)")
	fs.DurationVar(&o.warmup, "warmup", 20*time.Second, "quiet time before the idle window")
	fs.StringVar(&o.systems, "systems", strings.Join(allSystems, ","), "systems to measure, comma-separated: "+strings.Join(allSystems, ", "))
	fs.BoolVar(&o.quick, "quick", false, "a smoke test: -n 2 -idle 1s -warmup 500ms unless given")
	fs.DurationVar(&o.poll, "poll", 5*time.Millisecond, "interval of the status polls that detect agreement")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "bound of every wait for an agreement or a restart")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 250*time.Millisecond, "bound of one status request")
	fs.StringVar(&o.bin, "bin", "", "qcluster binary to run (default: build ./cmd/qcluster)")
	fs.StringVar(&o.etcd, "etcd", "", "etcd binary to run (default: etcd on PATH, installed with apt-get as root when missing)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data, logs)")
	fs.BoolVar(&o.verbose, "v", false, "print every round")
	fs.BoolVar(&o.starve, "starve", false, "under CPU starvation (issue 13, section 4): busy loops saturate the machine; an idle window counts elections, then -n SIGKILL rounds; -systems defaults to qcluster")
	fs.DurationVar(&o.starveIdle, "starve-idle", 60*time.Second, "with -starve: the idle window")
	fs.IntVar(&o.burners, "burners", 0, "with -starve: busy-loop processes (default two per core)")
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	o.explicitlyGiven = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.explicitlyGiven[f.Name] = true })
	if o.quick {
		if !o.explicitlyGiven["n"] {
			o.n = 2
		}
		if !o.explicitlyGiven["idle"] {
			o.idle = time.Second
		}
		if !o.explicitlyGiven["warmup"] {
			o.warmup = 500 * time.Millisecond
		}
	}
	if o.starve && !o.explicitlyGiven["systems"] {
		o.systems = sysQCluster
	}
	var keys []string
	for k := range strings.SplitSeq(o.systems, ",") {
		k = strings.TrimSpace(k)
		switch {
		case k == "":
			continue
		case !slices.Contains(allSystems, k):
			return o, nil, fmt.Errorf("%w: -systems: unknown system %q (known: %s)", errUsage, k, strings.Join(allSystems, ", "))
		case slices.Contains(keys, k):
			return o, nil, fmt.Errorf("%w: -systems: %q given twice", errUsage, k)
		}
		keys = append(keys, k)
	}
	// The table's order, whatever the flag's.
	slices.SortFunc(keys, func(a, b string) int { return slices.Index(allSystems, a) - slices.Index(allSystems, b) })
	switch {
	case fs.NArg() > 0:
		return o, nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case len(keys) == 0:
		return o, nil, fmt.Errorf("%w: -systems names no system", errUsage)
	case o.n < 1:
		return o, nil, fmt.Errorf("%w: -n must be at least 1", errUsage)
	case o.poll <= 0 || o.timeout <= 0 || o.requestTimeout <= 0:
		return o, nil, fmt.Errorf("%w: -poll, -timeout and -request-timeout must be positive", errUsage)
	case o.idle < 0 || o.warmup < 0:
		return o, nil, fmt.Errorf("%w: -idle and -warmup cannot be negative", errUsage)
	case o.starveIdle < 0 || o.burners < 0:
		return o, nil, fmt.Errorf("%w: -starve-idle and -burners cannot be negative", errUsage)
	}
	return o, keys, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, keys, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if runtime.GOOS != "linux" {
		return errors.New("this benchmark runs on Linux only: it reads /proc")
	}
	dir, cleanup, err := benchkit.WorkDir("qcluster-compare-", o.keep, stdout)
	if err != nil {
		return err
	}
	defer cleanup()
	e := &env{dir: dir, client: newHTTPClient(), stderr: stderr, timeout: o.requestTimeout, qcBin: o.bin, etcdBin: o.etcd}
	defer e.client.CloseIdleConnections()

	var systems []*system
	for _, k := range keys {
		systems = append(systems, e.prepare(ctx, k))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rep := report{systems: systems, n: o.n, poll: o.poll, jitter: faultJitter, warmup: o.warmup, idle: o.idle,
		cores: runtime.NumCPU(), loadBefore: benchkit.LoadAvg()}

	h := harness{poll: o.poll, jitter: faultJitter, timeout: o.timeout}
	var active []*system
	fail := func(s *system, what string, err error) {
		s.failed = fmt.Errorf("%s: %w", what, err)
		fmt.Fprintf(stderr, "%s: %s: %v\n", s.label, what, err)
		if s.cl != nil {
			for _, m := range s.cl.Members() {
				fmt.Fprintf(stderr, "--- last output of %s:\n%s\n", m.Name(), m.LogTail(10))
			}
			s.cl.Close() // not to load the machine for the others
		}
		active = slices.DeleteFunc(active, func(a *system) bool { return a == s })
	}
	for _, s := range systems {
		if s.skipped != "" {
			fmt.Fprintf(stderr, "skipping %s: %s\n", s.label, s.skipped)
			continue
		}
		sdir := filepath.Join(dir, s.key)
		if err := os.Mkdir(sdir, 0o700); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "starting %s ...\n", s.label)
		cl, err := s.start(ctx, sdir)
		if err != nil {
			s.failed = fmt.Errorf("start: %w", err)
			fmt.Fprintf(stderr, "%s: start: %v\n", s.label, err)
			continue
		}
		s.cl = cl
		defer cl.Close()
		active = append(active, s)
	}
	for _, s := range slices.Clone(active) {
		a, err := h.waitStable(ctx, s, nil, 0)
		if err != nil {
			fail(s, "first election", err)
			continue
		}
		s.stable = a
	}
	if o.starve {
		return runStarve(ctx, o, h, systems, active, stdout, stderr)
	}

	for i := 1; i <= o.n && len(active) > 0; i++ {
		for _, fault := range []string{"SIGKILL", "SIGSTOP"} {
			order := slices.Clone(active)
			if len(order) > 0 {
				k := i % len(order) // no system always goes first
				order = append(order[k:], order[:k]...)
			}
			for _, s := range order {
				var err error
				if fault == "SIGKILL" {
					err = h.killRound(ctx, s)
				} else {
					err = h.stopRound(ctx, s)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					fail(s, fmt.Sprintf("%s round %d", fault, i), err)
					continue
				}
				if o.verbose {
					l := s.last
					fmt.Fprintf(stdout, "round %3d  %-8s %-36s %-8s -> %-8s term %d -> %d  %s ms\n", i, fault, s.label, l.old, l.leader, l.termBefore, l.termAfter, ms(l.took))
				}
			}
		}
		if !o.verbose && isTerminal(stderr) {
			fmt.Fprintf(stderr, "\rround %d/%d ", i, o.n)
		}
	}
	if !o.verbose && isTerminal(stderr) {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if o.idle > 0 && len(active) > 0 {
		fmt.Fprintf(stderr, "idle: %v warm-up, then a %v window ...\n", o.warmup, o.idle)
		if err := h.measureIdle(ctx, active, o.warmup, o.idle); err != nil {
			return err
		}
	}
	rep.loadAfter = benchkit.LoadAvg()
	if o.verbose {
		fmt.Fprintln(stdout)
	}
	rep.print(stdout)
	for _, s := range systems {
		if s.failed != nil {
			return errFailed
		}
	}
	return nil
}

// isTerminal reports whether w is a terminal (for the progress line).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
