// Command registry measures QCluster's service registry, the numbers issue
// #4 asks for: how long a peer that registers itself takes to be visible on
// every peer, how long gossip takes to declare a killed peer dead with the
// default settings, and how fast masterless clusters of 20, 50 and 100 peers
// converge and how much memory each peer costs.
//
// Every peer runs in this one process through the public SDK (package
// qcluster), on 127.0.0.1 with ports the OS picks (a TCP listener on
// 127.0.0.1:0 handed over in Config.Listener, whose port number is checked
// to be free for UDP too, since gossip binds it as well), with a logger that
// discards and a data directory under a temporary directory removed at exit.
// Progress goes to stderr, the results to stdout.
//
//	go run ./bench/registry                        # everything, default flags (under a minute on 2 cores)
//	go run ./bench/registry -json > registry.json  # the same, as JSON
//	go run ./bench/registry -run join -joins 30 -tls on
//	go run ./bench/registry -run fd -fd-n 5 -fd-reps 5 -fd-profiles lan
//	go run ./bench/registry -run masterless -sizes 20,50,100,200 -profile lan
//
// Flags:
//
//	-run join,fd,masterless,startorder  the measurements to run (default: all four)
//	-joins 10                peers that join the 3 founders, one at a time
//	-tls both                join measurement without TLS ("off"), with
//	                         ("on": every peer shares one cluster_key), or both
//	-cluster-key KEY         the cluster_key for -tls (default: a fresh one)
//	-fd-n 5                  peers of the failure-detection cluster
//	-fd-reps 3               kills per gossip profile
//	-fd-profiles lan,local   gossip profiles of the failure-detection runs
//	-fd-mode leader          "leader" or "masterless" for failure detection
//	-sizes 20,50,100         masterless cluster sizes
//	-profile local           gossip profile of the masterless clusters
//	-order-n 30, -order-reps 3  peers and rounds of the start-order measurement
//	-kill=true               kill one peer of the largest masterless cluster
//	-keys 1000               keys whose Owner is followed through that kill
//	-poll 10ms               polling interval of every wait
//	-timeout 60s             deadline of every wait
//	-json                    print the results as JSON instead of tables
//
// What is measured:
//
//  1. Join-to-visible (leader mode, default timings). Three founders, each
//     listing the other two, start concurrently and wait for a leader
//     (WaitForLeader). Then -joins peers join one at a time; each one's
//     config names itself and one running peer only (the contact rotates
//     over the running peers) and no other config lists it. The time runs
//     from the joiner's Start call until every running peer, the joiner
//     included, lists it in Peers() as a voter (Role != MemberNone). With
//     -tls on, every peer has the same ClusterKey: mutual TLS on the port
//     and encrypted gossip.
//  2. Failure detection. A fresh cluster of -fd-n peers (all listing each
//     other) per kill; once every peer's Peers() shows every member alive,
//     one peer (a follower, in leader mode) is stopped with Close, which
//     stops its gossip without a leave message, so the others must detect
//     it. The time runs from the Close call until a survivor's Peers()
//     first shows it HealthSuspect (first survivor, then all survivors)
//     and HealthDead (first survivor, then all survivors: the failure
//     detection time).
//  3. Masterless convergence and memory. For each size N, N masterless peers
//     whose configs list two or three seeds (p0, p1 and the predecessor)
//     start concurrently; the convergence time runs from the start until
//     every peer's Peers() shows all N alive. Memory per peer is the growth
//     of the process's HeapInuse, HeapAlloc (live objects), Sys, and Sys
//     minus HeapReleased (memory obtained from the OS and not given back)
//     from before the listeners are opened to convergence, divided by N,
//     each read with runtime.ReadMemStats after debug.FreeOSMemory (a GC
//     that also returns free memory to the OS); likewise for goroutines.
//     HeapInuse counts whole spans, so it can understate the growth when
//     the earlier measurements left partly free spans behind; HeapAlloc is
//     the closer figure for what the peers hold. Sys never shrinks, so its
//     growth is only what the runtime had to get from the OS anew, often 0
//     after the earlier measurements; Sys-HeapReleased is the figure for
//     the memory the process holds for the peers. Every peer is closed, and
//     the goroutines drained, before the next size. With -kill, one peer of
//     the largest cluster is closed, and the time measured until no
//     survivor's Owner returns it for any of -keys keys, and until all
//     survivors agree on every key's owner; keys it did not own must not
//     move.
//  4. Start order (issue 16). -order-n masterless peers (default gossip
//     profile) whose only seed, p0, is down start first; then p0 starts.
//     The time runs from p0's Start until every peer's Peers() shows all
//     alive: the peers' join retries (with backoff) must find p0 long
//     before gossip's periodic rejoin (30 s). Goal: 3 s.
//
// The numbers are from one process on one machine: every peer shares its
// CPUs (see GOMAXPROCS in the header) and the loopback interface.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/internal/benchkit"
	"github.com/qcluster/qcluster/internal/pki"
)

