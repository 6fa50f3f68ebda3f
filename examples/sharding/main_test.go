package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
)

// TestConfigFiles checks that the shipped configs load, run masterless
// with the local gossip profile, and name each other.
func TestConfigFiles(t *testing.T) {
	ids := []string{"worker_a", "worker_b", "worker_c"}
	ports := map[string]int{}
	cfgs := map[string]qcluster.Config{}
	for _, id := range ids {
		cfg, err := qcluster.LoadConfig(id + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Identifier != id || cfg.Mode != qcluster.ModeMasterless || cfg.GossipProfile != qcluster.GossipLocal {
			t.Errorf("%s.json: identifier %q, mode %q, gossip_profile %q; want %q, %q, %q",
				id, cfg.Identifier, cfg.Mode, cfg.GossipProfile, id, qcluster.ModeMasterless, qcluster.GossipLocal)
		}
		ports[id] = cfg.ListenPort
		cfgs[id] = cfg
	}
	for _, id := range ids {
		var named []string
		for _, p := range cfgs[id].RemotePeers() {
			named = append(named, p.Identifier)
			if p.Port != ports[p.Identifier] {
				t.Errorf("%s.json: peer %s on port %d, but %s.json listens on %d", id, p.Identifier, p.Port, p.Identifier, ports[p.Identifier])
			}
		}
		slices.Sort(named)
		want := slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == id })
		if !slices.Equal(named, want) {
			t.Errorf("%s.json names the peers %v, want %v", id, named, want)
		}
	}
}

// TestRebalance checks the lines a worker prints as ownership changes.
func TestRebalance(t *testing.T) {
	var out bytes.Buffer
	w := &worker{self: "b", keys: keyNames(4), out: &out}
	owners := map[string]string{}
	owner := func(k string) (qcluster.Peer, bool) {
		id, ok := owners[k]
		return qcluster.Peer{Identifier: id}, ok
	}
	step := func(set map[string]string, want string) {
		t.Helper()
		owners = set
		out.Reset()
		w.rebalance(owner)
		if out.String() != want {
			t.Errorf("after %v, printed\n%s\nwant\n%s", set, out.String(), want)
		}
	}
	// The first view: only what it owns.
	step(map[string]string{"customer-0": "a", "customer-1": "b", "customer-2": "c", "customer-3": "b"},
		"b owns 2 keys: customer-1 customer-3\n")
	// Nothing of its own moved: nothing printed.
	step(map[string]string{"customer-0": "c", "customer-1": "b", "customer-2": "c", "customer-3": "b"}, "")
	// c died: b takes customer-2 over, and gives customer-3 to a.
	step(map[string]string{"customer-0": "a", "customer-1": "b", "customer-2": "b", "customer-3": "a"},
		"b took over customer-2 (was c)\nb released customer-3 (now a)\nb owns 2 keys: customer-1 customer-2\n")
	// No live member known.
	step(map[string]string{}, "b released customer-1 (now nobody)\nb released customer-2 (now nobody)\nb owns 0 keys:\n")
	step(map[string]string{"customer-0": "b"}, "b took over customer-0 (was nobody)\nb owns 1 keys: customer-0\n")
}

// The lines a worker prints (see the README).
var (
	ownsLine     = regexp.MustCompile(`^(\S+) owns (\d+) keys:((?: \S+)*)$`)
	tookOverLine = regexp.MustCompile(`^(\S+) took over (\S+) \(was (\S+)\)$`)
	releasedLine = regexp.MustCompile(`^(\S+) released (\S+) \(now (\S+)\)$`)
	otherLines   = []*regexp.Regexp{
		regexp.MustCompile(`^(\S+) started on (\S+), splitting (\d+) keys$`),
		regexp.MustCompile(`^(\S+) sees (\S+) (joined|updated|suspect|alive|failed|left)$`),
		regexp.MustCompile(`^(\S+) leaving the cluster$`),
		regexp.MustCompile(`^(\S+) left the cluster$`),
	}
)

