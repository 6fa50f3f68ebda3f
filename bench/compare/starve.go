package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/qcluster/qcluster/internal/benchkit"
)

// The -starve mode (issue 13, section 4): the same clusters on a machine
// saturated by busy-loop child processes (-burners, default two per core) that compete with
// the clusters' processes for the CPU (started before the measurements,
// stopped after them). It measures an idle window, counting elections
// (the raft term's rise) and leader changes (the leader the members agree
// on, polled every second), then -n SIGKILL rounds of the leader, timed as
// in the normal mode. Goals for QCluster: no election in the idle window,
// kill -9 fail-over p99 <= 1 s.

// starveGoalP99 is the goal for the kill -9 fail-over p99 under starvation.
const starveGoalP99 = time.Second

// burners are the running burner processes.
type burners []*exec.Cmd

// startBurners starts n burners: shells spinning in an empty loop, each a
// process of its own that the scheduler weighs like any other, killed if
// this process dies (Pdeathsig) and by stop.
func startBurners(n int) (burners, error) {
	var bs burners
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			bs.stop()
			return nil, fmt.Errorf("start a burner: %w", err)
		}
		bs = append(bs, cmd)
	}
	return bs, nil
}

// stop kills every burner and waits for it.
func (bs burners) stop() {
	for _, c := range bs {
		_ = c.Process.Kill()
	}
	for _, c := range bs {
		_ = c.Wait()
	}
}

// starveResult is one system's figures under starvation.
type starveResult struct {
	termBefore, termAfter uint64
	changes               int // changes of the agreed leader seen in the idle window
	pollFailures          int // idle polls without an agreement (timeouts, elections)
	idleErr               error
	// started: QCluster only, per member, how many elections it started
	// in the window (qcluster_elections_started_total), with the leader at
	// the start marked; "" when not scraped.
	started string
	// stalls: QCluster only, per member, like started, from
	// qcluster_stalls_total: late wakes of its election core.
	stalls string
}

// lateness measures how late a 10 ms sleep of this process wakes, until
// stop is closed: the scheduling delay every process on the machine sees.
func lateness(stop <-chan struct{}) []time.Duration {
	var out []time.Duration
	for {
		select {
		case <-stop:
			return slices.Sorted(slices.Values(out))
		default:
		}
		want := time.Now().Add(10 * time.Millisecond)
		time.Sleep(10 * time.Millisecond)
		out = append(out, time.Since(want))
	}
}

// qcMetrics are the counters the idle window reads from each QCluster
// member, before and after: elections started, and stalls (wakes of the
// election core that came late: the process could not run).
var qcMetrics = [...]string{"qcluster_elections_started_total", "qcluster_stalls_total"}

// qcMetric reads the unlabelled metric name from a QCluster member's
// /metrics.
func qcMetric(ctx context.Context, m member, name string) (float64, error) {
	q, ok := m.(qcMember)
	if !ok {
		return 0, errors.New("not a QCluster member")
	}
	return q.p.Metric(ctx, name)
}