func main() { benchkit.Main("registry", run) }

var errUsage = benchkit.ErrUsage

// options are the command-line flags.
type options struct {
	run        []string
	joins      int
	tls        string
	clusterKey string
	fdN        int
	fdReps     int
	fdProfiles []string
	fdMode     string
	sizes      []int
	profile    string
	kill       bool
	keys       int
	orderN     int
	orderReps  int
	poll       time.Duration
	timeout    time.Duration
	json       bool
}

func (o options) runs(what string) bool { return slices.Contains(o.run, what) }

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var runList, profiles, sizes string
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&runList, "run", "join,fd,masterless,startorder", "measurements to run: join, fd, masterless, startorder (comma-separated)")
	fs.IntVar(&o.joins, "joins", 10, "peers that join the 3 founders one at a time")
	fs.StringVar(&o.tls, "tls", "both", `join measurement without TLS ("off"), with a shared cluster_key ("on"), or "both"`)
	fs.StringVar(&o.clusterKey, "cluster-key", "", "cluster_key for the TLS join measurement (default: a fresh one)")
	fs.IntVar(&o.fdN, "fd-n", 5, "peers of the failure-detection cluster")
	fs.IntVar(&o.fdReps, "fd-reps", 3, "kills per gossip profile in the failure-detection measurement")
	fs.StringVar(&profiles, "fd-profiles", "lan,local", "gossip profiles of the failure-detection measurement (comma-separated)")
	fs.StringVar(&o.fdMode, "fd-mode", qcluster.ModeLeader, `mode of the failure-detection cluster: "leader" or "masterless"`)
	fs.StringVar(&sizes, "sizes", "20,50,100", "masterless cluster sizes (comma-separated)")
	fs.StringVar(&o.profile, "profile", qcluster.GossipLocal, "gossip profile of the masterless clusters")
	fs.BoolVar(&o.kill, "kill", true, "kill one peer of the largest masterless cluster and follow Owner")
	fs.IntVar(&o.keys, "keys", 1000, "keys whose owner is followed through the masterless kill")
	fs.IntVar(&o.orderN, "order-n", 30, "peers of the start-order measurement (the contact starts last)")
	fs.IntVar(&o.orderReps, "order-reps", 3, "rounds of the start-order measurement")
	fs.DurationVar(&o.poll, "poll", 10*time.Millisecond, "polling interval of every wait")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "deadline of every wait")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of tables")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	o.run = splitList(runList)
	for _, r := range o.run {
		if r != "join" && r != "fd" && r != "masterless" && r != "startorder" {
			return o, fmt.Errorf("%w: -run: unknown measurement %q (join, fd, masterless, startorder)", errUsage, r)
		}
	}
	o.fdProfiles = splitList(profiles)
	for _, p := range append(slices.Clone(o.fdProfiles), o.profile) {
		if p != qcluster.GossipLAN && p != qcluster.GossipLocal && p != qcluster.GossipWAN {
			return o, fmt.Errorf("%w: unknown gossip profile %q (lan, local, wan)", errUsage, p)
		}
	}
	for _, s := range splitList(sizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 3 {
			return o, fmt.Errorf("%w: -sizes: %q is not a cluster size of at least 3", errUsage, s)
		}
		o.sizes = append(o.sizes, n)
	}
	switch {
	case o.tls != "off" && o.tls != "on" && o.tls != "both":
		return o, fmt.Errorf("%w: -tls must be off, on or both", errUsage)
	case o.joins < 1:
		return o, fmt.Errorf("%w: -joins must be at least 1", errUsage)
	case o.fdN < 3:
		return o, fmt.Errorf("%w: -fd-n must be at least 3", errUsage)
	case o.fdReps < 1:
		return o, fmt.Errorf("%w: -fd-reps must be at least 1", errUsage)
	case o.fdMode != qcluster.ModeLeader && o.fdMode != qcluster.ModeMasterless:
		return o, fmt.Errorf("%w: -fd-mode must be leader or masterless", errUsage)
	case o.keys < 1:
		return o, fmt.Errorf("%w: -keys must be at least 1", errUsage)
	case o.orderN < 2 || o.orderReps < 1:
		return o, fmt.Errorf("%w: -order-n must be at least 2 and -order-reps at least 1", errUsage)
	case o.poll <= 0 || o.timeout <= 0:
		return o, fmt.Errorf("%w: -poll and -timeout must be positive", errUsage)
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// report is everything measured; it is what -json prints.
type report struct {
	GoVersion  string           `json:"go_version"`
	GOOS       string           `json:"goos"`
	GOARCH     string           `json:"goarch"`
	GOMAXPROCS int              `json:"gomaxprocs"`
	NumCPU     int              `json:"num_cpu"`
	Args       []string         `json:"args"`
	Started    time.Time        `json:"started"`
	Elapsed    msDur            `json:"elapsed_ms"`
	Join       []joinResult     `json:"join,omitempty"`
	FD         []fdResult       `json:"failure_detection,omitempty"`
	Masterless []masterlessSize `json:"masterless,omitempty"`
	Kill       *killResult      `json:"masterless_kill,omitempty"`
	StartOrder *orderResult     `json:"start_order,omitempty"`
}

// msDur is a duration written to JSON in milliseconds.
type msDur time.Duration

func (d msDur) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(d)/float64(time.Millisecond), 'f', 3, 64), nil
}

