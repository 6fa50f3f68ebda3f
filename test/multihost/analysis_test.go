//go:build multihost && linux

package multihost

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

func sortBySent(ss []sample) {
	slices.SortStableFunc(ss, func(a, b sample) int { return cmp.Compare(a.sent, b.sent) })
}

// slowAnswer is a status request time worth counting: the API reads an
// in-memory snapshot and should answer in well under a millisecond.
const slowAnswer = 50 * time.Millisecond

// maxExamples bounds the examples kept per kind of violation.
const maxExamples = 5

// findings is what the samples of one scenario show.
type findings struct {
	samples, failed int // answered and unanswered requests
	fails           map[string]int
	slowest         time.Duration // longest answered request
	slowestPeer     int
	slow            int // answers that took over slowAnswer

	// splitBrain counts pairs of is_leader=true samples of two peers
	// whose [sent, recv] intervals overlap.
	splitBrain int
	// leaseOverlap counts is_leader=true samples that lie surely inside
	// the lease another peer claimed before: b.recv <= a.sent +
	// a.lease_remaining_ms while b.sent >= a.recv.
	leaseOverlap int
	// overlapOwners are, for each lease overlap, the peer whose earlier
	// claim the later one fell inside; overlapOwnerAt when that earlier
	// claim was sent, overlapAt when the later one was.
	overlapOwners  []int
	overlapOwnerAt []time.Duration
	overlapAt      []time.Duration
	// maxIdle is the longest time the monitor left a peer unasked (from
	// an answer, or a failed request, to the next request), and
	// maxIdlePeer that peer: a stalled sampler could hide an overlap.
	maxIdle     time.Duration
	maxIdlePeer int
	maxIdleFrom time.Duration // monitor time at which that gap began
	maxIdleWhy  string        // the sample before the gap: its answer or failure
	// termConflicts counts terms in which two peers claimed is_leader.
	termConflicts int
	// termRegressions counts samples in which a peer reported a lower
	// term than in its previous answer (across restarts too).
	termRegressions int
	// namedConflicts counts terms in which followers named two different
	// leaders (information: a status is read from more than one snapshot).
	namedConflicts int
	examples       []string

	// leaderTerms are the terms after the scenario's start term in which
	// some peer claimed is_leader, ascending.
	leaderTerms []uint64
	// maxTerm is the highest term any peer reported.
	maxTerm uint64
}

func (f *findings) example(format string, args ...any) {
	if len(f.examples) < 3*maxExamples {
		f.examples = append(f.examples, fmt.Sprintf(format, args...))
	}
}

// analyze checks the samples of a window (sorted by sent). startTerm is the
// term of the leader when the window opened; origin is the monitor time
// examples are printed relative to.
func analyze(ss []sample, names []string, startTerm uint64, origin time.Duration) findings {
	var f findings
	var leaders []sample
	lastTerm := map[int]sample{}
	lastRecv := map[int]time.Duration{}
	lastSample := map[int]sample{}
	for _, s := range ss {
		if r, ok := lastRecv[s.peer]; ok && s.sent-r > f.maxIdle {
			f.maxIdle, f.maxIdlePeer, f.maxIdleFrom = s.sent-r, s.peer, r
			p := lastSample[s.peer]
			f.maxIdleWhy = fmt.Sprintf("the request before it took %v (ok %v, failure %q)", (p.recv - p.sent).Round(time.Millisecond), p.ok, p.fail)
		}
		lastRecv[s.peer] = s.recv
		lastSample[s.peer] = s
		if !s.ok {
			f.failed++
			if f.fails == nil {
				f.fails = map[string]int{}
			}
			f.fails[s.fail]++
			continue
		}
		f.samples++
		if d := s.recv - s.sent; d > f.slowest {
			f.slowest, f.slowestPeer = d, s.peer
		}
		if s.recv-s.sent > slowAnswer {
			f.slow++
		}
		f.maxTerm = max(f.maxTerm, s.st.Term)
		if prev, ok := lastTerm[s.peer]; ok && s.st.Term < prev.st.Term {
			f.termRegressions++
			f.example("term regression: %s reported term %d after %d at %+.1fms",
				names[s.peer], s.st.Term, prev.st.Term, ms(prev.sent-origin))
		}
		lastTerm[s.peer] = s
		if s.st.IsLeader {
			leaders = append(leaders, s)
		}
	}
	at := func(s sample) string {
		return fmt.Sprintf("%s [%+.1fms, %+.1fms] term %d", names[s.peer], ms(s.sent-origin), ms(s.recv-origin), s.st.Term)
	}

	// Split brain: overlapping claims of two peers.
	for i, a := range leaders {
		for _, b := range leaders[i+1:] {
			if b.sent > a.recv {
				break
			}
			if b.peer != a.peer {
				f.splitBrain++
				f.example("split brain: %s and %s both say is_leader", at(a), at(b))
			}
		}
	}

	// Lease overlap: a claim made surely within another peer's lease.
	flagged := map[int]bool{}
	for _, a := range leaders {
		end := a.sent + time.Duration(a.st.LeaseRemainingMS*float64(time.Millisecond))
		j, _ := slices.BinarySearchFunc(leaders, a.recv, func(s sample, t time.Duration) int { return cmp.Compare(s.sent, t) })
		for ; j < len(leaders) && leaders[j].sent < end; j++ {
			b := leaders[j]
			if b.peer != a.peer && b.recv <= end && !flagged[j] {
				flagged[j] = true
				f.leaseOverlap++
				f.overlapOwners = append(f.overlapOwners, a.peer)
				f.overlapOwnerAt = append(f.overlapOwnerAt, a.sent)
				f.overlapAt = append(f.overlapAt, b.sent)
				f.example("lease overlap: %s claims leadership inside the lease %s claimed (%.1fms left, to %+.1fms)",
					at(b), at(a), a.st.LeaseRemainingMS, ms(end-origin))
			}
		}
	}

	// One leader per term.
	claimed := map[uint64]int{}
	conflict := map[uint64]bool{}
	for _, s := range leaders {
		p, seen := claimed[s.st.Term]
		switch {
		case !seen:
			claimed[s.st.Term] = s.peer
		case p != s.peer && !conflict[s.st.Term]:
			conflict[s.st.Term] = true
			f.termConflicts++
			f.example("term conflict: %s and %s both claimed term %d", names[p], at(s), s.st.Term)
		}
	}
	named := map[uint64]string{}
	namedConflict := map[uint64]bool{}
	for _, s := range ss {
		if !s.ok || s.st.IsLeader || s.st.leader() == "" {
			continue
		}
		l, seen := named[s.st.Term]
		switch {
		case !seen:
			named[s.st.Term] = s.st.leader()
		case l != s.st.leader() && !namedConflict[s.st.Term]:
			namedConflict[s.st.Term] = true
			f.namedConflicts++
			f.example("followers named %s and %s as leader of term %d (%s)", l, s.st.leader(), s.st.Term, at(s))
		}
	}
	for term := range claimed {
		if term > startTerm {
			f.leaderTerms = append(f.leaderTerms, term)
		}
	}
	slices.Sort(f.leaderTerms)
	return f
}