// runStarve runs the -starve measurements on the started systems (active)
// and prints their report.
func runStarve(ctx context.Context, o options, h harness, systems, active []*system, stdout, stderr io.Writer) error {
	cores := runtime.NumCPU()
	n := o.burners
	if n == 0 {
		n = 2 * cores
	}
	loadBefore := benchkit.LoadAvg()
	fmt.Fprintf(stderr, "starting %d burners (busy loops) ...\n", n)
	bs, err := startBurners(n)
	if err != nil {
		return err
	}
	defer bs.stop()

	results := map[*system]*starveResult{}
	for _, s := range active {
		results[s] = &starveResult{}
	}
	fmt.Fprintf(stderr, "idle under starvation: %v ...\n", o.starveIdle)
	stopLate := make(chan struct{})
	lateDone := make(chan []time.Duration, 1)
	go func() { lateDone <- lateness(stopLate) }()
	err = h.starveIdle(ctx, active, results, o.starveIdle)
	close(stopLate)
	late := <-lateDone
	if err != nil {
		return err
	}
	loadIdle := benchkit.LoadAvg()

	for i := 1; i <= o.n && len(active) > 0; i++ {
		order := slices.Clone(active)
		k := i % len(order)
		order = append(order[k:], order[:k]...)
		for _, s := range order {
			err := h.killRound(ctx, s)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				s.failed = fmt.Errorf("SIGKILL round %d: %w", i, err)
				fmt.Fprintf(stderr, "%s: %v\n", s.label, s.failed)
				active = slices.DeleteFunc(active, func(a *system) bool { return a == s })
				continue
			}
			if o.verbose {
				l := s.last
				fmt.Fprintf(stdout, "round %3d  SIGKILL  %-36s %-8s -> %-8s term %d -> %d  %s ms\n", i, s.label, l.old, l.leader, l.termBefore, l.termAfter, ms(l.took))
			}
		}
	}
	loadEnd := benchkit.LoadAvg()
	bs.stop()

	fmt.Fprintf(stdout, "Under CPU starvation: 3 members per system on 127.0.0.1; %d busy-loop processes (%d per core, %d cores) compete with them, started before the measurements and stopped after.\n",
		n, n/max(cores, 1), cores)
	fmt.Fprintf(stdout, "Load average (1 min): %s before the burners, %s after the idle window, %s after the kill rounds.\n", loadBefore, loadIdle, loadEnd)
	fmt.Fprintf(stdout, "Idle: %v, the agreed leader polled every second; an election raises the term. Then %d x SIGKILL of the leader, timed as in the normal mode (poll %v).\n",
		o.starveIdle, o.n, h.poll)
	fmt.Fprintf(stdout, "Goals (QCluster): no election while idle; kill -9 p99 <= %v.\n", starveGoalP99)
	if len(late) > 0 {
		fmt.Fprintf(stdout, "Timer lateness in the idle window (a 10 ms sleep of the harness, %d samples): p50 %s, p99 %s, p99.9 %s, max %s ms.\n",
			len(late), ms(p(late, 50)), ms(p(late, 99)), ms(p(late, 99.9)), ms(last(late)))
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "| system | idle: elections (term) | idle: leader changes | kill -9 p50 / p99 / max ms | rounds with > 1 election |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|")
	for _, s := range systems {
		r := results[s]
		if r == nil {
			continue
		}
		idle := fmt.Sprintf("%d (%d -> %d)", r.termAfter-r.termBefore, r.termBefore, r.termAfter)
		if r.idleErr != nil {
			idle = "failed: " + firstLine(r.idleErr.Error())
		}
		kills := slices.Sorted(slices.Values(s.kills))
		fmt.Fprintf(stdout, "| %s | %s | %d (%d polls without agreement) | %s / %s / %s (%d rounds) | %d |\n",
			s.label, idle, r.changes, r.pollFailures, ms(p(kills, 50)), ms(p(kills, 99)), ms(last(kills)), len(kills), s.killJumps)
	}
	for _, s := range systems {
		if s.key != sysQCluster || results[s] == nil {
			continue
		}
		r := results[s]
		kills := slices.Sorted(slices.Values(s.kills))
		idleOK := r.idleErr == nil && r.termAfter == r.termBefore
		killOK := len(kills) > 0 && p(kills, 99) <= starveGoalP99
		fmt.Fprintf(stdout, "\nQCluster: idle without an election: %v; kill -9 p99 %s ms <= %v: %v.\n", idleOK, ms(p(kills, 99)), starveGoalP99, killOK)
		if r.started != "" {
			fmt.Fprintf(stdout, "QCluster elections started in the idle window, per member (* led at its start): %s.\n", r.started)
			fmt.Fprintf(stdout, "QCluster stalls in the idle window (wakes of the election core over 20 ms late), per member: %s.\n", r.stalls)
		}
		if len(kills) > 0 {
			fmt.Fprintf(stdout, "QCluster kill -9 fail-overs (ms, sorted):")
			for _, d := range kills {
				fmt.Fprintf(stdout, " %s", ms(d))
			}
			fmt.Fprintln(stdout)
		}
	}
	for _, s := range systems {
		if s.failed != nil {
			return errFailed
		}
	}
	return nil
}

// starveIdle watches the systems for window: the term before and after, and
// the agreed leader every second.
func (h harness) starveIdle(ctx context.Context, systems []*system, results map[*system]*starveResult, window time.Duration) error {
	leaders := map[*system]member{}
	for _, s := range systems {
		a, err := h.waitStable(ctx, s, nil, 0)
		if err != nil {
			results[s].idleErr = fmt.Errorf("before the window: %w", err)
			continue
		}
		results[s].termBefore, leaders[s] = a.term, a.leader
	}
	first := leaders
	leaders = maps.Clone(leaders)
	type metricKey struct {
		m    member
		name string
	}
	before := map[metricKey]float64{}
	for _, s := range systems {
		if s.key != sysQCluster || first[s] == nil {
			continue
		}
		for _, m := range s.cl.Members() {
			for _, name := range qcMetrics {
				if v, err := qcMetric(ctx, m, name); err == nil {
					before[metricKey{m, name}] = v
				}
			}
		}
	}
	end := time.Now().Add(window)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		for _, s := range systems {
			if leaders[s] == nil {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			a, ok := agreed(poll(pctx, s.cl.Members()))
			cancel()
			switch {
			case !ok:
				results[s].pollFailures++
			case a.leader != leaders[s]:
				results[s].changes++
				leaders[s] = a.leader
			}
		}
	}
	for _, s := range systems {
		if leaders[s] == nil {
			continue
		}
		a, err := h.waitStable(ctx, s, nil, 0)
		if err != nil {
			results[s].idleErr = errors.Join(results[s].idleErr, fmt.Errorf("after the window: %w", err))
			continue
		}
		results[s].termAfter = a.term
		if a.leader != leaders[s] {
			results[s].changes++
		}
		s.stable = a
		if s.key != sysQCluster {
			continue
		}
		var parts [len(qcMetrics)][]string
		for _, m := range s.cl.Members() {
			for i, name := range qcMetrics {
				b, ok := before[metricKey{m, name}]
				after, err := qcMetric(ctx, m, name)
				part := m.Name()
				if m == first[s] {
					part += "*"
				}
				if !ok || err != nil {
					part += " n/a"
				} else {
					part += fmt.Sprintf(" %.0f", after-b)
				}
				parts[i] = append(parts[i], part)
			}
		}
		results[s].started = strings.Join(parts[0], ", ")
		results[s].stalls = strings.Join(parts[1], ", ")
	}
	return nil
}