func (d msDur) String() string { return fmtDur(time.Duration(d)) }

// stats summarizes a set of durations.
type stats struct {
	N    int   `json:"n"`
	Min  msDur `json:"min_ms"`
	P50  msDur `json:"p50_ms"`
	P90  msDur `json:"p90_ms"`
	Max  msDur `json:"max_ms"`
	Mean msDur `json:"mean_ms"`
}

func summarize(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	// Nearest-rank percentiles.
	rank := func(q float64) msDur {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return msDur(s[max(0, min(i, len(s)-1))])
	}
	return stats{N: len(s), Min: msDur(s[0]), P50: rank(0.5), P90: rank(0.9), Max: msDur(s[len(s)-1]),
		Mean: msDur(sum / time.Duration(len(s)))}
}

type joinResult struct {
	TLS     bool      `json:"tls"`
	Joins   []joinRun `json:"joins"`
	Visible stats     `json:"visible"`
	Start   stats     `json:"start_call"`
}

type joinRun struct {
	Peer    string `json:"peer"`
	Contact string `json:"contact"`
	Peers   int    `json:"peers"` // running peers, the joiner included
	Start   msDur  `json:"start_call_ms"`
	Visible msDur  `json:"visible_ms"`
}

type fdResult struct {
	Mode    string    `json:"mode"`
	Profile string    `json:"profile"`
	Peers   int       `json:"peers"`
	Kills   []fdRound `json:"kills"`
	DeadAll stats     `json:"dead_all"`
}

type fdRound struct {
	Killed       string `json:"killed"`
	SuspectFirst msDur  `json:"suspect_first_ms"`
	SuspectAll   msDur  `json:"suspect_all_ms"` // every survivor saw it suspect (or already dead)
	DeadFirst    msDur  `json:"dead_first_ms"`
	DeadAll      msDur  `json:"dead_all_ms"`
}

type masterlessSize struct {
	Peers            int     `json:"peers"`
	Profile          string  `json:"profile"`
	Start            msDur   `json:"start_ms"` // the concurrent Start calls
	Converge         msDur   `json:"converge_ms"`
	HeapInuse        uint64  `json:"heap_inuse_bytes"`
	HeapInusePerPeer uint64  `json:"heap_inuse_per_peer_bytes"`
	HeapAllocPerPeer uint64  `json:"heap_alloc_per_peer_bytes"`
	SysPerPeer       uint64  `json:"sys_per_peer_bytes"`
	HeldPerPeer      uint64  `json:"sys_minus_released_per_peer_bytes"`
	GoroutinesPeer   float64 `json:"goroutines_per_peer"`
}