// output collects a process's stdout and signals changed on every write.
type output struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan<- struct{}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	n, err := o.b.Write(p)
	o.mu.Unlock()
	select {
	case o.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// lines returns the complete lines written so far, from line from on.
func (o *output) lines(from int) []string {
	s := o.String()
	s = s[:strings.LastIndexByte(s, '\n')+1]
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if s == "" {
		lines = nil
	}
	return lines[min(from, len(lines)):]
}

// workerProc is one running sharding process.
type workerProc struct {
	id     string
	cmd    *exec.Cmd
	stdout *output
	stderr *output
	done   chan struct{} // closed when it has exited
}

func (p *workerProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// owned returns the keys of the last "owns" line p printed, or false.
func (p *workerProc) owned(t *testing.T) (map[string]bool, bool) {
	t.Helper()
	lines := p.stdout.lines(0)
	for i := len(lines) - 1; i >= 0; i-- {
		m := ownsLine.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		keys := strings.Fields(m[3])
		if m[1] != p.id || m[2] != strconv.Itoa(len(keys)) {
			t.Fatalf("%s printed %q", p.id, lines[i])
		}
		set := make(map[string]bool, len(keys))
		for _, k := range keys {
			set[k] = true
		}
		return set, true
	}
	return nil, false
}

// freePorts returns n distinct port numbers that were free a moment ago
// for TCP and for UDP: a peer serves TCP and gossips over UDP on the same
// number.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100 {
			t.Fatal("found no port free for both TCP and UDP in 100 tries")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, ln.Close)
		port := ln.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // that number is taken for UDP; keep the TCP port so it is not offered again
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports
}

// buildExample builds this example (with the race detector when the test
// has it) and returns the binary's path.
func buildExample(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build the example")
	}
	bin := filepath.Join(t.TempDir(), "sharding")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// startWorkers writes a masterless config per worker, on free ports, and
// starts the processes. Every write to their stdout signals changed.
func startWorkers(t *testing.T, bin string, nkeys int, changed chan<- struct{}) []*workerProc {
	t.Helper()
	dir := t.TempDir()
	ids := []string{"worker_a", "worker_b", "worker_c"}
	ports := freePorts(t, len(ids))
	procs := make([]*workerProc, len(ids))
	for i, id := range ids {
		var peers []qcluster.PeerConfig
		for j, o := range ids {
			if j != i {
				peers = append(peers, qcluster.PeerConfig{Host: "127.0.0.1", Port: ports[j], Identifier: o})
			}
		}
		cfg := qcluster.Config{Identifier: id, ListenHost: "127.0.0.1", ListenPort: ports[i], Peers: peers,
			Mode: qcluster.ModeMasterless, GossipProfile: qcluster.GossipLocal}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, id+".json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		p := &workerProc{id: id, stdout: &output{changed: changed}, stderr: &output{}, done: make(chan struct{})}
		p.cmd = exec.Command(bin, "-config", path, "-keys", strconv.Itoa(nkeys))
		p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			p.cmd.Wait()
			close(p.done)
		}()
		procs[i] = p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			<-p.done
			if t.Failed() {
				t.Logf("--- %s's stdout:\n%s--- %s's stderr:\n%s", p.id, p.stdout, p.id, p.stderr)
			}
		}
	})
	return procs
}

// split returns who owns each key when the last "owns" lines of procs
// cover keys exactly once each, or false.
func split(t *testing.T, procs []*workerProc, keys []string) (map[string]string, bool) {
	t.Helper()
	owner := make(map[string]string, len(keys))
	for _, p := range procs {
		set, ok := p.owned(t)
		if !ok {
			return nil, false
		}
		for k := range set {
			if _, dup := owner[k]; dup {
				return nil, false
			}
			owner[k] = p.id
		}
	}
	for _, k := range keys {
		if owner[k] == "" {
			return nil, false
		}
	}
	return owner, len(owner) == len(keys)
}

// waitSplit waits, reading the workers' output, until procs split keys
// exactly (see split), and returns the split. Every proc must keep running.
func waitSplit(t *testing.T, procs []*workerProc, keys []string, changed <-chan struct{}, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("%s exited: %v", p.id, p.cmd.ProcessState)
			}
		}
		if owner, ok := split(t, procs, keys); ok {
			return owner
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("the workers did not split the %d keys exactly within %v", len(keys), timeout)
		}
	}
}

// checkMoves checks that from before to after only the keys of gone moved,
// and that the survivors printed, after line marks[id], a "took over"
// line for each key they took from gone and no "released" line.
func checkMoves(t *testing.T, gone string, before, after map[string]string, survivors []*workerProc, marks map[string]int) {
	t.Helper()
	moved := map[string][]string{} // survivor -> keys taken over
	for k, was := range before {
		is := after[k]
		if is == was {
			continue
		}
		if was != gone {
			t.Errorf("%s moved from %s to %s, though only %s's keys should move", k, was, is, gone)
		}
		moved[is] = append(moved[is], k)
	}
	for _, p := range survivors {
		var took []string
		for _, l := range p.stdout.lines(marks[p.id]) {
			if m := tookOverLine.FindStringSubmatch(l); m != nil {
				took = append(took, m[2])
				if m[3] != gone {
					t.Errorf("%s: %q; only %s's keys should move", p.id, l, gone)
				}
			}
			if releasedLine.MatchString(l) {
				t.Errorf("%s: %q; a survivor should release nothing", p.id, l)
			}
		}
		slices.Sort(took)
		want := moved[p.id]
		slices.Sort(want)
		if !slices.Equal(took, want) {
			t.Errorf("%s printed that it took over %v, but its keys changed by %v", p.id, took, want)
		}
	}
}

