package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/proccluster"
)

const demoUsage = `Usage: qcluster demo [--peers 3] [--heartbeat 50ms] [--election-timeout 150ms] [--keep] [-v]

Starts a local QCluster of separate 'qcluster agent' processes on free
loopback ports, shows who leads, kills the leader with SIGKILL, shows the new
leader and the measured fail-over time, restarts the killed peer from its
data dir, shows it rejoin as a follower, then stops everything. Needs no
arguments and no files: configs, data and logs go to a temporary directory,
removed at the end unless --keep is given. Every agent serves a dashboard at
http://<its address>/ui/; with --keep the cluster stays up after the demo,
so you can watch it there (and kill agents yourself), until Ctrl-C.

Examples:

	qcluster demo
	qcluster demo --peers 5 --keep

Flags:
`

// DemoCommand is "qcluster demo": a guided fail-over on a local cluster of
// agent processes.
type DemoCommand struct {
	// Stdout receives the demo's narration.
	Stdout io.Writer
	// Stderr receives diagnostics, and the agents' logs with -v.
	Stderr io.Writer

	start time.Time
	step  int
}

// demoWait bounds each wait of the demo (start-up, election, fail-over,
// rejoin, stop).
const demoWait = 10 * time.Second

// Run parses args and runs the demo. It returns nil when every step
// succeeded, a *UsageError for bad flags, and another error when a step
// failed or ctx ended (SIGINT). No agent process outlives Run.
func (c *DemoCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	peers := fs.Int("peers", 3, "number of peers, 3 to 26 (fail-over needs a majority of survivors)")
	heartbeat := fs.Duration("heartbeat", qcluster.DefaultHeartbeatInterval, "leader heartbeat interval")
	election := fs.Duration("election-timeout", qcluster.DefaultElectionTimeout, "election timeout (each election waits a random time between it and twice it)")
	keep := fs.Bool("keep", false, "keep the cluster running after the demo until Ctrl-C (watch it on the dashboard), and keep the temporary directory with the configs, data and logs")
	verbose := fs.Bool("v", false, "also print the agents' logs (to stderr)")
	if err := parseFlags(fs, args, c.Stdout, demoUsage); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *peers < 3 || *peers > 26 {
		return usageErrorf("demo", "demo: --peers %d: give 3 to 26 (with fewer than 3, killing the leader leaves no majority to elect a new one)", *peers)
	}
	if err := checkTimings(*heartbeat, *election); err != nil {
		return &UsageError{Err: fmt.Errorf("demo: --heartbeat/--election-timeout: %w", err), Hint: helpHint("demo")}
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: find this program to run its agents: %w", err)
	}
	dir, err := os.MkdirTemp("", "qcluster-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if *keep {
			fmt.Fprintf(c.Stdout, "Kept %s (configs: server_*.json, logs: server_*.log, data: server_*.data).\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	o := c.Stdout
	fmt.Fprintf(o, "QCluster demo: %d peers, each a separate 'qcluster agent' process on 127.0.0.1.\n", *peers)
	fmt.Fprintf(o, "Timings: heartbeat %v; election timeout %v (each election waits a random %v-%v).\n",
		*heartbeat, *election, *election, 2**election)
	fmt.Fprintf(o, "Files (configs, data, logs): %s (%s).\n\n", dir, map[bool]string{true: "kept at the end", false: "removed at the end; --keep keeps them"}[*keep])

	c.start = time.Now()
	opts := proccluster.Options{
		Command:         []string{exe, "agent"},
		Peers:           *peers,
		Heartbeat:       *heartbeat,
		ElectionTimeout: *election,
		Dir:             dir,
	}
	if *verbose {
		opts.Output = c.Stderr
	}
	c.stepf("Starting %d agent processes...", *peers)
	startCtx, cancel := context.WithTimeout(ctx, demoWait)
	cl, err := proccluster.Start(startCtx, opts)
	cancel()
	if err != nil {
		return c.fail(ctx, nil, "start the agents", err)
	}
	defer cl.Close() // whatever happens, no agent outlives the demo
	for _, p := range cl.Peers {
		c.detailf("%s  pid %-7d listens on %s  (try: curl http://%s/v1/status)", p.ID, p.PID(), p.Addr(), p.Addr())
	}
	c.detailf("Dashboard: http://%s/ui/ (every agent serves one; open it to watch the fail-over live)", cl.Peers[len(cl.Peers)-1].Addr())

	// 2. First election.
	c.stepf("All agents are up. Waiting for them to elect a leader...")
	first, err := c.waitAgreed(ctx, cl, cl.Peers, nil)
	if err != nil {
		return c.fail(ctx, cl, "elect a first leader", err)
	}
	leader, term0 := first.Leader, first.Term
	c.stepf("%s was elected leader (term %d), and every peer agrees:", leader.ID, term0)
	c.table(cl, first, nil)

	// 3. Kill the leader.
	survivors := cl.Except(leader)
	c.stepf("%s was the leader (term %d). Killing it with SIGKILL (no goodbye to the others)...", leader.ID, term0)
	killedAt, err := leader.Kill()
	if err != nil {
		return c.fail(ctx, cl, "kill the leader", err)
	}
	after, err := c.waitAgreed(ctx, cl, survivors, func(a proccluster.Agreement) bool { return a.Leader != leader })
	if err != nil {
		return c.fail(ctx, cl, "elect a new leader after the kill", err)
	}
	polled := after.At.Sub(killedAt)
	newLeader := after.Leader
	c.stepf("%s is the new leader (term %d), and every survivor agrees.", newLeader.ID, after.Term)
	mctx, cancel := context.WithTimeout(ctx, time.Second)
	fo, ferr := proccluster.MeasureFailover(mctx, survivors, newLeader.ID, killedAt)
	cancel()
	if ferr == nil {
		c.detailf("Fail-over took %s: from the kill until the last survivor named %s as its leader", ms(fo.Total), newLeader.ID)
		c.detailf("(times from the agents' own logs; polling /v1/status every 2ms saw it after %s):", ms(polled))
		slices.SortFunc(fo.Peers, func(a, b proccluster.PeerFailover) int { return cmp.Compare(a.After, b.After) })
		for _, pf := range fo.Peers {
			what := "follows " + newLeader.ID
			if pf.Peer == newLeader {
				what = "leads (holds the leader lease)"
			}
			c.detailf("  %-10s %-31s after %s", pf.Peer.ID, what, ms(pf.After))
		}
	} else {
		fmt.Fprintf(c.Stderr, "demo: could not time the fail-over from the agents' logs: %v\n", ferr)
		c.detailf("Fail-over took at most %s: from the kill until polling /v1/status every 2ms saw every survivor name %s.", ms(polled), newLeader.ID)
	}
	// How it went: on proof that the process was gone (what a kill -9 on
	// a live host gives), or after an election timeout.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	proofs, perr := goneProofsTaken(pctx, survivors)
	cancel()
	if perr != nil {
		fmt.Fprintf(c.Stderr, "demo: could not read every survivor's metrics: %v\n", perr)
	}
	if proofs > 0 {
		c.detailf("How: the kernel closed the killed process's connections, so the survivors' raft streams from %s", leader.ID)
		c.detailf("ended without a goodbye, and its port refused a new connection: proof that its process is gone")
		c.detailf("(%d of %d survivors took it; see %s). No election timeout to wait out:", proofs, len(survivors), goneReportsMetric)
		c.detailf("the first survivor by rank asked for votes at once, and the others, with the same proof, granted them.")
	} else {
		c.detailf("How: the survivors stopped hearing %s's heartbeats; after a randomized election timeout", leader.ID)
		c.detailf("(%v-%v) without one, the first to time out asked the others for their votes and won a majority.", *election, 2**election)
	}
	if after.Term > term0+1 {
		c.detailf("This time it took %d elections (term %d -> %d): the first vote(s) did not reach a majority.", after.Term-term0, term0, after.Term)
	}
	c.table(cl, after, leader)

	// 4. Restart the old leader.
	c.stepf("Restarting %s from its data dir (it remembers its term and vote)...", leader.ID)
	rctx, cancel := context.WithTimeout(ctx, demoWait)
	err = leader.Restart(rctx)
	cancel()
	if err != nil {
		return c.fail(ctx, cl, "restart "+leader.ID, err)
	}
	back, err := c.waitAgreed(ctx, cl, cl.Peers, func(a proccluster.Agreement) bool {
		st, ok := a.Status(leader)
		return ok && a.Leader != leader && st.Role == "follower" && st.Term >= term0
	})
	if err != nil {
		return c.fail(ctx, cl, "let "+leader.ID+" rejoin", err)
	}
	st, _ := back.Status(leader)
	c.stepf("%s (now pid %d) rejoined as a follower of %s, at term %d.", leader.ID, leader.PID(), back.Leader.ID, st.Term)
	c.detailf("It was at term %d when it was killed: its data dir kept the term and its vote, and terms never go back.", term0)
	c.table(cl, back, nil)

	if *keep {
		// 5. Stay up until the user is done watching.
		c.stepf("The cluster stays up: watch it at http://%s/ui/ (any agent's /ui/ works).", cl.Peers[len(cl.Peers)-1].Addr())
		c.detailf("Kill an agent to see a fail-over (pids above; 'kill -9 <pid>'), or try 'qcluster status --addr %s'.", cl.Peers[0].Addr())
		c.detailf("Press Ctrl-C to stop the agents.")
		<-ctx.Done()
		fmt.Fprintln(o)
		// Ctrl-C is how a kept demo ends: stop the agents as usual.
		ctx = context.WithoutCancel(ctx)
	}

	// 5. Stop.
	c.stepf("Stopping all agents with SIGTERM...")
	sctx, cancel := context.WithTimeout(ctx, demoWait)
	err = cl.Stop(sctx)
	cancel()
	if err != nil {
		return c.fail(ctx, cl, "stop the agents", err)
	}
	c.detailf("All %d agents exited cleanly (exit code 0).", len(cl.Peers))
	fmt.Fprintf(o, "\nDone in %.1fs: %s led, was killed, %s took over in %s, and %s came back as a follower.\n",
		time.Since(c.start).Seconds(), leader.ID, newLeader.ID, ms(pick(ferr == nil, fo.Total, polled)), leader.ID)
	return nil
}

// checkTimings applies QCluster's own validation to the demo's timings.
func checkTimings(heartbeat, election time.Duration) error {
	cfg := qcluster.DefaultConfig()
	cfg.Identifier, cfg.ListenPort, cfg.DataDir = "demo", 7001, os.TempDir()
	cfg.HeartbeatInterval, cfg.ElectionTimeout = qcluster.Duration(heartbeat), qcluster.Duration(election)
	if heartbeat <= 0 || election <= 0 {
		return fmt.Errorf("durations must be positive")
	}
	err := cfg.Validate()
	// Report the problems themselves, without the "invalid config" preamble.
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) {
		var msgs []string
		for _, e := range multi.Unwrap() {
			if !errors.Is(e, qcluster.ErrInvalidConfig) {
				msgs = append(msgs, e.Error())
			}
		}
		if len(msgs) > 0 {
			return errors.New(strings.Join(msgs, "; "))
		}
	}
	return err
}

// waitAgreed waits, with the demo's deadline, for peers to agree on a
// leader that accept accepts. It polls every 2ms.
func (c *DemoCommand) waitAgreed(ctx context.Context, cl *proccluster.Cluster, peers []*proccluster.Peer, accept func(proccluster.Agreement) bool) (proccluster.Agreement, error) {
	ctx, cancel := context.WithTimeout(ctx, demoWait)
	defer cancel()
	return cl.WaitAgreed(ctx, peers, 2*time.Millisecond, accept)
}

// fail reports a failed step: the agents' last log lines help to see why.
// The caller's deferred Close kills the agents.
func (c *DemoCommand) fail(ctx context.Context, cl *proccluster.Cluster, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("demo: interrupted (%v); stopped every agent", context.Cause(ctx))
	}
	if cl != nil {
		for _, p := range cl.Peers {
			fmt.Fprintf(c.Stderr, "--- last log lines of %s (%s):\n%s\n", p.ID, p.LogPath, p.LogTail(10))
		}
	}
	return fmt.Errorf("demo: could not %s: %w", what, err)
}