// result is one row of the final table: a scenario run on one cluster,
// with all its repetitions.
type result struct {
	cluster   string
	name      string
	faults    int             // faults injected
	failovers []time.Duration // fault -> agreed new leader, per fault that needed one
	rounds    []int           // election rounds (terms) each fail-over used
	expected  int             // leaderships the faults called for
	f         findings
	startTerm uint64
	notes     []string
	failed    bool
}

func (r *result) spurious() int { return max(0, len(r.f.leaderTerms)-r.expected) }

func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

var results struct {
	sync.Mutex
	rows []*result
}

func record(r *result) {
	results.Lock()
	defer results.Unlock()
	results.rows = append(results.rows, r)
}

// median returns the median of ds, or 0.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// roundStats renders how many fail-overs took 1, 2, ... election rounds:
// "1×5 2×1".
func roundStats(rounds []int) string {
	if len(rounds) == 0 {
		return "-"
	}
	count := map[int]int{}
	for _, r := range rounds {
		count[r]++
	}
	keys := slices.Sorted(maps.Keys(count))
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d×%d", k, count[k]))
	}
	return strings.Join(parts, " ")
}

// durStats renders min/median/max in milliseconds.
func durStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 1 {
		return fmt.Sprintf("%.0f", ms(s[0]))
	}
	return fmt.Sprintf("%.0f / %.0f / %.0f", ms(s[0]), ms(s[len(s)/2]), ms(s[len(s)-1]))
}

// printTable writes the table of every scenario run, then their notes.
func printTable(w io.Writer) {
	results.Lock()
	defer results.Unlock()
	if len(results.rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nmultihost results (fault → leader: min / median / max ms over the faults that removed the leader; rounds: election rounds (terms) per fail-over × how many)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "cluster\tscenario\tfaults\tfault → leader ms\trounds\tsplit-brain\tlease overlap\tterm conflict\tterm regress\tleaderships (exp)\tspurious\tsamples (unanswered)\t")
	for _, r := range results.rows {
		name := r.name
		if r.failed {
			name += " FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d (%d)\t%d\t%d (%d)\t\n",
			r.cluster, name, r.faults, durStats(r.failovers), roundStats(r.rounds), r.f.splitBrain, r.f.leaseOverlap,
			r.f.termConflicts, r.f.termRegressions, len(r.f.leaderTerms), r.expected, r.spurious(), r.f.samples, r.f.failed)
	}
	tw.Flush()
	for _, r := range results.rows {
		if len(r.notes) > 0 {
			fmt.Fprintf(w, "  %s / %s: %s\n", r.cluster, r.name, strings.Join(r.notes, "; "))
		}
	}
}

