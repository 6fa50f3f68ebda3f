// Command failover measures QCluster's fail-over time with real processes:
// it runs a cluster of `qcluster agent` processes on loopback, kills the
// leader with SIGKILL N times, and reports how long it took each time until
// every survivor named the same new leader; then the idle memory and CPU
// cost of a leader and a follower.
//
//	go run ./bench/failover -n 30 [-tls off|on|both] [-peers 3] [-heartbeat 50ms] [-election-timeout 150ms] [-idle 10s] [-plot out.svg] [-signal kill|term]
//
// With -signal term the leader is stopped with SIGTERM instead of killed:
// a stop is a hand-over (the agent hands leadership to the best follower
// before it exits), so the time measured is the hand-over's.
//
// The agent binary. By default the benchmark builds ./cmd/qcluster with
// `go build` into a temporary directory (run it from inside the module), so
// it measures exactly what users run; -bin uses an existing binary instead.
//
// What is measured, per round:
//
//  1. Wait until the cluster is stable: every peer runs and names the same
//     leader, which holds its lease. Pause a random fraction of a heartbeat,
//     so the kill falls at a random point between two heartbeats.
//  2. Kill the leader with SIGKILL (no goodbye: the others must notice).
//  3. Fail-over time: from the instant just before the kill until EVERY
//     survivor names the same new leader, the new leader included (it
//     counts once it holds its lease, i.e. IsLeader() is true). Each agent
//     logs its leadership changes as JSON with nanosecond timestamps; the
//     time is read from those logs (same machine, same clock), which is
//     exact. Polling every survivor's GET /v1/status (every -poll) detects
//     the agreement and gives a second, slightly later, figure.
//  4. Count the round as needing more than one election when the new
//     leader's term is more than one above the killed leader's.
//  5. Restart the killed peer from its data dir and wait until it follows
//     the new leader with a term at least the killed leader's.
//
// With -plot out.svg it also draws, as an SVG timeline, every peer's view
// of the leadership (leads, follows whom, no leader) around the kill whose
// fail-over took the median time, from the agents' logs.
//
// Then, with the cluster stable and nobody polling, it reads every peer's
// VmRSS (/proc/PID/status) and CPU time (utime+stime in /proc/PID/stat, in
// clock ticks of 1/100 s) over the -idle window. Linux only.
//
// TLS. With -tls on every peer's config has the same "cluster_key" (made
// with pki.NewClusterKey): peers talk mutual TLS 1.3, gossip is encrypted
// and the API is HTTPS only, which the benchmark polls with a client
// certificate derived from the key. With -tls both it runs two clusters,
// one without TLS and one with, and alternates their rounds (off then on,
// then on then off, ...; one kill at a time, the other cluster idle), so
// that both see the same machine; it measures both clusters' idle cost over
// the same window and prints the results side by side.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qcluster/qcluster/internal/benchkit"
	"github.com/qcluster/qcluster/internal/pki"
	"github.com/qcluster/qcluster/internal/proccluster"
)

func main() { benchkit.Main("failover", run) }

var errUsage = benchkit.ErrUsage

// options are the command-line flags.
type options struct {
	n         int
	peers     int
	heartbeat time.Duration
	election  time.Duration
	idle      time.Duration
	poll      time.Duration
	tls       string
	bin       string
	verbose   bool
	keep      bool
	plot      string
	signal    string // "kill" (SIGKILL) or "term" (SIGTERM: a stop, which hands over)
}