// stepf prints a numbered step with the time since the start.
func (c *DemoCommand) stepf(format string, args ...any) {
	c.step++
	fmt.Fprintf(c.Stdout, "[%6.3fs] %d. %s\n", time.Since(c.start).Seconds(), c.step, fmt.Sprintf(format, args...))
}

// detailf prints an indented line under the current step.
func (c *DemoCommand) detailf(format string, args ...any) {
	fmt.Fprintf(c.Stdout, "%14s%s\n", "", fmt.Sprintf(format, args...))
}

// table prints every peer's status from a, with killed marking a peer that
// is down.
func (c *DemoCommand) table(cl *proccluster.Cluster, a proccluster.Agreement, killed *proccluster.Peer) {
	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%14sPEER\tPORT\tROLE\tTERM\tLEADER\n", "")
	for _, p := range cl.Peers {
		st, ok := a.Status(p)
		switch {
		case p == killed:
			fmt.Fprintf(tw, "%14s%s\t%d\t(killed)\t-\t-\n", "", p.ID, p.Port)
		case !ok:
			fmt.Fprintf(tw, "%14s%s\t%d\t?\t-\t-\n", "", p.ID, p.Port)
		default:
			lead := "none"
			if st.Leader != nil {
				lead = st.Leader.Identifier
			}
			fmt.Fprintf(tw, "%14s%s\t%d\t%s\t%d\t%s\n", "", p.ID, p.Port, st.Role, st.Term, lead)
		}
	}
	tw.Flush()
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}