// TestAnalyzeFindsViolations checks the checker itself on made-up samples:
// each kind of violation is counted, and a clean hand-over is not.
// The analysis measures the longest time the monitor left a peer unasked
// (the scenario fails above maxSampleIdle: a stalled sampler could hide an
// overlap).
func TestAnalyzeMeasuresSampleGaps(t *testing.T) {
	at := func(peer int, sent, recv time.Duration) sample {
		return sample{peer: peer, sent: sent * time.Millisecond, recv: recv * time.Millisecond}
	}
	ss := []sample{at(0, 0, 1), at(1, 0, 2), at(0, 6, 7), at(1, 7, 8), at(0, 12, 213), at(1, 400, 401), at(0, 218, 219)}
	sortBySent(ss)
	f := analyze(ss, []string{"h1", "h2"}, 1, 0)
	if f.maxIdle != 392*time.Millisecond || f.maxIdlePeer != 1 {
		t.Fatalf("longest gap %v (peer %d), want 392ms (peer 1)", f.maxIdle, f.maxIdlePeer)
	}
}

// Only the overlaps around the transfer are excused: a claim inside the
// leaving leader's lease before the leave was asked for, or inside a
// claim it made after the leave was answered, is not.
func TestHandedOverOnlyAroundTheTransfer(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	f := findings{
		overlapOwners:  []int{0, 0, 0, 1},
		overlapOwnerAt: []time.Duration{ms(90), ms(10), ms(300), ms(90)},
		overlapAt:      []time.Duration{ms(150), ms(50), ms(320), ms(150)},
	}
	// The leave of peer 0 was asked for at 100ms and answered at 200ms.
	if n := handedOver(&f, []handover{{0, ms(100), ms(200)}}); n != 1 {
		t.Fatalf("%d overlaps excused, want 1 (only the first)", n)
	}
	if n := handedOver(&f, []handover{{0, ms(100), 0}}); n != 0 {
		t.Fatalf("%d overlaps excused before the leave was answered, want 0", n)
	}
	// Two hand-overs that both cover an overlap excuse it once.
	if n := handedOver(&f, []handover{{0, ms(100), ms(200)}, {0, ms(120), ms(200)}}); n != 1 {
		t.Fatalf("%d overlaps excused by two hand-overs, want 1", n)
	}
}

func TestAnalyzeFindsViolations(t *testing.T) {
	names := []string{"h1", "h2", "h3"}
	msec := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	leader := func(peer int, sent, recv float64, term uint64, lease float64) sample {
		s := sample{peer: peer, sent: msec(sent), recv: msec(recv), ok: true, st: status{
			Identifier: names[peer], Role: "leader", Term: term, IsLeader: true, LeaseRemainingMS: lease,
		}}
		s.st.Leader = &struct {
			Identifier string `json:"identifier"`
		}{names[peer]}
		return s
	}
	follower := func(peer int, sent, recv float64, term uint64) sample {
		return sample{peer: peer, sent: msec(sent), recv: msec(recv), ok: true, st: status{
			Identifier: names[peer], Role: "follower", Term: term,
		}}
	}
	cases := []struct {
		name                              string
		ss                                []sample
		split, overlap, conflict, regress int
		leaderTerms                       int
	}{{
		name: "clean hand-over",
		ss: []sample{
			leader(0, 0, 1, 2, 100), follower(1, 0, 1, 2),
			follower(0, 200, 201, 3), leader(1, 202, 203, 3, 100),
		},
		leaderTerms: 2,
	}, {
		// The intervals overlap, so both claims may have held at once;
		// h2's is not surely inside h1's lease (h2 was asked before h1's
		// answer came back).
		name:  "overlapping claims",
		ss:    []sample{leader(0, 0, 2, 2, 5), leader(1, 1, 3, 3, 5)},
		split: 1, leaderTerms: 2,
	}, {
		name:    "claim inside another's lease",
		ss:      []sample{leader(0, 0, 1, 2, 100), leader(1, 50, 51, 3, 100)},
		overlap: 1, leaderTerms: 2,
	}, {
		name:     "two leaders of one term",
		ss:       []sample{leader(0, 0, 1, 2, 10), leader(1, 50, 51, 2, 10)},
		conflict: 1, leaderTerms: 1,
	}, {
		name:    "term going backwards",
		ss:      []sample{follower(2, 0, 1, 5), follower(2, 10, 11, 4)},
		regress: 1,
	}}
	for _, tc := range cases {
		sortBySent(tc.ss)
		f := analyze(tc.ss, names, 1, 0)
		if f.splitBrain != tc.split || f.leaseOverlap != tc.overlap || f.termConflicts != tc.conflict ||
			f.termRegressions != tc.regress || len(f.leaderTerms) != tc.leaderTerms {
			t.Errorf("%s: split %d, overlap %d, conflicts %d, regressions %d, leader terms %v; want %d, %d, %d, %d, %d terms\n%v",
				tc.name, f.splitBrain, f.leaseOverlap, f.termConflicts, f.termRegressions, f.leaderTerms,
				tc.split, tc.overlap, tc.conflict, tc.regress, tc.leaderTerms, f.examples)
		}
	}
}
