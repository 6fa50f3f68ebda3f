// Command kv measures QCluster's replicated key-value store side by side
// with etcd, in one run, on one machine, and prints the table of issue 12
// with QCluster's ratio to etcd.
//
//	go run ./bench/kv [-clients 1,16,64] [-read-clients 16] [-duration 5s] [-warmup 1s] [-idle-before 0] [-value-size 100] [-systems qcluster,etcd] [-quick]
//
// Run it from inside the QCluster module (Linux only).
//
// The systems, 3 members each, all on 127.0.0.1, both running for the
// whole run, taking turns (only one is under load at a time):
//
//   - qcluster: `qcluster agent` processes built from ./cmd/qcluster of this
//     tree (or -bin), default settings, started by internal/proccluster.
//   - etcd: Debian's etcd-server (installed with apt-get as root when
//     missing, as bench/compare does), its default settings.
//
// The load comes from one program for both, bench/kv/load, a module of its
// own (so this module does not depend on etcd's client) built here with
// `go build`: closed-loop clients, each with its own connection to the
// leader, each doing one request after another for -duration after
// -warmup. etcd is driven by its own Go client (gRPC), QCluster by its
// HTTP API (what its Go client speaks). Puts write -value-size bytes to
// one of 1000 keys per client; reads are linearizable Gets (etcd's
// default; QCluster's default, answered by the leader under its lease) of
// keys put first.
//
// -idle-before D leaves every system idle for D before each load: with D
// over 10 s and -warmup 0, a QCluster load starts on agents that run their
// Go code on one processor (qcluster agent --idle-procs), which is what a
// burst on an idle cluster meets.
//
// The output: the settings, then one row per load with the latency p50 /
// p99 (ms) and the throughput of each system, and QCluster's ratio to
// etcd (latency: below 1 is faster; throughput: above 1 is more).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qcluster/qcluster/internal/benchkit"
	"github.com/qcluster/qcluster/internal/proccluster"
)

func main() { benchkit.Main("kv", run) }

const (
	sysQCluster = "qcluster"
	sysEtcd     = "etcd"
)

var allSystems = []string{sysQCluster, sysEtcd}

// options are the command-line flags.
type options struct {
	clients     []int
	readClients int
	duration    time.Duration
	warmup      time.Duration
	idleBefore  time.Duration
	valueSize   int
	systems     []string
	bin, etcd   string
	keep        bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("kv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.String("clients", "1,16,64", "concurrent clients of the put loads, comma-separated")
	fs.IntVar(&o.readClients, "read-clients", 16, "concurrent clients of the linearizable read load (0 skips it)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time of each load")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "load before each measurement (not counted)")
	fs.DurationVar(&o.idleBefore, "idle-before", 0, "leave the systems idle this long before each load (over 10s: the agents run on one processor when it starts)")
	fs.IntVar(&o.valueSize, "value-size", 100, "bytes per value")
	systems := fs.String("systems", strings.Join(allSystems, ","), "systems to measure: qcluster, etcd")
	quick := fs.Bool("quick", false, "a smoke test: -clients 1,4 -read-clients 4 -duration 500ms -warmup 200ms unless given")
	fs.StringVar(&o.bin, "bin", "", "qcluster binary to run (default: build ./cmd/qcluster)")
	fs.StringVar(&o.etcd, "etcd", "", "etcd binary to run (default: etcd on PATH, installed with apt-get as root when missing)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data, logs)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *quick {
		if !given["clients"] {
			*clients = "1,4"
		}
		if !given["read-clients"] {
			o.readClients = 4
		}
		if !given["duration"] {
			o.duration = 500 * time.Millisecond
		}
		if !given["warmup"] {
			o.warmup = 200 * time.Millisecond
		}
	}
	for f := range strings.SplitSeq(*clients, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return o, fmt.Errorf("%w: -clients: %q is not a positive number", benchkit.ErrUsage, f)
		}
		o.clients = append(o.clients, n)
	}
	for k := range strings.SplitSeq(*systems, ",") {
		k = strings.TrimSpace(k)
		switch {
		case k == "":
		case !slices.Contains(allSystems, k):
			return o, fmt.Errorf("%w: -systems: unknown system %q (known: %s)", benchkit.ErrUsage, k, strings.Join(allSystems, ", "))
		case !slices.Contains(o.systems, k):
			o.systems = append(o.systems, k)
		}
	}
	slices.SortFunc(o.systems, func(a, b string) int { return slices.Index(allSystems, a) - slices.Index(allSystems, b) })
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("%w: unexpected argument %q", benchkit.ErrUsage, fs.Arg(0))
	case len(o.systems) == 0:
		return o, fmt.Errorf("%w: -systems names no system", benchkit.ErrUsage)
	case len(o.clients) == 0 && o.readClients == 0:
		return o, fmt.Errorf("%w: no load: -clients is empty and -read-clients is 0", benchkit.ErrUsage)
	case o.readClients < 0 || o.valueSize < 0 || o.duration <= 0 || o.warmup < 0 || o.idleBefore < 0:
		return o, fmt.Errorf("%w: -read-clients, -value-size, -warmup and -idle-before cannot be negative, -duration must be positive", benchkit.ErrUsage)
	}
	return o, nil
}

