package sim

import (
	"flag"
	"fmt"
	"maps"
	mathrand "math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	flagSeed  = flag.Uint64("sim.seed", 0, "replay this one seed of TestSimulation (with -v: print its whole trace)")
	flagN     = flag.Int("sim.n", 0, "number of random schedules TestSimulation runs (default 2100, 300 with -short or -race; env QCLUSTER_SIM_SCHEDULES)")
	flagBase  = flag.Uint64("sim.base", 1, "first seed TestSimulation runs")
	flagDrift = flag.Float64("sim.drift", 0, "clock-rate drift bound for TestSimulation (default 0.04; larger values exceed the core's DriftMargin and are expected to fail)")
)

// peersFor maps a seed to a cluster size, so that a seed alone names a
// schedule.
func peersFor(seed uint64) int { return []int{3, 5, 7}[seed%3] }

func schedOptions(seed uint64) Options {
	return Options{Seed: seed, Peers: peersFor(seed), ClockDrift: *flagDrift}
}

func schedules(t *testing.T) int {
	if *flagN > 0 {
		return *flagN
	}
	if s := os.Getenv("QCLUSTER_SIM_SCHEDULES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("QCLUSTER_SIM_SCHEDULES=%q: want a positive integer", s)
		}
		return n
	}
	if testing.Short() || raceEnabled {
		// Under the race detector a schedule runs about ten times slower,
		// and 300 exercise the same goroutines (the workers, the KV
		// checker) as 2,100: what the detector looks for does not grow
		// with the number of schedules. Fault coverage does, and comes
		// from runs without it (CI: 10,000 fresh seeds, TestSimulationMany).
		return 300
	}
	return 2100
}

// TestSimulation runs many random schedules of 3, 5 and 7 peers (seed s
// has peersFor(s) peers) on GOMAXPROCS workers, and checks that they did
// what they are for: enough faults of every kind, elections, transfers,
// snapshots and records (a generator that silently stopped injecting
// faults would fail it).
func TestSimulation(t *testing.T) {
	if *flagSeed != 0 {
		replay(t, *flagSeed)
		return
	}
	n := schedules(t)
	total := runSchedules(t, *flagBase, n)
	if n >= 200 && *flagDrift == 0 && !t.Failed() {
		total.checkCoverage(t)
	}
}

// TestSimulationMany runs QCLUSTER_SIM_MANY random schedules (CI: 10,000,
// without -race) from a first seed chosen afresh each run, or -sim.base
// when given. It prints the seeds; each failure prints the command that
// replays it. Skipped when QCLUSTER_SIM_MANY is not set.
func TestSimulationMany(t *testing.T) {
	s := os.Getenv("QCLUSTER_SIM_MANY")
	if s == "" {
		t.Skip("QCLUSTER_SIM_MANY is not set (CI sets it to 10000)")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("QCLUSTER_SIM_MANY=%q: want a positive integer", s)
	}
	base := *flagBase
	if base == 1 {
		base = 1 + mathrand.Uint64N(1<<40)
	}
	t.Logf("seeds %d..%d; replay this run: go test ./internal/sim -run 'TestSimulation$' -count=1 -sim.base=%d -sim.n=%d",
		base, base+uint64(n)-1, base, n)
	total := runSchedules(t, base, n)
	if n >= 200 && *flagDrift == 0 && !t.Failed() {
		total.checkCoverage(t)
	}
}