// lineCounts returns how many complete lines each proc has printed.
func lineCounts(procs []*workerProc) map[string]int {
	m := map[string]int{}
	for _, p := range procs {
		m[p.id] = len(p.stdout.lines(0))
	}
	return m
}

func countOf(owner map[string]string, id string) int {
	n := 0
	for _, o := range owner {
		if o == id {
			n++
		}
	}
	return n
}

// TestExampleEndToEnd builds the example, starts three workers, waits
// until they split the keys, kills one with SIGKILL and waits until the
// two survivors have taken its keys over (and only its keys), then stops
// one survivor with SIGTERM (it leaves the cluster) and waits until the
// last worker owns every key.
func TestExampleEndToEnd(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("signals the example's processes with SIGKILL and SIGTERM")
	}
	if testing.Short() {
		t.Skip("waits for gossip to declare a killed worker dead (several seconds)")
	}
	const nkeys = 30
	keys := keyNames(nkeys)
	bin := buildExample(t)
	changed := make(chan struct{}, 1)
	started := time.Now()
	procs := startWorkers(t, bin, nkeys, changed)
	before := waitSplit(t, procs, keys, changed, 30*time.Second)
	t.Logf("the three workers split the %d keys %v after they started: worker_a %d, worker_b %d, worker_c %d",
		nkeys, time.Since(started).Round(time.Millisecond), countOf(before, "worker_a"), countOf(before, "worker_b"), countOf(before, "worker_c"))

	// SIGKILL the worker owning the most keys: it cannot say goodbye, so the
	// survivors wait for gossip to declare it dead.
	victim := procs[0]
	for _, p := range procs {
		if countOf(before, p.id) > countOf(before, victim.id) {
			victim = p
		}
	}
	var survivors []*workerProc
	for _, p := range procs {
		if p != victim {
			survivors = append(survivors, p)
		}
	}
	marks := lineCounts(survivors)
	killed := time.Now()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	after := waitSplit(t, survivors, keys, changed, 30*time.Second)
	t.Logf("killed %s (%d keys); %v later %s and %s own them all (%d and %d keys)",
		victim.id, countOf(before, victim.id), time.Since(killed).Round(time.Millisecond),
		survivors[0].id, survivors[1].id, countOf(after, survivors[0].id), countOf(after, survivors[1].id))
	checkMoves(t, victim.id, before, after, survivors, marks)

	// SIGTERM a survivor: it leaves the cluster, exits 0, and the last
	// worker takes its keys over at once (no failure detection to wait for).
	leaver, last := survivors[0], survivors[1]
	marks = lineCounts([]*workerProc{last})
	termed := time.Now()
	if err := leaver.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	final := waitSplit(t, []*workerProc{last}, keys, changed, 10*time.Second)
	tookOver := time.Since(termed)
	select {
	case <-leaver.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not exit within 10s of SIGTERM", leaver.id)
	}
	if code := leaver.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(leaver.stdout.String(), leaver.id+" left the cluster\n") {
		t.Fatalf("%s exited with %d after SIGTERM, without leaving the cluster", leaver.id, code)
	}
	t.Logf("SIGTERMed %s (%d keys); %v later %s owns all %d keys", leaver.id, countOf(after, leaver.id),
		tookOver.Round(time.Millisecond), last.id, countOf(final, last.id))
	checkMoves(t, leaver.id, after, final, []*workerProc{last}, marks)

	// Every line printed has one of the documented forms.
	for _, p := range procs {
		for _, l := range p.stdout.lines(0) {
			ok := ownsLine.MatchString(l) || tookOverLine.MatchString(l) || releasedLine.MatchString(l)
			for _, re := range otherLines {
				ok = ok || re.MatchString(l)
			}
			if !ok || !strings.HasPrefix(l, p.id+" ") {
				t.Errorf("%s printed %q, which is not one of the README's lines", p.id, l)
			}
		}
	}
}