// result is what bench/kv/load prints.
type result struct {
	Ops       int     `json:"ops"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50us     int64   `json:"p50_us"`
	P99us     int64   `json:"p99_us"`
	MaxUs     int64   `json:"max_us"`
}

// load is one row of the table.
type load struct {
	op      string // put or get
	clients int
}

func (l load) String() string {
	what := "put"
	if l.op == "get" {
		what = "linearizable get"
	}
	return fmt.Sprintf("%s, %d client%s", what, l.clients, map[bool]string{true: "s"}[l.clients > 1])
}

// system is a running cluster: where its leader takes requests, and how
// to stop it.
type system struct {
	key, label, settings string
	// leader finds where the leader takes requests now (leadership may
	// move between loads on a loaded machine).
	leader  func(ctx context.Context) (string, error)
	stop    func()
	results map[load]result
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if runtime.GOOS != "linux" {
		return errors.New("this benchmark runs on Linux only")
	}
	dir, cleanup, err := benchkit.WorkDir("qcluster-kv-", o.keep, stdout)
	if err != nil {
		return err
	}
	defer cleanup()

	loader := filepath.Join(dir, "load.bin")
	if err := buildLoader(ctx, loader, stderr); err != nil {
		return err
	}
	var systems []*system
	defer func() {
		for _, s := range systems {
			s.stop()
		}
	}()
	for _, k := range o.systems {
		sdir := filepath.Join(dir, k)
		if err := os.Mkdir(sdir, 0o700); err != nil {
			return err
		}
		var s *system
		if k == sysQCluster {
			s, err = startQCluster(ctx, o, sdir, stderr)
		} else {
			s, err = startEtcd(ctx, o, sdir, stderr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		systems = append(systems, s)
	}

	var loads []load
	for _, n := range o.clients {
		loads = append(loads, load{"put", n})
	}
	if o.readClients > 0 {
		loads = append(loads, load{"get", o.readClients})
	}
	loadBefore := benchkit.LoadAvg()
	for i, l := range loads {
		order := slices.Clone(systems)
		if i%2 == 1 {
			slices.Reverse(order) // neither always goes first
		}
		for _, s := range order {
			if o.idleBefore > 0 {
				fmt.Fprintf(stderr, "idle for %v ...\n", o.idleBefore)
				select {
				case <-time.After(o.idleBefore):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			fmt.Fprintf(stderr, "%s: %s ...\n", s.label, l)
			r, err := runLoad(ctx, loader, s, l, o)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", s.label, l, err)
			}
			s.results[l] = r
		}
	}
	printReport(stdout, o, systems, loads, loadBefore, benchkit.LoadAvg())
	return nil
}

// buildLoader builds bench/kv/load (its own module) into bin.
func buildLoader(ctx context.Context, bin string, stderr io.Writer) error {
	modDir, err := benchkit.ModuleDir(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "building bench/kv/load ...")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(modDir, "bench", "kv", "load")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in bench/kv/load: %v: %s", err, benchkit.Tail(out, 5))
	}
	return nil
}

// runLoad runs the loader once against s's leader.
func runLoad(ctx context.Context, loader string, s *system, l load, o options) (result, error) {
	endpoint, err := s.leader(ctx)
	if err != nil {
		return result{}, fmt.Errorf("no leader: %w", err)
	}
	cmd := exec.CommandContext(ctx, loader, "-system", s.key, "-endpoint", endpoint, "-op", l.op,
		"-clients", strconv.Itoa(l.clients), "-duration", o.duration.String(), "-warmup", o.warmup.String(),
		"-value-size", strconv.Itoa(o.valueSize))
	var errOut strings.Builder
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("load: %v: %s", err, strings.TrimSpace(errOut.String()))
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, fmt.Errorf("load printed %q: %w", out, err)
	}
	if r.Errors > 0 {
		return r, fmt.Errorf("%d of %d requests failed, the first: %s", r.Errors, r.Errors+r.Ops, r.FirstErr)
	}
	return r, nil
}

// startQCluster starts 3 agents and returns the leader's API address.
func startQCluster(ctx context.Context, o options, dir string, stderr io.Writer) (*system, error) {
	bin, how := o.bin, "given with -bin"
	if bin == "" {
		bin, how = filepath.Join(dir, "qcluster.bin"), "built from ./cmd/qcluster"
		fmt.Fprintln(stderr, "building ./cmd/qcluster ...")
		if err := benchkit.BuildAgent(ctx, bin); err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(stderr, "starting 3 qcluster agents ...")
	c, err := proccluster.Start(ctx, proccluster.Options{
		Command:      []string{bin, "agent"},
		Peers:        3,
		Dir:          dir,
		StartTimeout: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	leader := func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		a, err := c.WaitAgreed(ctx, c.Running(), 20*time.Millisecond, nil)
		if err != nil {
			return "", err
		}
		return "http://" + a.Leader.Addr(), nil
	}
	if _, err := leader(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("no leader: %w", err)
	}
	return &system{
		key:      sysQCluster,
		label:    "QCluster",
		settings: fmt.Sprintf("qcluster agent (%s), 3 peers, default settings", how),
		leader:   leader,
		stop:     c.Close,
		results:  map[load]result{},
	}, nil
}

// startEtcd starts 3 etcd members and returns the leader's client URL.
func startEtcd(ctx context.Context, o options, dir string, stderr io.Writer) (*system, error) {
	bin, version, err := benchkit.FindEtcd(ctx, o.etcd, stderr)
	if err != nil {
		return nil, err
	}
	members, err := benchkit.EtcdCluster(bin, dir, "kv", 3, nil)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(stderr, "starting 3 etcd members ...")
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}
	for _, m := range members {
		logf, err := os.Create(filepath.Join(dir, m.Name+".log"))
		if err != nil {
			stop()
			return nil, err
		}
		cmd := exec.Command(m.Args[0], m.Args[1:]...)
		cmd.Env, cmd.Stdout, cmd.Stderr = m.Env, logf, logf
		cmd.SysProcAttr = proccluster.SysProcAttr()
		err = cmd.Start()
		logf.Close() // the child has its own descriptor
		if err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, cmd)
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	leader := func(ctx context.Context) (string, error) {
		defer client.CloseIdleConnections()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ids := map[uint64]string{}
			var leader uint64
			for _, m := range members {
				resp, err := client.Post(m.ClientURL+"/v3/maintenance/status", "application/json", strings.NewReader("{}"))
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if st, err := benchkit.ParseEtcdStatus(b); err == nil {
					ids[st.Self] = m.ClientURL
					leader = max(leader, st.Leader)
				}
			}
			if url, ok := ids[leader]; ok && len(ids) == len(members) {
				return url, nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return "", fmt.Errorf("no leader within 30s (logs in %s)", dir)
			}
			time.Sleep(50 * time.Millisecond) // polling starting processes
		}
	}
	if _, err := leader(ctx); err != nil {
		stop()
		return nil, err
	}
	return &system{
		key:      sysEtcd,
		label:    "etcd " + benchkit.MajorMinor(version),
		settings: fmt.Sprintf("etcd %s (%s), 3 members, default settings", version, bin),
		leader:   leader,
		stop:     stop,
		results:  map[load]result{},
	}, nil
}

func ms(us int64) string { return strconv.FormatFloat(float64(us)/1000, 'f', 2, 64) }

// printReport prints the settings, the table and the ratios.
func printReport(w io.Writer, o options, systems []*system, loads []load, loadBefore, loadAfter string) {
	fmt.Fprintf(w, "%d-core machine, load average %s before, %s after; each load %v after %v of warm-up, %d-byte values\n",
		runtime.NumCPU(), loadBefore, loadAfter, o.duration, o.warmup, o.valueSize)
	if o.idleBefore > 0 {
		fmt.Fprintf(w, "every system idle for %v before each load\n", o.idleBefore)
	}
	for _, s := range systems {
		fmt.Fprintf(w, "  %s: %s\n", s.label, s.settings)
	}
	fmt.Fprintln(w)
	head := "| load |"
	rule := "|---|"
	for _, s := range systems {
		head += fmt.Sprintf(" %s p50 / p99 ms | %s ops/s |", s.label, s.label)
		rule += "---|---|"
	}
	var q, e *system
	for _, s := range systems {
		if s.key == sysQCluster {
			q = s
		} else {
			e = s
		}
	}
	if q != nil && e != nil {
		head += " p50 ratio | ops/s ratio |"
		rule += "---|---|"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, rule)
	for _, l := range loads {
		row := "| " + l.String() + " |"
		for _, s := range systems {
			r := s.results[l]
			row += fmt.Sprintf(" %s / %s | %.0f |", ms(r.P50us), ms(r.P99us), r.OpsPerSec)
		}
		if q != nil && e != nil {
			qr, er := q.results[l], e.results[l]
			row += fmt.Sprintf(" %s | %s |", ratio(float64(qr.P50us), float64(er.P50us)), ratio(qr.OpsPerSec, er.OpsPerSec))
		}
		fmt.Fprintln(w, row)
	}
	if q != nil && e != nil {
		fmt.Fprintf(w, "\nratios are %s / %s: a p50 ratio below 1 is faster, an ops/s ratio above 1 is more\n", q.label, e.label)
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}