// checkCoverage fails the test unless the schedules injected every fault
// kind and did each thing they exist for, in proportion to their number.
// The floors are about a third of what 2,100 schedules do.
func (s *summary) checkCoverage(t *testing.T) {
	t.Helper()
	per1000 := func(x int) int { return x * s.schedules / 1000 }
	floors := map[string]int{
		"partition-split": per1000(100), "partition-minority": per1000(100), "partition-leader": per1000(100),
		"oneway-split": per1000(60), "oneway-leader-deaf": per1000(30), "oneway-leader-mute": per1000(30), "oneway-links": per1000(60),
		"crash": per1000(150), "crash-after-save": per1000(40), "crash-lost-write": per1000(5), "restart": per1000(200),
		"fsync-stall": per1000(100), "pause": per1000(150), "transfer": per1000(150), "transfer-to-paused": per1000(40),
		"quiet-restart": per1000(200), "quiet-restart-armed": per1000(150), "heal": per1000(300),
		"member-add": per1000(100), "member-add-learner": per1000(120), "member-promote": per1000(50),
		"member-remove": per1000(60), "member-remove-leader": per1000(30), "member-remove-learner": per1000(3),
		"stream-reset": per1000(200), "stream-goodbye": per1000(200), "reject": per1000(200),
		"crash-delayed-eof": per1000(200), "crash-host": per1000(200), "probe-refused": per1000(3000), "probe-accepted": per1000(4000),
	}
	// A linearizability search that gave up (kvCheckTimeout, 20 s for
	// histories porcupine checks in milliseconds) proves nothing: tolerated
	// once in a thousand schedules, as a pathological history could be.
	if s.kvCheckUnknown > s.schedules/1000 {
		t.Errorf("%d schedules: %d linearizability checks gave up, want at most %d", s.schedules, s.kvCheckUnknown, s.schedules/1000)
	}
	// The fail-over on proof works in the random schedules too (message
	// loss and delays, 5 and 7 peers): its median stays far below the
	// election timeout it replaces.
	if f := slices.Sorted(slices.Values(s.failovers)); len(f) > 0 && f[len(f)/2] > DefaultElectionTimeout/2 {
		t.Errorf("%d schedules: fail-over on proof takes %v at the median, want at most %v", s.schedules, f[len(f)/2], DefaultElectionTimeout/2)
	}
	for _, k := range slices.Sorted(maps.Keys(floors)) {
		if got := s.faults[k]; got < floors[k] {
			t.Errorf("%d schedules injected %d faults of kind %q, want at least %d", s.schedules, got, k, floors[k])
		}
	}
	for _, c := range []struct {
		what       string
		got, floor int
	}{
		{"elections", s.elections, per1000(1500)},
		{"completed leadership transfers", s.transfers, per1000(200)},
		{"snapshots restored by running peers", s.snapshots, per1000(100)},
		{"records committed", s.records, per1000(10000)},
		{"quiet schedules", s.quiet, per1000(60)},
		{"membership changes applied", s.confChanges, per1000(280)},
		{"leaders that applied their own removal", s.leaderRemovals, per1000(25)},
		{"messages lost", int(s.lost), per1000(1000)},
		{"messages duplicated", int(s.dup), per1000(1000)},
		{"KV operations completed", s.kvWrites + s.kvReads, per1000(10000)},
		{"KV compare-and-swaps that failed their compare", s.kvCASFailed, per1000(1000)},
		{"KV linearizable reads served", s.kvReads, per1000(3000)},
		{"KV reads refused (no lease)", s.kvRefused, per1000(3000)},
		{"KV writes of unknown outcome", s.kvUnknown, per1000(300)},
		{"proofs that the leader is gone taken as evidence", s.goneTaken, per1000(700)},
		{"fail-overs on proof timed", len(s.failovers), per1000(90)},
		{"KV proposals delivered twice and applied once (per peer)", s.kvDuplicates, per1000(600)},
		{"KV watch events delivered", s.watchEvents, per1000(8000)},
		{"KV watchers resumed on another peer or incarnation", s.watchResumed, per1000(250)},
		{"KV watchers told of a compaction (ErrCompacted)", s.watchCompacted, per1000(50)},
		{"KV lock critical sections", s.locksHeld, per1000(700)},
		{"KV ephemeral keys dropped with their member", s.ephemeralDropped, per1000(90)},
	} {
		if c.got < c.floor {
			t.Errorf("%d schedules: %d %s, want at least %d", s.schedules, c.got, c.what, c.floor)
		}
	}
}

