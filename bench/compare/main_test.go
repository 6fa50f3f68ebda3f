package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-systems", "qcluster,zookeeper"},
		{"-systems", "hraft,hraft"},
		{"-systems", ","},
		{"-n", "0"},
		{"-poll", "0s"},
		{"-idle", "-1s"},
		{"-starve", "-burners", "-1"},
		{"-starve", "-starve-idle", "-1s"},
		{"extra"},
	} {
		if err := run(t.Context(), args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestFlags(t *testing.T) {
	o, keys, err := parseFlags([]string{"-quick", "-idle", "3s", "-systems", "hraft, qcluster"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.n != 2 || o.idle != 3*time.Second || o.warmup != 500*time.Millisecond {
		t.Errorf("-quick -idle 3s: n %d, idle %v, warmup %v; want 2, 3s (given), 500ms", o.n, o.idle, o.warmup)
	}
	if strings.Join(keys, ",") != "qcluster,hraft" {
		t.Errorf("systems %q, want the table's order qcluster,hraft", keys)
	}
	o, keys, err = parseFlags([]string{"-starve"}, io.Discard)
	if err != nil || !o.starve || o.starveIdle != 60*time.Second || o.burners != 0 || strings.Join(keys, ",") != "qcluster" {
		t.Errorf("-starve: %+v %q %v; want a 60s idle window, burners by the core count, qcluster alone", o, keys, err)
	}
	if _, keys, _ = parseFlags([]string{"-starve", "-systems", "qcluster,etcd"}, io.Discard); strings.Join(keys, ",") != "qcluster,etcd" {
		t.Errorf("-starve -systems qcluster,etcd: %q", keys)
	}
	o, keys, err = parseFlags(nil, io.Discard)
	if err != nil || o.n != 20 || o.idle != 30*time.Second || o.warmup != 20*time.Second || o.poll != 5*time.Millisecond || len(keys) != 4 {
		t.Errorf("defaults: %+v %q %v", o, keys, err)
	}
}

func TestHraftVersion(t *testing.T) {
	// The go.mod of the hraft module, next to this package.
	if v := hraftVersion("../hraft/go.mod"); !regexp.MustCompile(`^v1\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("hraftVersion = %q", v)
	}
}

// fakeMember is a member with a fixed name, for the pure functions.
type fakeMember struct{ name string }

func (f fakeMember) Name() string                     { return f.name }
func (fakeMember) PID() int                           { return 0 }
func (fakeMember) View(context.Context) (view, error) { return view{}, nil }
func (fakeMember) Kill() (time.Time, error)           { return time.Time{}, nil }
func (fakeMember) Signal(os.Signal) error             { return nil }
func (fakeMember) Restart(context.Context) error      { return nil }
func (fakeMember) LogTail(int) string                 { return "" }
func (f fakeMember) polled(v view, err error) polled  { return polled{m: f, v: v, err: err} }
func (f fakeMember) says(leader string, leads bool) polled {
	return f.polled(view{Leader: leader, IsLeader: leads, Term: 3}, nil)
}

func TestAgreed(t *testing.T) {
	a, b, c := fakeMember{"a"}, fakeMember{"b"}, fakeMember{"c"}
	for _, tc := range []struct {
		name string
		ps   []polled
		want string // the agreed leader, "" for none
	}{
		{"all name a, a leads", []polled{a.says("a", true), b.says("a", false), c.says("a", false)}, "a"},
		{"a does not say it leads", []polled{a.says("a", false), b.says("a", false), c.says("a", false)}, ""},
		{"b names nobody", []polled{a.says("a", true), b.says("", false), c.says("a", false)}, ""},
		{"b names c", []polled{a.says("a", true), b.says("c", false), c.says("a", false)}, ""},
		{"c unreachable", []polled{a.says("a", true), b.says("a", false), c.polled(view{}, errors.New("refused"))}, ""},
		{"the named leader is not polled", []polled{b.says("a", false), c.says("a", false)}, ""},
		{"survivors agree on c", []polled{b.says("c", false), c.says("c", true)}, "c"},
		{"nobody", nil, ""},
	} {
		got, ok := agreed(tc.ps)
		name := ""
		if ok {
			name = got.leader.Name()
			if got.term != 3 || len(got.views) != len(tc.ps) {
				t.Errorf("%s: agreement %+v", tc.name, got)
			}
		}
		if name != tc.want {
			t.Errorf("%s: agreed on %q, want %q", tc.name, name, tc.want)
		}
	}
}

func msd(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// testSystem returns a system with the given fail-over times (ms) and idle
// figures: the leader's CPU and RSS first.
func testSystem(key, label string, kills, stops []float64, cpu []float64, rssMB []float64) *system {
	s := &system{key: key, label: label, settings: "test"}
	for _, k := range kills {
		s.kills = append(s.kills, msd(k))
	}
	for _, k := range stops {
		s.stops = append(s.stops, msd(k))
	}
	for i := range cpu {
		role := "follower"
		if i == 0 {
			role = "leader"
		}
		s.idle = append(s.idle, &idleProc{role: role, name: "m", cpu: cpu[i], rssKB: int64(rssMB[i] * 1024), anonKB: int64(rssMB[i] * 1024 / 4), touchedKB: int64(rssMB[i] * 1024 / 2)})
	}
	return s
}

func TestReport(t *testing.T) {
	qc := testSystem(sysQCluster, "QCluster agent, defaults 50/150 ms", []float64{300, 100, 200}, []float64{210, 256}, []float64{3.2, 2.8, 3.1}, []float64{24, 22, 23})
	etcd := testSystem(sysEtcd, "etcd 3.4, 30/150 ms", []float64{400, 200}, []float64{100, 512}, []float64{6.4, 1.4, 1.4}, []float64{46, 44, 48})
	hr := testSystem(sysHraft, "hashicorp/raft 1.7, 150 ms", []float64{50}, nil, nil, nil)
	etcd.unprompted = 2
	hr.failed = errors.New("SIGSTOP round 1: no new leader\nlast views: ...")
	skipped := &system{key: sysEtcdDefault, label: "etcd 3.4 defaults 100/1000 ms", skipped: "etcd is not installed\nmore"}
	var b bytes.Buffer
	report{systems: []*system{qc, etcd, skipped, hr}, n: 3, poll: 5 * time.Millisecond, jitter: faultJitter,
		warmup: time.Second, idle: 2 * time.Second, cores: 2, loadBefore: "1.00", loadAfter: "2.00"}.print(&b)
	out := b.String()
	for _, want := range []string{
		"| QCluster agent, defaults 50/150 ms | 200 / 300 | 210 / 256 | 22–24 | 3.2 / 2.8–3.1 |",
		"| etcd 3.4, 30/150 ms | 200 / 400 | 100 / 512 | 44–48 | 6.4 / 1.4 |",
		"| hashicorp/raft 1.7, 150 ms | 50 / 50 | – / – | – | – |",
		// QCluster ÷ etcd: 200/200, 300/400; 210/100, 256/512; RSS 23/46; CPU 3.2/6.4, 2.95/1.4.
		"| etcd 3.4, 30/150 ms | 1.00 / 0.75 | 2.10 / 0.50 | 0.50 | 0.50 / 2.11 |",
		"| hashicorp/raft 1.7, 150 ms | 4.00 / 6.00 | n/a / n/a | n/a | n/a / n/a |",
		"etcd 3.4 defaults 100/1000 ms: SKIPPED: etcd is not installed\n",
		"FAILED: hashicorp/raft 1.7, 150 ms: SIGSTOP round 1: no new leader\n",
		"load average (1 min) 1.00 at the start, 2.00 at the end",
		"note: etcd 3.4, 30/150 ms: the leader changed 2 times between its rounds, with no fault",
		"etcd 3.4, 30/150 ms                  follower m               0    48.0    12.0    24.0    1.40\n",
		// Anon: a quarter of the RSS in the test, 5.75 and 11.5 MB;
		// touched: half, 11.5 and 23 MB.
		"(anon: MB of a process's own memory resident at the end of the window (RssAnon: the rest of RSS is mapped from files, its binary and libc); mean: QCluster agent, defaults 50/150 ms 5.8, etcd 3.4, 30/150 ms 11.5; QCluster ÷ etcd 3.4, 30/150 ms 0.50)\n",
		"; mean: QCluster agent, defaults 50/150 ms 11.5, etcd 3.4, 30/150 ms 23.0; QCluster ÷ etcd 3.4, 30/150 ms 0.50)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "| etcd 3.4 defaults 100/1000 ms | skipped: not run here (see Systems) | – | – | – |\n") || strings.Count(out, "etcd 3.4 defaults") != 2 {
		t.Errorf("the skipped system has no skipped row, or has figures:\n%s", out)
	}
	// A member whose working set could not be read: a dash, and no mean.
	etcd.idle[1].touchedKB = -1
	b.Reset()
	report{systems: []*system{qc, etcd}, n: 3, poll: 5 * time.Millisecond, jitter: faultJitter,
		warmup: time.Second, idle: 2 * time.Second, cores: 2, loadBefore: "1.00", loadAfter: "2.00"}.print(&b)
	out = b.String()
	if !strings.Contains(out, "etcd 3.4, 30/150 ms                  follower m               0    44.0    11.0       -    1.40\n") ||
		!strings.Contains(out, "mean: QCluster agent, defaults 50/150 ms 11.5)\n") {
		t.Errorf("an unknown working set is not a dash, or counts in the mean:\n%s", out)
	}
}

// TestRunQuick runs the benchmark end to end with small numbers: QCluster
// agents and hashicorp/raft nodes (both built here), and etcd when it is
// installed (the test does not install it). It asserts that every system
// got its figures, never what they are.
func TestRunQuick(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	systems := "qcluster,hraft"
	if _, err := exec.LookPath("etcd"); err == nil {
		systems += ",etcd"
	} else {
		t.Log("etcd is not installed: its row is left out")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-quick", "-n", "1", "-idle", "300ms", "-warmup", "100ms", "-systems", systems}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("run %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errOut.String())
	}
	s := out.String()
	figures := `\| \d[\d.]* / \d[\d.]* \| \d[\d.]* / \d[\d.]* \| [\d.–]+ \| [\d.]+ / [\d.–]+ \|`
	for _, row := range []string{`QCluster agent, defaults \d+/\d+ ms`, `hashicorp/raft \d+\.\d+, 150 ms`} {
		if !regexp.MustCompile(`(?m)^\| ` + row + ` ` + figures + `$`).MatchString(s) {
			t.Errorf("no row of figures for %s:\n%s", row, s)
		}
	}
	ratios := `\| [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ \| [\d.]+ \| (n/a|[\d.]+) / (n/a|[\d.]+) \|`
	if !regexp.MustCompile(`(?m)^\| hashicorp/raft \d+\.\d+, 150 ms ` + ratios + `$`).MatchString(s) {
		t.Errorf("no ratio row for hashicorp/raft:\n%s", s)
	}
	// Every member's working set was read (the test runs its own processes).
	if n := len(regexp.MustCompile(`(?m)^(QCluster agent|hashicorp/raft).* (leader|follower) +\S+ +\d+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+$`).FindAllString(s, -1)); n != 6 {
		t.Errorf("%d of 6 per-process lines with every figure (RSS, anon, touched, CPU):\n%s", n, s)
	}
	if strings.Contains(systems, "etcd") && !regexp.MustCompile(`(?m)^\| etcd \d+\.\d+, 30/150 ms `+figures+`$`).MatchString(s) {
		t.Errorf("no row of figures for etcd:\n%s", s)
	}
}

// TestRunStarveQuick runs the -starve mode end to end with small numbers
// (one burner, a short idle window, one kill round) and checks its table
// row and that the burners are gone; never the figures.
func TestRunStarveQuick(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"-starve", "-burners", "1", "-starve-idle", "2s", "-n", "1"}
	if err := run(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("run %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errOut.String())
	}
	s := out.String()
	row := `(?m)^\| QCluster agent, defaults \d+/\d+ ms \| \d+ \(\d+ -> \d+\) \| \d+ \(\d+ polls without agreement\) \| [\d.]+ / [\d.]+ / [\d.]+ \(1 rounds\) \| \d+ \|$`
	if !regexp.MustCompile(row).MatchString(s) {
		t.Errorf("no starvation row for QCluster:\n%s", s)
	}
	if !strings.Contains(s, "1 busy-loop processes") || !strings.Contains(s, "QCluster: idle without an election: ") ||
		!regexp.MustCompile(`Timer lateness in the idle window .*: p50 [\d.–]+, p99`).MatchString(s) ||
		!regexp.MustCompile(`per member \(\* led at its start\): server_a\*? \d+, server_b\*? \d+, server_c\*? \d+\.`).MatchString(s) {
		t.Errorf("the report does not say how the machine was starved or what QCluster met:\n%s", s)
	}
}

func TestBurnersStop(t *testing.T) {
	bs, err := startBurners(2)
	if err != nil {
		t.Fatal(err)
	}
	bs.stop()
	for _, c := range bs {
		if c.ProcessState == nil {
			t.Errorf("burner %d was not waited for", c.Process.Pid)
		}
	}
}

// TestDocsCommands: every "go run ./bench/compare ..." in the README and
// in this package's doc parses with the benchmark's flags.
func TestDocsCommands(t *testing.T) {
	cmd := regexp.MustCompile("go run \\./bench/compare((?:[ \t]+[^\\s#|&;`]+)*)")
	seen := 0
	for _, file := range []string{"../../README.md", "main.go"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmd.FindAllStringSubmatch(string(b), -1) {
			seen++
			// The doc's synopsis shows optional flags in brackets.
			args := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(m[1]))
			if _, _, err := parseFlags(args, io.Discard); err != nil {
				t.Errorf("%s: %q: %v", file, m[0], err)
			}
		}
	}
	if seen < 3 {
		t.Errorf("found only %d 'go run ./bench/compare' commands in the README and the package doc", seen)
	}
}
