package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qcluster/qcluster/internal/benchkit"
)

// summary is a system's figures for the table.
type summary struct {
	kill, stop []time.Duration // sorted
	hasIdle    bool
	// RSS of the members in MB: min, max and mean.
	rssMin, rssMax, rssMean float64
	// CPU in % of one core: the leader, and the followers' min, max, mean.
	cpuLeader                  float64
	cpuFolMin, cpuFolMax, cpuF float64
	// The members' own memory (RssAnon), mean MB.
	anonMean float64
	// Anonymous memory touched in the window (the working set of the
	// members' own memory), mean MB; 0 when not known for every member.
	touchedMean float64
}

func summarize(s *system) summary {
	sm := summary{kill: slices.Sorted(slices.Values(s.kills)), stop: slices.Sorted(slices.Values(s.stops))}
	if len(s.idle) == 0 {
		return sm
	}
	sm.hasIdle = true
	sm.rssMin, sm.cpuFolMin = math.Inf(1), math.Inf(1)
	var rssSum, anonSum, folSum, touchedSum float64
	var fol int
	touchedKnown := true
	for _, p := range s.idle {
		touchedKnown = touchedKnown && p.touchedKB >= 0
		touchedSum += float64(p.touchedKB) / 1024
		mb := float64(p.rssKB) / 1024
		sm.rssMin, sm.rssMax = min(sm.rssMin, mb), max(sm.rssMax, mb)
		rssSum += mb
		anonSum += float64(p.anonKB) / 1024
		if p.role == "leader" {
			sm.cpuLeader = p.cpu
			continue
		}
		fol++
		folSum += p.cpu
		sm.cpuFolMin, sm.cpuFolMax = min(sm.cpuFolMin, p.cpu), max(sm.cpuFolMax, p.cpu)
	}
	sm.rssMean = rssSum / float64(len(s.idle))
	sm.anonMean = anonSum / float64(len(s.idle))
	if touchedKnown {
		sm.touchedMean = touchedSum / float64(len(s.idle))
	}
	if fol > 0 {
		sm.cpuF = folSum / float64(fol)
	} else {
		sm.cpuFolMin = 0
	}
	return sm
}

// p returns the p-th percentile of ds (nearest rank), or 0 for none.
func p(ds []time.Duration, pc float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return benchkit.Percentile(ds, pc)
}

func last(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)-1]
}

// ms formats a duration in milliseconds: whole ones from 10 ms, one
// decimal below; "–" for none.
func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return num(float64(d) / float64(time.Millisecond))
}