// runSchedules runs n schedules from seed base on GOMAXPROCS workers,
// reports the failures (up to 5) and returns the totals.
func runSchedules(t *testing.T, base uint64, n int) summary {
	t.Helper()
	workers := runtime.GOMAXPROCS(0)
	var (
		next     atomic.Uint64
		mu       sync.Mutex
		total    summary
		failures []*Violation
		wg       sync.WaitGroup
	)
	next.Store(base)
	last := base + uint64(n)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= last {
					return
				}
				mu.Lock()
				stop := len(failures) >= 5
				mu.Unlock()
				if stop {
					return
				}
				res, err := Run(schedOptions(seed))
				mu.Lock()
				total.add(res)
				if err != nil {
					v, ok := err.(*Violation)
					if !ok {
						v = &Violation{Seed: seed, Peers: peersFor(seed), Invariant: "sim", Detail: err.Error()}
					}
					failures = append(failures, v)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d schedules (seeds %d..%d, 3/5/7 peers) in %v on %d workers: %.1f schedules/s",
		total.schedules, base, last-1, elapsed.Round(time.Millisecond), workers, float64(total.schedules)/elapsed.Seconds())
	t.Log(total.String())
	slices.SortFunc(failures, func(a, b *Violation) int { return int(a.Seed) - int(b.Seed) })
	for i, v := range failures {
		if i == 0 {
			t.Error(v.Error())
		} else {
			t.Errorf("also: seed %d (%d peers): %s: %s", v.Seed, v.Peers, v.Invariant, v.Detail)
		}
	}
	return total
}