type killResult struct {
	Peers       int    `json:"peers"`
	Killed      string `json:"killed"`
	Keys        int    `json:"keys"`
	KilledKeys  int    `json:"killed_keys"` // keys the killed peer owned
	OtherMoved  int    `json:"other_keys_moved"`
	DeadAll     msDur  `json:"dead_all_ms"`
	MovedAll    msDur  `json:"moved_all_ms"` // no survivor's Owner returns it
	AgreedAll   msDur  `json:"agreed_all_ms"`
	AgreeChecks int    `json:"agree_checks"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "qcluster-bench-registry-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{o: o, dir: dir, progress: stderr, live: map[*qcluster.Cluster]bool{}}
	defer b.cleanup()

	rep := report{
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		Args: append([]string{"go", "run", "./bench/registry"}, args...), Started: time.Now(),
	}
	if !o.json {
		printHeader(stdout, &rep, o)
	}
	if o.runs("join") {
		for _, secure := range []bool{false, true} {
			if (secure && o.tls == "off") || (!secure && o.tls == "on") {
				continue
			}
			r, err := b.join(ctx, secure)
			if err != nil {
				return fmt.Errorf("join (tls %s): %w", onOff(secure), err)
			}
			rep.Join = append(rep.Join, r)
		}
		if !o.json {
			printJoin(stdout, rep.Join, o)
		}
	}
	if o.runs("fd") {
		for _, p := range o.fdProfiles {
			r, err := b.failureDetection(ctx, p)
			if err != nil {
				return fmt.Errorf("failure detection (%s): %w", p, err)
			}
			rep.FD = append(rep.FD, r)
		}
		if !o.json {
			printFD(stdout, rep.FD)
		}
	}
	if o.runs("masterless") && len(o.sizes) > 0 {
		largest := slices.Max(o.sizes)
		killDone := false
		for _, n := range o.sizes {
			doKill := o.kill && n == largest && !killDone
			r, k, err := b.masterless(ctx, n, doKill)
			if err != nil {
				return fmt.Errorf("masterless %d: %w", n, err)
			}
			rep.Masterless = append(rep.Masterless, r)
			if k != nil {
				rep.Kill, killDone = k, true
			}
		}
		if !o.json {
			printMasterless(stdout, rep.Masterless, rep.Kill)
		}
	}
	if o.runs("startorder") {
		r, err := b.startOrder(ctx)
		if err != nil {
			return fmt.Errorf("start order: %w", err)
		}
		rep.StartOrder = &r
		if !o.json {
			printOrder(stdout, r)
		}
	}
	rep.Elapsed = msDur(time.Since(rep.Started))
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "total time %s\n", fmtDur(time.Duration(rep.Elapsed)))
	return nil
}

// bench holds what the measurements share.
type bench struct {
	o        options
	dir      string
	progress io.Writer
	seq      int // makes data dirs unique

	mu    sync.Mutex
	live  map[*qcluster.Cluster]bool // started and not yet closed by the bench
	spare []net.Listener             // TCP ports whose UDP twin was taken
}

// cleanup closes every peer still running and every spare listener.
func (b *bench) cleanup() {
	b.mu.Lock()
	cs := make([]*qcluster.Cluster, 0, len(b.live))
	for c := range b.live {
		cs = append(cs, c)
	}
	spare := b.spare
	b.spare = nil
	b.mu.Unlock()
	b.closeAll(cs)
	for _, ln := range spare {
		ln.Close()
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, format+"\n", args...)
}

// listen returns a TCP listener on 127.0.0.1 with a port the OS chose whose
// number is free for UDP too (gossip binds it at Start).
func (b *bench) listen() (net.Listener, int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			// Keep the TCP port open, so the OS does not offer it again.
			b.mu.Lock()
			b.spare = append(b.spare, ln)
			b.mu.Unlock()
			continue
		}
		u.Close()
		return ln, port, nil
	}
	return nil, 0, errors.New("no port free for both TCP and UDP in 100 tries")
}

// node is one peer of a measurement: its config (with its listener) and,
// once started, its Cluster.
type node struct {
	id   string
	port int
	cfg  qcluster.Config
	c    *qcluster.Cluster
}

func (n *node) peerConfig() qcluster.PeerConfig {
	return qcluster.PeerConfig{Host: "127.0.0.1", Port: n.port, Identifier: n.id}
}

// newNodes opens n listeners and makes the configs of peers p0..p(n-1)
// with the given mode, gossip profile and cluster key, and no peers.
func (b *bench) newNodes(n int, first int, mode, profile, key string) ([]*node, error) {
	nodes := make([]*node, n)
	for i := range nodes {
		ln, port, err := b.listen()
		if err != nil {
			closeListeners(nodes[:i])
			return nil, err
		}
		id := fmt.Sprintf("p%d", first+i)
		b.seq++
		cfg := qcluster.DefaultConfig()
		cfg.Identifier = id
		cfg.ListenPort = port
		cfg.Listener = ln
		cfg.DataDir = fmt.Sprintf("%s/%d-%s", b.dir, b.seq, id)
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.Mode = mode
		cfg.GossipProfile = profile
		cfg.ClusterKey = key
		nodes[i] = &node{id: id, port: port, cfg: cfg}
	}
	return nodes, nil
}

func closeListeners(nodes []*node) {
	for _, n := range nodes {
		if n != nil && n.c == nil {
			n.cfg.Listener.Close()
		}
	}
}

// start creates and starts the peers concurrently.
func (b *bench) start(ctx context.Context, nodes []*node) error {
	for _, n := range nodes {
		c, err := qcluster.New(n.cfg)
		if err != nil {
			closeListeners(nodes)
			return fmt.Errorf("%s: %w", n.id, err)
		}
		n.c = c
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			if err := n.c.Start(ctx); err != nil {
				errs[i] = fmt.Errorf("start %s: %w", n.id, err)
				n.cfg.Listener.Close()
			}
		})
	}
	wg.Wait()
	b.mu.Lock()
	for _, n := range nodes {
		b.live[n.c] = true
	}
	b.mu.Unlock()
	return errors.Join(errs...)
}

// closeAll closes the peers concurrently and waits for them.
func (b *bench) closeAll(cs []*qcluster.Cluster) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { b.close(c) })
	}
	wg.Wait()
}

func (b *bench) close(c *qcluster.Cluster) {
	c.Close()
	b.mu.Lock()
	delete(b.live, c)
	b.mu.Unlock()
}

func (b *bench) closeNodes(nodes []*node) {
	var cs []*qcluster.Cluster
	for _, n := range nodes {
		if n.c != nil {
			cs = append(cs, n.c)
		}
	}
	b.closeAll(cs)
}

// waitFor polls cond every -poll until it holds, and returns when it held
// (the time the successful poll began), or an error at the deadline.
func (b *bench) waitFor(ctx context.Context, what string, cond func(now time.Time) bool) (time.Time, error) {
	deadline := time.Now().Add(b.o.timeout)
	t := time.NewTicker(b.o.poll)
	defer t.Stop()
	for {
		now := time.Now()
		if cond(now) {
			return now, nil
		}
		if now.After(deadline) {
			return time.Time{}, fmt.Errorf("%s: not after %v", what, b.o.timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

func member(ms []qcluster.Member, id string) (qcluster.Member, bool) {
	for _, m := range ms {
		if m.Identifier == id {
			return m, true
		}
	}
	return qcluster.Member{}, false
}

// allAlive reports whether every one of nodes sees all of them alive.
func allAlive(nodes []*node) bool {
	for _, n := range nodes {
		ms := n.c.Peers()
		for _, o := range nodes {
			if m, ok := member(ms, o.id); !ok || m.Health != qcluster.HealthAlive {
				return false
			}
		}
	}
	return true
}

// join runs measurement 1.
func (b *bench) join(ctx context.Context, secure bool) (joinResult, error) {
	res := joinResult{TLS: secure}
	key := ""
	if secure {
		key = cmp.Or(b.o.clusterKey, pki.NewClusterKey())
	}
	founders, err := b.newNodes(3, 0, qcluster.ModeLeader, qcluster.GossipLAN, key)
	if err != nil {
		return res, err
	}
	running := slices.Clone(founders)
	defer func() { b.closeNodes(running) }()
	for _, n := range founders {
		for _, o := range founders {
			if o != n {
				n.cfg.Peers = append(n.cfg.Peers, o.peerConfig())
			}
		}
	}
	if err := b.start(ctx, founders); err != nil {
		return res, err
	}
	for _, n := range founders {
		wctx, cancel := context.WithTimeout(ctx, b.o.timeout)
		_, err := n.c.WaitForLeader(wctx)
		cancel()
		if err != nil {
			return res, fmt.Errorf("%s: no leader: %w", n.id, err)
		}
	}
	var visible, starts []time.Duration
	for j := range b.o.joins {
		nodes, err := b.newNodes(1, 3+j, qcluster.ModeLeader, qcluster.GossipLAN, key)
		if err != nil {
			return res, err
		}
		n, contact := nodes[0], running[j%len(running)]
		n.cfg.Peers = []qcluster.PeerConfig{n.peerConfig(), contact.peerConfig()}
		c, err := qcluster.New(n.cfg)
		if err != nil {
			n.cfg.Listener.Close()
			return res, err
		}
		n.c = c
		t0 := time.Now()
		if err := c.Start(ctx); err != nil {
			n.cfg.Listener.Close()
			return res, fmt.Errorf("start %s: %w", n.id, err)
		}
		started := time.Since(t0)
		b.mu.Lock()
		b.live[c] = true
		b.mu.Unlock()
		running = append(running, n)
		at, err := b.waitFor(ctx, n.id+" visible as a voter on every peer", func(time.Time) bool {
			for _, r := range running {
				m, ok := member(r.c.Peers(), n.id)
				if !ok || m.Role == qcluster.MemberNone || !m.Voter {
					return false
				}
			}
			return true
		})
		if err != nil {
			return res, fmt.Errorf("%w (JoinErr: %v)", err, c.JoinErr())
		}
		d := at.Sub(t0)
		visible, starts = append(visible, d), append(starts, started)
		res.Joins = append(res.Joins, joinRun{Peer: n.id, Contact: contact.id, Peers: len(running),
			Start: msDur(started), Visible: msDur(d)})
		b.logf("join (tls %s): %s via %s visible on all %d peers after %s (Start returned after %s)",
			onOff(secure), n.id, contact.id, len(running), fmtDur(d), fmtDur(started))
	}
	res.Visible, res.Start = summarize(visible), summarize(starts)
	return res, nil
}

// failureDetection runs measurement 2 for one gossip profile.
func (b *bench) failureDetection(ctx context.Context, profile string) (fdResult, error) {
	res := fdResult{Mode: b.o.fdMode, Profile: profile, Peers: b.o.fdN}
	var deadAll []time.Duration
	for rep := range b.o.fdReps {
		r, err := b.fdRound(ctx, profile)
		if err != nil {
			return res, fmt.Errorf("kill %d: %w", rep+1, err)
		}
		res.Kills = append(res.Kills, r)
		deadAll = append(deadAll, time.Duration(r.DeadAll))
		b.logf("failure detection (%s, %s): %s suspect %s..%s, dead %s..%s", b.o.fdMode, profile, r.Killed,
			r.SuspectFirst, r.SuspectAll, r.DeadFirst, r.DeadAll)
	}
	res.DeadAll = summarize(deadAll)
	return res, nil
}

func (b *bench) fdRound(ctx context.Context, profile string) (fdRound, error) {
	var r fdRound
	nodes, err := b.newNodes(b.o.fdN, 0, b.o.fdMode, profile, "")
	if err != nil {
		return r, err
	}
	defer b.closeNodes(nodes)
	for _, n := range nodes {
		for _, o := range nodes {
			if o != n {
				n.cfg.Peers = append(n.cfg.Peers, o.peerConfig())
			}
		}
	}
	if err := b.start(ctx, nodes); err != nil {
		return r, err
	}
	leader := ""
	if b.o.fdMode == qcluster.ModeLeader {
		for _, n := range nodes {
			wctx, cancel := context.WithTimeout(ctx, b.o.timeout)
			l, err := n.c.WaitForLeader(wctx)
			cancel()
			if err != nil {
				return r, fmt.Errorf("%s: no leader: %w", n.id, err)
			}
			leader = l.Identifier
		}
	}
	if _, err := b.waitFor(ctx, "every peer sees every peer alive", func(time.Time) bool { return allAlive(nodes) }); err != nil {
		return r, err
	}
	// Kill the last peer that does not lead, so only gossip is measured.
	vi := len(nodes) - 1
	for nodes[vi].id == leader {
		vi--
	}
	victim := nodes[vi]
	survivors := slices.Delete(slices.Clone(nodes), vi, vi+1)
	r.Killed = victim.id
	suspect := make([]time.Time, len(survivors))
	dead := make([]time.Time, len(survivors))
	t0 := time.Now()
	b.close(victim.c)
	_, err = b.waitFor(ctx, victim.id+" dead on every survivor", func(now time.Time) bool {
		done := true
		for i, s := range survivors {
			if !dead[i].IsZero() {
				continue
			}
			m, _ := member(s.c.Peers(), victim.id)
			switch m.Health {
			case qcluster.HealthSuspect:
				if suspect[i].IsZero() {
					suspect[i] = now
				}
			case qcluster.HealthDead:
				if suspect[i].IsZero() {
					suspect[i] = now // the suspicion fell between two polls
				}
				dead[i] = now
				continue
			}
			done = false
		}
		return done
	})
	if err != nil {
		return r, err
	}
	span := func(ts []time.Time) (first, last msDur) {
		lo, hi := slices.MinFunc(ts, time.Time.Compare), slices.MaxFunc(ts, time.Time.Compare)
		return msDur(lo.Sub(t0)), msDur(hi.Sub(t0))
	}
	r.SuspectFirst, r.SuspectAll = span(suspect)
	r.DeadFirst, r.DeadAll = span(dead)
	return r, nil
}

// masterless runs measurement 3 for one size, and the kill when asked.
func (b *bench) masterless(ctx context.Context, n int, kill bool) (masterlessSize, *killResult, error) {
	res := masterlessSize{Peers: n, Profile: b.o.profile}
	var before, after runtime.MemStats
	debug.FreeOSMemory() // a GC, and what the heap does not use back to the OS
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	nodes, err := b.newNodes(n, 0, qcluster.ModeMasterless, b.o.profile, "")
	if err != nil {
		return res, nil, err
	}
	defer func() {
		b.closeNodes(nodes)
		// Let the goroutines of the closed peers drain before the next size.
		_, _ = b.waitFor(ctx, "goroutines drained", func(time.Time) bool { return runtime.NumGoroutine() <= g0+2 })
	}()
	// Seeds: p0, p1 and the predecessor (p0 and p1 take p2 instead of
	// themselves).
	for i, nd := range nodes {
		var seeds []int
		for _, s := range []int{0, 1, i - 1, 2} {
			if s >= 0 && s != i && !slices.Contains(seeds, s) && len(seeds) < 3 {
				seeds = append(seeds, s)
			}
		}
		for _, s := range seeds {
			nd.cfg.Peers = append(nd.cfg.Peers, nodes[s].peerConfig())
		}
	}
	t0 := time.Now()
	if err := b.start(ctx, nodes); err != nil {
		return res, nil, err
	}
	res.Start = msDur(time.Since(t0))
	at, err := b.waitFor(ctx, fmt.Sprintf("all %d peers alive on every peer", n), func(time.Time) bool { return allAlive(nodes) })
	if err != nil {
		return res, nil, err
	}
	res.Converge = msDur(at.Sub(t0))
	debug.FreeOSMemory()
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	res.HeapInuse = after.HeapInuse
	res.HeapInusePerPeer = sub(after.HeapInuse, before.HeapInuse) / uint64(n)
	res.HeapAllocPerPeer = sub(after.HeapAlloc, before.HeapAlloc) / uint64(n)
	res.SysPerPeer = sub(after.Sys, before.Sys) / uint64(n)
	res.HeldPerPeer = sub(after.Sys-after.HeapReleased, before.Sys-before.HeapReleased) / uint64(n)
	res.GoroutinesPeer = float64(g1-g0) / float64(n)
	b.logf("masterless %d (%s): converged after %s; per peer %s heap in use, %s live heap, %s sys (%s not released), %.1f goroutines",
		n, b.o.profile, res.Converge, fmtBytes(res.HeapInusePerPeer), fmtBytes(res.HeapAllocPerPeer),
		fmtBytes(res.SysPerPeer), fmtBytes(res.HeldPerPeer), res.GoroutinesPeer)
	if !kill {
		return res, nil, nil
	}
	k, err := b.killOwner(ctx, nodes)
	return res, k, err
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// killOwner closes one peer of a converged masterless cluster and follows
// the owners of a fixed key set on every survivor.
func (b *bench) killOwner(ctx context.Context, nodes []*node) (*killResult, error) {
	keys := make([]string, b.o.keys)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	owners := func(n *node) []string {
		ids := make([]string, len(keys))
		for i, k := range keys {
			if p, ok := n.c.Owner(k); ok {
				ids[i] = p.Identifier
			}
		}
		return ids
	}
	// agree reports whether every node of ns gives every key the same
	// owner, and returns those owners.
	agree := func(ns []*node) ([]string, bool) {
		ref := owners(ns[0])
		for _, n := range ns[1:] {
			if !slices.Equal(owners(n), ref) {
				return ref, false
			}
		}
		return ref, true
	}
	base, ok := agree(nodes)
	if !ok {
		return nil, errors.New("the converged peers disagree on the owners of the keys")
	}
	vi := len(nodes) / 2
	victim := nodes[vi]
	survivors := slices.Delete(slices.Clone(nodes), vi, vi+1)
	var victimKeys []string
	for i, k := range keys {
		if base[i] == victim.id {
			victimKeys = append(victimKeys, k)
		}
	}
	res := &killResult{Peers: len(nodes), Killed: victim.id, Keys: len(keys), KilledKeys: len(victimKeys)}
	moved := make([]bool, len(survivors))
	dead := make([]bool, len(survivors))
	var deadAt, movedAt time.Time
	t0 := time.Now()
	b.close(victim.c)
	at, err := b.waitFor(ctx, "survivors agree without "+victim.id, func(now time.Time) bool {
		for i, s := range survivors {
			if !dead[i] {
				m, _ := member(s.c.Peers(), victim.id)
				dead[i] = m.Health == qcluster.HealthDead
			}
			if !moved[i] {
				moved[i] = !slices.ContainsFunc(victimKeys, func(k string) bool {
					p, ok := s.c.Owner(k)
					return !ok || p.Identifier == victim.id
				})
			}
		}
		if deadAt.IsZero() && !slices.Contains(dead, false) {
			deadAt = now
		}
		if movedAt.IsZero() && !slices.Contains(moved, false) {
			movedAt = now
		}
		if movedAt.IsZero() {
			return false
		}
		res.AgreeChecks++
		cur, ok := agree(survivors)
		if !ok {
			return false
		}
		res.OtherMoved = 0
		for i := range keys {
			if base[i] != victim.id && cur[i] != base[i] {
				res.OtherMoved++
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if deadAt.IsZero() { // the keys moved before the poll saw every survivor report it dead
		deadAt = at
	}
	res.DeadAll, res.MovedAll, res.AgreedAll = msDur(deadAt.Sub(t0)), msDur(movedAt.Sub(t0)), msDur(at.Sub(t0))
	b.logf("masterless kill: %s of %d: dead on all after %s, its %d keys moved on all after %s, agreement after %s",
		victim.id, len(nodes), res.DeadAll, len(victimKeys), res.MovedAll, res.AgreedAll)
	return res, nil
}

func printHeader(w io.Writer, rep *report, o options) {
	fmt.Fprintf(w, "QCluster registry benchmark (issue #4): %s\n", strings.Join(rep.Args, " "))
	fmt.Fprintf(w, "%s %s/%s, GOMAXPROCS %d, NumCPU %d, %s; every peer in this one process, on 127.0.0.1\n",
		rep.GoVersion, rep.GOOS, rep.GOARCH, rep.GOMAXPROCS, rep.NumCPU, rep.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "polling every %v (the resolution of every time below)\n\n", o.poll)
}

func printJoin(w io.Writer, rs []joinResult, o options) {
	fmt.Fprintf(w, "1. Join-to-visible (leader mode, default timings): 3 founders, then %d peers join one at a time\n", o.joins)
	fmt.Fprintln(w, "   through one running peer each (rotating); Start call -> every running peer lists it as a voter")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   tls\tjoins\tmin\tp50\tp90\tmax\tmean\tStart call p50\t")
	for _, r := range rs {
		s := r.Visible
		fmt.Fprintf(tw, "   %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", onOff(r.TLS), s.N, s.Min, s.P50, s.P90, s.Max, s.Mean, r.Start.P50)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func printFD(w io.Writer, rs []fdResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "2. Failure detection (%s mode, %d peers): Close() of one %s -> survivors' Peers() show it\n",
		rs[0].Mode, rs[0].Peers, map[bool]string{true: "follower", false: "peer"}[rs[0].Mode == qcluster.ModeLeader])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   profile\tkill\tsuspect first\tsuspect all\tdead first\tdead all\t")
	for _, r := range rs {
		for i, k := range r.Kills {
			fmt.Fprintf(tw, "   %s\t%d (%s)\t%s\t%s\t%s\t%s\t\n", r.Profile, i+1, k.Killed, k.SuspectFirst, k.SuspectAll, k.DeadFirst, k.DeadAll)
		}
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   profile\tkills\tdead all: min\tp50\tmax\tmean\t")
	for _, r := range rs {
		s := r.DeadAll
		fmt.Fprintf(tw, "   %s\t%d\t%s\t%s\t%s\t%s\t\n", r.Profile, s.N, s.Min, s.P50, s.Max, s.Mean)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func printMasterless(w io.Writer, rs []masterlessSize, k *killResult) {
	fmt.Fprintln(w, "3. Masterless convergence and memory: N peers start concurrently (seeds p0, p1, predecessor)")
	fmt.Fprintln(w, "   -> every peer sees all N alive; memory = growth of the process / N (after debug.FreeOSMemory)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   peers\tprofile\tStart calls\tconverged\tHeapInuse/peer\tHeapAlloc/peer\tSys/peer\tSys-HeapReleased/peer\tgoroutines/peer\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "   %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", r.Peers, r.Profile, r.Start, r.Converge,
			fmtBytes(r.HeapInusePerPeer), fmtBytes(r.HeapAllocPerPeer), fmtBytes(r.SysPerPeer), fmtBytes(r.HeldPerPeer),
			r.GoroutinesPeer)
	}
	tw.Flush()
	if k != nil {
		fmt.Fprintf(w, "   kill %s of %d (Close): dead on all survivors %s; none of %d survivors' Owner returns it for its %d of %d keys %s;\n",
			k.Killed, k.Peers, k.DeadAll, k.Peers-1, k.KilledKeys, k.Keys, k.MovedAll)
		fmt.Fprintf(w, "   all survivors agree on every owner %s; keys it did not own that moved: %d\n", k.AgreedAll, k.OtherMoved)
	}
	fmt.Fprintln(w)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	default:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	}
}

func fmtBytes(n uint64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
}

// orderResult is measurement 4: masterless peers whose only seed, the
// contact, starts after them (issue 16's goal: all see all alive within
// 3 s of the contact's start, not at gossip's periodic rejoin 30 s later).
type orderResult struct {
	Peers   int     `json:"peers"`
	Profile string  `json:"profile"`
	Rounds  []msDur `json:"rounds_ms"`
	All     stats   `json:"all_alive"`
}

// startOrder runs measurement 4.
func (b *bench) startOrder(ctx context.Context) (orderResult, error) {
	res := orderResult{Peers: b.o.orderN, Profile: cmp.Or(qcluster.DefaultConfig().GossipProfile, "default")}
	var took []time.Duration
	for range b.o.orderReps {
		d, err := b.orderRound(ctx)
		if err != nil {
			return res, err
		}
		took = append(took, d)
		res.Rounds = append(res.Rounds, msDur(d))
	}
	res.All = summarize(took)
	return res, nil
}

// orderRound starts p1..pN-1 with p0 as their only seed, then p0, and
// returns how long after p0's Start began every peer saw all N alive.
func (b *bench) orderRound(ctx context.Context) (time.Duration, error) {
	nodes, err := b.newNodes(b.o.orderN, 0, qcluster.ModeMasterless, qcluster.DefaultConfig().GossipProfile, "")
	if err != nil {
		return 0, err
	}
	defer b.closeNodes(nodes)
	// The contact's port is free until it starts: a bound port that does
	// not accept would hang the others' joins instead of refusing them.
	contact := nodes[0]
	contact.cfg.Listener.Close()
	contact.cfg.Listener = nil
	for _, n := range nodes[1:] {
		n.cfg.Peers = []qcluster.PeerConfig{contact.peerConfig()}
	}
	if err := b.start(ctx, nodes[1:]); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := b.start(ctx, nodes[:1]); err != nil {
		return 0, err
	}
	at, err := b.waitFor(ctx, fmt.Sprintf("all %d peers alive on every peer", len(nodes)), func(time.Time) bool { return allAlive(nodes) })
	if err != nil {
		return 0, err
	}
	b.logf("start order: %d peers saw all alive %s after the contact's start", len(nodes), fmtDur(at.Sub(t0)))
	return at.Sub(t0), nil
}

func printOrder(w io.Writer, r orderResult) {
	fmt.Fprintf(w, "4. Start order: %d masterless peers (gossip profile %s) whose only seed starts after them\n", r.Peers, r.Profile)
	fmt.Fprintf(w, "   -> every peer sees all %d alive, from the contact's Start: min %s, p50 %s, max %s over %d rounds (goal: 3s)\n\n",
		r.Peers, r.All.Min, r.All.P50, r.All.Max, r.All.N)
}