// num formats a figure: no decimals from 10, one below.
func num(v float64) string {
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// span formats a range "a–b", or "a" when both print the same.
func span(lo, hi float64) string {
	a, b := num(lo), num(hi)
	if a == b {
		return a
	}
	return a + "–" + b
}

// cells returns the table's four figure cells of sm.
func (sm summary) cells() [4]string {
	var c [4]string
	c[0] = ms(p(sm.kill, 50)) + " / " + ms(p(sm.kill, 99))
	c[1] = ms(p(sm.stop, 50)) + " / " + ms(last(sm.stop))
	c[2], c[3] = "–", "–"
	if sm.hasIdle {
		c[2] = span(sm.rssMin, sm.rssMax)
		cpu := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
		c[3] = cpu(sm.cpuLeader) + " / " + cpu(sm.cpuFolMin)
		if cpu(sm.cpuFolMin) != cpu(sm.cpuFolMax) {
			c[3] += "–" + cpu(sm.cpuFolMax)
		}
	}
	return c
}

// ratio formats a ÷ b, "n/a" when either is missing or b is zero.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "n/a"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

func dratio(a, b time.Duration) string { return ratio(float64(a), float64(b)) }

// ratioCells returns QCluster's figures divided by other's, cell by cell.
func ratioCells(qc, other summary) [4]string {
	var c [4]string
	c[0] = dratio(p(qc.kill, 50), p(other.kill, 50)) + " / " + dratio(p(qc.kill, 99), p(other.kill, 99))
	c[1] = dratio(p(qc.stop, 50), p(other.stop, 50)) + " / " + dratio(last(qc.stop), last(other.stop))
	c[2], c[3] = "n/a", "n/a / n/a"
	if qc.hasIdle && other.hasIdle {
		c[2] = ratio(qc.rssMean, other.rssMean)
		c[3] = ratio(qc.cpuLeader, other.cpuLeader) + " / " + ratio(qc.cpuF, other.cpuF)
	}
	return c
}

// report is what the run prints after the measurements.
type report struct {
	systems      []*system
	n            int
	poll, jitter time.Duration
	warmup, idle time.Duration
	cores        int
	loadBefore   string
	loadAfter    string
}

// print writes the header, the table, the ratios and the details.
func (r report) print(w io.Writer) {
	fmt.Fprintf(w, "Side by side: 3 members per system on 127.0.0.1, one run, the same harness for every system.\n")
	fmt.Fprintf(w, "Machine: %d cores; load average (1 min) %s at the start, %s at the end.\n", r.cores, r.loadBefore, r.loadAfter)
	fmt.Fprintf(w, "Faults: per system %d x SIGKILL of the leader (restarted after each) and %d x SIGSTOP (SIGCONT after each), each at a random instant within %v; the systems take turns.\n", r.n, r.n, r.jitter)
	fmt.Fprintf(w, "Time: from just before the signal until both survivors name the same new leader and it says it leads, each polled every %v.\n", r.poll)
	fmt.Fprintf(w, "Idle: a %v window after a %v warm-up, nobody polling; VmRSS at the end, utime+stime over the window (10 ms ticks).\n", r.idle, r.warmup)
	fmt.Fprintln(w, "Systems:")
	for _, s := range r.systems {
		if s.skipped != "" {
			fmt.Fprintf(w, "  %s: SKIPPED: %s\n", s.label, firstLine(s.skipped))
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", s.label, s.settings)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| system | kill -9 p50 / p99 ms | SIGSTOP p50 / max ms | idle RSS MB | idle CPU % of a core (leader / followers) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	var qc *system
	for _, s := range r.systems {
		if s.skipped != "" {
			fmt.Fprintf(w, "| %s | skipped: not run here (see Systems) | – | – | – |\n", s.label)
			continue
		}
		if s.key == sysQCluster {
			qc = s
		}
		c := summarize(s).cells()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", s.label, c[0], c[1], c[2], c[3])
	}
	if qc != nil {
		qs := summarize(qc)
		var rows []string
		for _, s := range r.systems {
			if s == qc || s.skipped != "" {
				continue
			}
			c := ratioCells(qs, summarize(s))
			rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %s |", s.label, c[0], c[1], c[2], c[3]))
		}
		if len(rows) > 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| QCluster ÷ | kill -9 p50 / p99 | SIGSTOP p50 / max | idle RSS (mean) | idle CPU leader / followers (mean) |")
			fmt.Fprintln(w, "|---|---|---|---|---|")
			for _, row := range rows {
				fmt.Fprintln(w, row)
			}
			fmt.Fprintln(w, "(below 1: QCluster is faster or cheaper; above 1: the other system is)")
		}
	}
	fmt.Fprintln(w)

	const rowf = "%-36s %-8s %3v %7v %7v %7v %7v %7v %6v\n"
	fmt.Fprintf(w, rowf, "details (ms)", "fault", "n", "min", "p50", "p90", "p99", "max", "jumps")
	for _, s := range r.systems {
		if s.skipped != "" {
			continue
		}
		sm := summarize(s)
		for _, f := range []struct {
			name  string
			ds    []time.Duration
			jumps int
		}{{"SIGKILL", sm.kill, s.killJumps}, {"SIGSTOP", sm.stop, s.stopJumps}} {
			first := time.Duration(0)
			if len(f.ds) > 0 {
				first = f.ds[0]
			}
			fmt.Fprintf(w, rowf, s.label, f.name, len(f.ds), ms(first), ms(p(f.ds, 50)), ms(p(f.ds, 90)), ms(p(f.ds, 99)), ms(last(f.ds)), f.jumps)
		}
	}
	fmt.Fprintln(w, "(jumps: rounds whose new leader's term was more than one above the old one, i.e. more than one election;")
	fmt.Fprintln(w, " etcd reports the term of its latest applied entry, so its count is a lower bound)")
	if r.n < 100 {
		fmt.Fprintf(w, "(percentiles are nearest-rank: with %d rounds p99 is the maximum)\n", r.n)
	}
	idleRows := false
	for _, s := range r.systems {
		for _, pr := range s.idle {
			if !idleRows {
				fmt.Fprintf(w, "\n%-36s %-8s %-8s %8v %7v %7v %7v %7v\n", "idle, per process", "role", "member", "pid", "RSS MB", "anon MB", "touched", "CPU %")
				idleRows = true
			}
			touched := "-"
			if pr.touchedKB >= 0 {
				touched = fmt.Sprintf("%.1f", float64(pr.touchedKB)/1024)
			}
			fmt.Fprintf(w, "%-36s %-8s %-8s %8v %7.1f %7.1f %7s %7.2f\n", s.label, pr.role, pr.name, pr.pid, float64(pr.rssKB)/1024, float64(pr.anonKB)/1024, touched, pr.cpu)
		}
	}
	if idleRows {
		r.printMeans(w, "anon: MB of a process's own memory resident at the end of the window (RssAnon: the rest of RSS is mapped from files, its binary and libc)", func(sm summary) float64 { return sm.anonMean })
		r.printMeans(w, "touched: MB of its own (anonymous) memory a process touched in the idle window, its working set; file pages are left out: the kernel marks one referenced when any process mapping the file runs it", func(sm summary) float64 { return sm.touchedMean })
	}
	for _, s := range r.systems {
		if s.unprompted > 0 {
			fmt.Fprintf(w, "note: %s: the leader changed %d times between its rounds, with no fault (found and followed before the next fault)\n", s.label, s.unprompted)
		}
		if s.idleNote != "" {
			fmt.Fprintf(w, "note: %s: %s\n", s.label, s.idleNote)
		}
		if s.failed != nil {
			fmt.Fprintf(w, "FAILED: %s: %s\n", s.label, firstLine(s.failed.Error()))
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// printMeans writes each system's mean of one memory figure over the
// idle window (what, a description, leads the line) and QCluster's ratio
// to the others'. RSS also counts resident pages a process did not touch
// and shares with others, such as the parts of its binary the kernel
// mapped around the ones it ran; these figures leave them out.
func (r report) printMeans(w io.Writer, what string, figure func(summary) float64) {
	type mean struct {
		s  *system
		mb float64
	}
	var means []mean // the systems with the figure, in order
	var qc float64
	for _, s := range r.systems {
		sm := summarize(s)
		if s.skipped != "" || !sm.hasIdle || figure(sm) <= 0 {
			continue
		}
		means = append(means, mean{s, figure(sm)})
		if s.key == sysQCluster {
			qc = figure(sm)
		}
	}
	if len(means) == 0 {
		return
	}
	parts := make([]string, len(means))
	for i, m := range means {
		parts[i] = fmt.Sprintf("%s %.1f", m.s.label, m.mb)
	}
	fmt.Fprintf(w, "(%s; mean: %s", what, strings.Join(parts, ", "))
	if qc > 0 {
		var ratios []string
		for _, m := range means {
			if m.s.key != sysQCluster {
				ratios = append(ratios, fmt.Sprintf("÷ %s %.2f", m.s.label, qc/m.mb))
			}
		}
		if len(ratios) > 0 {
			fmt.Fprintf(w, "; QCluster %s", strings.Join(ratios, ", "))
		}
	}
	fmt.Fprintln(w, ")")
}