// replay runs one seed: twice, to show it is deterministic, and with -v
// prints every event of the first run.
func replay(t *testing.T, seed uint64) {
	opts := schedOptions(seed)
	if testing.Verbose() {
		opts.Verbose = os.Stdout
	}
	res, err := Run(opts)
	t.Logf("seed %d: %s", seed, fmtResult(res))
	opts.Verbose = nil
	res2, err2 := Run(opts)
	if res2.Digest != res.Digest || (err == nil) != (err2 == nil) {
		t.Errorf("seed %d did not replay identically (digest %x vs %x; deterministic elections: %v)",
			seed, res.Digest, res2.Digest, res.DeterministicElections)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func fmtResult(r Result) string {
	return fmt.Sprintf("%d peers, %v virtual, %d events, %d messages (%d lost, %d duplicated, %d delayed long, %d cut), %d faults %v, %d elections, %d/%d records committed, agreed leader %v after heal",
		r.Peers, r.VirtualTime.Round(time.Millisecond), r.Events, r.Messages, r.Lost, r.Duplicated, r.Spikes, r.Dropped,
		r.FaultsTotal, r.Faults, r.Elections, r.Committed, r.Proposals, r.TimeToLeader)
}

// summary aggregates Results.
type summary struct {
	schedules                       int
	virtual                         time.Duration
	events, messages, lost, dup     uint64
	faults                          map[string]int
	faultsTotal, elections, records int
	transfers, snapshots, quiet     int
	confChanges, leaderRemovals     int
	vouched                         int
	ttl                             []time.Duration
	// KV: schedules with clients, writes acknowledged, linearizable reads
	// served, failed compares, reads refused, writes of unknown outcome,
	// linearizability searches that gave up.
	kvSchedules, kvWrites, kvReads, kvCASFailed int
	kvRefused, kvUnknown, kvCheckUnknown        int
	// Fail-over on proof: proofs taken and ignored, fail-over times.
	goneTaken, goneIgnored                    int
	failovers                                 []time.Duration
	kvDuplicates                              int
	watchEvents, watchResumed, watchCompacted int
	lockAttempts, locksHeld, lockOverlaps     int
	ephemeralDropped                          int
}

func (s *summary) add(r Result) {
	s.schedules++
	s.virtual += r.VirtualTime
	s.events += r.Events
	s.messages += r.Messages
	s.lost += r.Lost
	s.dup += r.Duplicated
	if s.faults == nil {
		s.faults = map[string]int{}
	}
	for k, v := range r.Faults {
		s.faults[k] += v
	}
	s.faultsTotal += r.FaultsTotal
	s.elections += r.Elections
	s.records += r.Committed
	s.transfers += r.Transfers
	s.snapshots += r.SnapshotsApplied
	s.confChanges += r.MembershipChanges
	s.leaderRemovals += r.LeaderRemovals
	s.vouched += r.Vouched
	if r.Quiet {
		s.quiet++
	}
	if r.KVClients > 0 {
		s.kvSchedules++
	}
	s.kvWrites += r.KVWrites
	s.kvReads += r.KVReads
	s.kvCASFailed += r.KVCompareFailed
	s.kvRefused += r.KVReadsRefused
	s.kvUnknown += r.KVUnknown
	s.kvCheckUnknown += r.KVCheckUnknown
	s.kvDuplicates += r.KVDuplicates
	s.watchEvents += r.KVWatchEvents
	s.watchResumed += r.KVWatchResumed
	s.watchCompacted += r.KVWatchCompacted
	s.lockAttempts += r.KVLockAttempts
	s.locksHeld += r.KVLocksHeld
	s.lockOverlaps += r.KVLockOverlapsFenced
	s.ephemeralDropped += r.KVEphemeralDropped
	s.ttl = append(s.ttl, r.TimeToLeader)
	s.goneTaken += r.GoneTaken
	s.goneIgnored += r.GoneIgnored
	s.failovers = append(s.failovers, r.Failovers...)
}

func (s *summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "virtual time %v, %d events, %d messages (%d lost, %d duplicated), %d elections, %d records committed, %d transfers completed, %d snapshots restored, %d quiet schedules, %d membership changes applied (%d removed the leader), %d messages taken from vouched senders the receiver's configuration did not list\n",
		s.virtual.Round(time.Second), s.events, s.messages, s.lost, s.dup, s.elections, s.records, s.transfers, s.snapshots, s.quiet,
		s.confChanges, s.leaderRemovals, s.vouched)
	fmt.Fprintf(&b, "KV: %d schedules with clients, %d operations completed (%d writes acknowledged, %d linearizable reads served), %d failed compares, %d reads refused, %d writes of unknown outcome, %d linearizability checks gave up, %d duplicate proposals applied once\n",
		s.kvSchedules, s.kvWrites+s.kvReads, s.kvWrites, s.kvReads, s.kvCASFailed, s.kvRefused, s.kvUnknown, s.kvCheckUnknown, s.kvDuplicates)
	fmt.Fprintf(&b, "KV watch: %d events delivered, %d resumptions on another peer or incarnation, %d compactions reported; locks: %d attempts, %d critical sections, %d overlapping pairs (older lock lost first); %d ephemeral keys dropped with their member\n",
		s.watchEvents, s.watchResumed, s.watchCompacted, s.lockAttempts, s.locksHeld, s.lockOverlaps, s.ephemeralDropped)
	fmt.Fprintf(&b, "faults injected: %d:", s.faultsTotal)
	for _, k := range slices.Sorted(maps.Keys(s.faults)) {
		fmt.Fprintf(&b, " %s=%d", k, s.faults[k])
	}
	fmt.Fprintf(&b, "\nproofs that a peer is gone: %d taken as evidence about the leader, %d ignored", s.goneTaken, s.goneIgnored)
	if len(s.failovers) > 0 {
		f := slices.Sorted(slices.Values(s.failovers))
		q := func(x float64) time.Duration { return f[min(int(x*float64(len(f))), len(f)-1)] }
		fmt.Fprintf(&b, "\nfail-over after the process crash of the lease holder, until a new leader holds the lease and every live member names it (%d timed): p50 %v, p90 %v, p99 %v, max %v",
			len(f), q(0.5).Round(100*time.Microsecond), q(0.9).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), f[len(f)-1].Round(100*time.Microsecond))
	}
	if len(s.ttl) > 0 {
		slices.Sort(s.ttl)
		q := func(f float64) time.Duration { return s.ttl[min(int(f*float64(len(s.ttl))), len(s.ttl)-1)] }
		fmt.Fprintf(&b, "\ntime from heal to an agreed leader with the lease: p50 %v, p99 %v, max %v",
			q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), s.ttl[len(s.ttl)-1].Round(time.Millisecond))
	}
	return b.String()
}

// A seed replays exactly, election timeouts included, whatever else runs
// concurrently.
func TestDeterministicReplay(t *testing.T) {
	if !DeterministicElections() {
		t.Skip("EnableDeterministicElections was not called")
	}
	const n = 24
	var first [n]uint64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 2 {
				r, _ := Run(schedOptions(uint64(5000 + i)))
				first[i] = r.Digest
			}
		}()
	}
	wg.Wait()
	for i := range n {
		r, _ := Run(schedOptions(uint64(5000 + i)))
		if r.Digest != first[i] {
			t.Errorf("seed %d: digest %x, then %x", 5000+i, first[i], r.Digest)
		}
	}
}