// round is one kill and what followed.
type round struct {
	killed, leader string
	termBefore     uint64
	termAfter      uint64
	logTime        time.Duration // from the agents' logs; 0 if unavailable
	pollTime       time.Duration
	view           *killView // with -plot: the peers' views around the kill
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 30, "number of leader kills (per cluster with -tls both)")
	fs.IntVar(&o.peers, "peers", 3, "number of peers (at least 3)")
	fs.DurationVar(&o.heartbeat, "heartbeat", 50*time.Millisecond, "heartbeat_interval of every peer")
	fs.DurationVar(&o.election, "election-timeout", 150*time.Millisecond, "election_timeout of every peer (randomized up to 2x)")
	fs.DurationVar(&o.idle, "idle", 10*time.Second, "window for the idle RSS and CPU measurement (0 skips it)")
	fs.DurationVar(&o.poll, "poll", 2*time.Millisecond, "interval of the /v1/status polls that detect agreement")
	fs.StringVar(&o.tls, "tls", "off", "off, on (every peer has a shared cluster_key: mutual TLS, HTTPS API, encrypted gossip) or both (two clusters, rounds interleaved)")
	fs.StringVar(&o.bin, "bin", "", "qcluster binary to run (default: build ./cmd/qcluster)")
	fs.BoolVar(&o.verbose, "v", false, "print every round")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs, data)")
	fs.StringVar(&o.signal, "signal", "kill", "how the leader goes: kill (SIGKILL, a crash) or term (SIGTERM, a stop: the leader hands leadership over first)")
	fs.StringVar(&o.plot, "plot", "", "write an SVG timeline of every peer's view around the median kill to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var modes []*mode
	switch o.tls {
	case "off":
		modes = []*mode{{name: "TLS off"}}
	case "on":
		modes = []*mode{{name: "TLS on", key: pki.NewClusterKey()}}
	case "both":
		modes = []*mode{{name: "TLS off"}, {name: "TLS on", key: pki.NewClusterKey()}}
	default:
		return fmt.Errorf("%w: -tls %q: use off, on or both", errUsage, o.tls)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case o.n < 1:
		return fmt.Errorf("%w: -n must be at least 1", errUsage)
	case o.peers < 3:
		return fmt.Errorf("%w: -peers must be at least 3 (the survivors of a kill need a majority)", errUsage)
	case o.signal != "kill" && o.signal != "term":
		return fmt.Errorf("%w: -signal %q: use kill or term", errUsage, o.signal)
	}

	dir, cleanup, err := benchkit.WorkDir("qcluster-failover-", o.keep, stdout)
	if err != nil {
		return err
	}
	defer cleanup()

	bin, how := o.bin, "given with -bin"
	if bin == "" {
		bin = filepath.Join(dir, "qcluster")
		fmt.Fprintln(stderr, "building ./cmd/qcluster ...")
		if err := benchkit.BuildAgent(ctx, bin); err != nil {
			return err
		}
		how = "built from ./cmd/qcluster"
	}

	for _, m := range modes {
		mdir := filepath.Join(dir, m.dirName())
		if err := os.Mkdir(mdir, 0o700); err != nil {
			return err
		}
		m.cl, err = proccluster.Start(ctx, proccluster.Options{
			Command:         []string{bin, "agent"},
			Peers:           o.peers,
			Heartbeat:       o.heartbeat,
			ElectionTimeout: o.election,
			Dir:             mdir,
			ClusterKey:      m.key,
		})
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		defer m.cl.Close()
	}

	host := modes[0].cl.Peers[0].Host
	fmt.Fprintf(stdout, "QCluster fail-over: %d agent processes on %s (%s)\n", o.peers, host, how)
	fmt.Fprintf(stdout, "heartbeat %v, election timeout %v (randomized %v-%v), %d kills with %s", o.heartbeat, o.election, o.election, 2*o.election, o.n, o.sigName())
	if len(modes) > 1 {
		fmt.Fprintf(stdout, " per cluster")
	}
	fmt.Fprintln(stdout)
	switch o.tls {
	case "on":
		fmt.Fprintln(stdout, "TLS on: every peer has the same cluster_key (mutual TLS 1.3 between peers, HTTPS API polled with a client certificate, encrypted gossip)")
	case "both":
		fmt.Fprintf(stdout, "TLS off and on: two clusters of %d side by side, the second with a shared cluster_key (mutual TLS 1.3 between peers,\n", o.peers)
		fmt.Fprintln(stdout, "HTTPS API polled with a client certificate, encrypted gossip); their rounds alternate (off, on, on, off, ...), one kill at a time")
	}
	fmt.Fprintf(stdout, "fail-over = %s of the leader -> EVERY survivor names the same new leader (which holds its lease)\n\n", o.sigName())

	for _, m := range modes {
		if m.stable, err = waitStable(ctx, m.cl, nil, 0); err != nil {
			return failWithLogs(stderr, m.cl, m.name+": first election", err)
		}
	}
	if o.verbose {
		fmt.Fprintf(stdout, "%5s  %-8s %-10s %-10s %-8s %9s %9s\n", "round", "TLS", "killed", "new", "term", "log ms", "poll ms")
	}
	for i := 1; i <= o.n; i++ {
		order := slices.Clone(modes)
		if i%2 == 0 {
			slices.Reverse(order) // neither configuration always goes first
		}
		for _, m := range order {
			r, next, err := killRound(ctx, m.cl, m.stable, o)
			if err != nil {
				return failWithLogs(stderr, m.cl, fmt.Sprintf("%s: round %d", m.name, i), err)
			}
			m.stable = next
			if r.view != nil {
				r.view.mode, r.view.round = m.name, i
			}
			m.rounds = append(m.rounds, r)
			if o.verbose {
				fmt.Fprintf(stdout, "%5d  %-8s %-10s %-10s %-8s %9s %9.1f\n", i, strings.TrimPrefix(m.name, "TLS "), r.killed, r.leader,
					fmt.Sprintf("%d->%d", r.termBefore, r.termAfter), fmtMS(r.logTime), msf(r.pollTime))
			}
		}
		if !o.verbose && isTerminal(stderr) {
			fmt.Fprintf(stderr, "\rround %d/%d ", i, o.n)
		}
	}
	switch {
	case o.verbose:
		fmt.Fprintln(stdout)
	case isTerminal(stderr):
		fmt.Fprint(stderr, "\r\033[K")
	}
	printSummary(stdout, modes, o)
	if o.plot != "" {
		if err := savePlot(stdout, o.plot, modes); err != nil {
			return err
		}
	}

	if o.idle > 0 {
		if err := measureIdle(ctx, stdout, modes, o); err != nil {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	for _, m := range modes {
		if err := m.cl.Stop(sctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
		}
	}
	return errors.Join(errs...)
}

// mode is one configuration measured: a cluster and its results.
type mode struct {
	name   string // "TLS off" or "TLS on"
	key    string // the peers' cluster_key; "" for plain TCP and HTTP
	cl     *proccluster.Cluster
	stable proccluster.Agreement
	rounds []round
}

// dirName is the mode's subdirectory of the temporary directory.
func (m *mode) dirName() string {
	if m.key != "" {
		return "tls"
	}
	return "plain"
}

// waitStable waits until every peer runs and all name the same leader,
// and, when rejoined is not nil, that peer follows it with a term of at
// least minTerm.
func waitStable(ctx context.Context, cl *proccluster.Cluster, rejoined *proccluster.Peer, minTerm uint64) (proccluster.Agreement, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return cl.WaitAgreed(ctx, cl.Peers, 5*time.Millisecond, func(a proccluster.Agreement) bool {
		if rejoined == nil {
			return true
		}
		st, ok := a.Status(rejoined)
		return ok && a.Leader != rejoined && st.Role == "follower" && st.Term >= minTerm
	})
}

// killRound kills the stable leader, times the fail-over, restarts the
// killed peer and waits for the cluster to be stable again.
func killRound(ctx context.Context, cl *proccluster.Cluster, stable proccluster.Agreement, o options) (round, proccluster.Agreement, error) {
	old := stable.Leader
	r := round{killed: old.ID, termBefore: stable.Term}
	survivors := cl.Except(old)

	// Kill at a random point between two heartbeats.
	select {
	case <-time.After(rand.N(o.heartbeat)):
	case <-ctx.Done():
		return r, stable, ctx.Err()
	}
	killedAt, err := stopLeader(old, o.signal)
	if err != nil {
		return r, stable, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	after, err := cl.WaitAgreed(wctx, survivors, o.poll, func(a proccluster.Agreement) bool { return a.Leader != old })
	cancel()
	if err != nil {
		return r, stable, fmt.Errorf("no new leader after killing %s: %w", old.ID, err)
	}
	r.leader, r.termAfter, r.pollTime = after.Leader.ID, after.Term, after.At.Sub(killedAt)
	mctx, cancel := context.WithTimeout(ctx, time.Second)
	fo, err := proccluster.MeasureFailover(mctx, survivors, after.Leader.ID, killedAt)
	cancel()
	if err == nil {
		r.logTime = fo.Total
		if o.plot != "" {
			v, err := captureView(cl.Peers, old, after.Leader.ID, killedAt, fo.Total, o.election)
			if err != nil {
				return r, stable, err
			}
			r.view = &v
		}
	}

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if o.signal == "term" {
		if _, err := old.Wait(rctx); err != nil {
			cancel()
			return r, stable, fmt.Errorf("%s did not stop on SIGTERM: %w", old.ID, err)
		}
	}
	err = old.Restart(rctx)
	cancel()
	if err != nil {
		return r, stable, err
	}
	next, err := waitStable(ctx, cl, old, r.termBefore)
	if err != nil {
		return r, stable, fmt.Errorf("%s did not rejoin: %w", old.ID, err)
	}
	return r, next, nil
}

// stopLeader kills the leader (SIGKILL) or stops it (SIGTERM) and returns
// the instant just before the signal; with SIGTERM it returns at once (the
// agent hands leadership over, then exits; killRound's restart waits for
// the exit).
func stopLeader(p *proccluster.Peer, signal string) (time.Time, error) {
	if signal != "term" {
		return p.Kill()
	}
	at := time.Now()
	return at, p.Signal(syscall.SIGTERM)
}

// sigName names the signal of -signal.
func (o options) sigName() string {
	if o.signal == "term" {
		return "SIGTERM"
	}
	return "SIGKILL"
}

// printSummary prints the fail-over distributions, a row per mode.
func printSummary(w io.Writer, modes []*mode, o options) {
	const rowf = "%-42s %4v %7v %7v %7v %7v %7v\n"
	fmt.Fprintf(w, rowf, "fail-over (ms)", "n", "min", "p50", "p90", "p99", "max")
	row := func(name string, ds []time.Duration) {
		if len(ds) == 0 {
			fmt.Fprintf(w, rowf, name, 0, "-", "-", "-", "-", "-")
			return
		}
		slices.Sort(ds)
		f := func(d time.Duration) string { return strconv.FormatFloat(msf(d), 'f', 1, 64) }
		fmt.Fprintf(w, rowf, name, len(ds), f(ds[0]), f(benchkit.Percentile(ds, 50)), f(benchkit.Percentile(ds, 90)), f(benchkit.Percentile(ds, 99)), f(ds[len(ds)-1]))
	}
	label := func(what string, m *mode) string {
		if len(modes) == 1 {
			return what
		}
		return what + ", " + m.name
	}
	multi := make([]int, len(modes))
	polls := make([][]time.Duration, len(modes))
	for i, m := range modes {
		var logs []time.Duration
		for _, r := range m.rounds {
			if r.logTime > 0 {
				logs = append(logs, r.logTime)
			}
			polls[i] = append(polls[i], r.pollTime)
			if r.termAfter > r.termBefore+1 {
				multi[i]++
			}
		}
		row(label("agents' logs (exact)", m), logs)
	}
	for i, m := range modes {
		row(label(fmt.Sprintf("polling /v1/status every %v", o.poll), m), polls[i])
	}
	fmt.Fprint(w, "rounds needing more than one election (term jumped by > 1):")
	for i, m := range modes {
		if i > 0 {
			fmt.Fprint(w, ",")
		}
		if len(modes) > 1 {
			fmt.Fprintf(w, " %s", m.name)
		}
		fmt.Fprintf(w, " %d of %d", multi[i], len(m.rounds))
	}
	fmt.Fprintln(w)
	if o.n < 100 {
		fmt.Fprintf(w, "(percentiles are nearest-rank: with %d rounds p99 is the maximum)\n", o.n)
	}
	fmt.Fprintln(w)
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(msf(d), 'f', 1, 64)
}

// idleProc is one agent measured while idle.
type idleProc struct {
	role   string // leader or follower
	p      *proccluster.Peer
	pid    int
	before int64 // CPU ticks at the start of the window
	rss    int64 // kB, at the end
	cpu    float64
}

// measureIdle reports the RSS and CPU use of every peer of every mode over
// the same idle window, with nobody polling them.
func measureIdle(ctx context.Context, w io.Writer, modes []*mode, o options) error {
	leaders := make([]*proccluster.Peer, len(modes))
	procs := make([][]*idleProc, len(modes))
	for i, m := range modes {
		a, err := waitStable(ctx, m.cl, nil, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		leaders[i] = a.Leader
		procs[i] = append(procs[i], &idleProc{role: "leader", p: a.Leader})
		for _, p := range m.cl.Except(a.Leader) {
			procs[i] = append(procs[i], &idleProc{role: "follower", p: p})
		}
	}
	var err error
	for _, ps := range procs {
		for _, pr := range ps {
			pr.pid = pr.p.PID()
			if pr.before, err = benchkit.CPUTicks(pr.pid); err != nil {
				return err
			}
		}
	}
	start := time.Now()
	select {
	case <-time.After(o.idle):
	case <-ctx.Done():
		return ctx.Err()
	}
	elapsed := time.Since(start)
	for _, ps := range procs {
		for _, pr := range ps {
			after, err := benchkit.CPUTicks(pr.pid)
			if err != nil {
				return err
			}
			if pr.rss, err = benchkit.RSSKB(pr.pid); err != nil {
				return err
			}
			pr.cpu = float64(after-pr.before) / benchkit.ClockTicksPerSecond / elapsed.Seconds() * 100
		}
	}

	printIdle(w, modes, procs, o.idle)
	// The leaders should not have changed while idle.
	var errs []error
	for i, m := range modes {
		end, err := waitStable(ctx, m.cl, nil, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
			continue
		}
		if end.Leader != leaders[i] {
			fmt.Fprintf(w, "note: %s: the leader changed during the idle window (%s -> %s)\n", m.name, leaders[i].ID, end.Leader.ID)
		}
	}
	return errors.Join(errs...)
}

// printIdle prints the idle measurements, a column group per mode, side
// by side.
func printIdle(w io.Writer, modes []*mode, procs [][]*idleProc, idle time.Duration) {
	const groupf = "   %-10s %7v %8v %7v"
	var b strings.Builder
	line := func() {
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		b.Reset()
	}
	fmt.Fprintf(&b, "%-10s", fmt.Sprintf("idle %v", idle))
	for _, m := range modes {
		fmt.Fprintf(&b, "   %-35s", "--- "+m.name+" ---")
	}
	line()
	fmt.Fprintf(&b, "%-10s", "peer")
	for range modes {
		fmt.Fprintf(&b, groupf, "id", "pid", "RSS MB", "CPU %")
	}
	line()
	for j := range procs[0] {
		fmt.Fprintf(&b, "%-10s", procs[0][j].role)
		for i := range modes {
			pr := procs[i][j]
			fmt.Fprintf(&b, groupf, pr.p.ID, pr.pid, fmt.Sprintf("%.1f", float64(pr.rss)/1024), fmt.Sprintf("%.2f", pr.cpu))
		}
		line()
	}
	fmt.Fprintf(&b, "%-10s", "all")
	for i := range modes {
		var rss int64
		var cpu float64
		for _, pr := range procs[i] {
			rss += pr.rss
			cpu += pr.cpu
		}
		fmt.Fprintf(&b, groupf, "", "", fmt.Sprintf("%.1f", float64(rss)/1024), fmt.Sprintf("%.2f", cpu))
	}
	line()
	fmt.Fprintf(w, "(RSS: VmRSS at the end of the window; CPU: utime+stime from /proc/PID/stat over the window, %% of one core, 10 ms resolution)\n")
}

// failWithLogs prints the agents' last log lines and wraps err.
func failWithLogs(w io.Writer, cl *proccluster.Cluster, what string, err error) error {
	for _, p := range cl.Peers {
		fmt.Fprintf(w, "--- last log lines of %s:\n%s\n", p.ID, p.LogTail(10))
	}
	return fmt.Errorf("%s: %w", what, err)
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
