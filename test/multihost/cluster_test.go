//go:build multihost && linux

package multihost

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// agentPort is every agent's listen port (each host has its own stack).
const agentPort = 7000

// timings are a cluster's heartbeat interval and election timeout.
type timings struct {
	heartbeat, election time.Duration
}

// fastTimings are the seed's defaults; netemTimings leave room for
// 100ms ± 50ms of one-way latency (a round trip of up to 300ms).
var (
	fastTimings  = timings{heartbeat: 50 * time.Millisecond, election: 150 * time.Millisecond}
	netemTimings = timings{heartbeat: 100 * time.Millisecond, election: time.Second}
)

// cluster is N agents, one per host namespace, and a monitor sampling them.
type cluster struct {
	t     *testing.T
	label string
	tm    timings
	bin   string
	dir   string

	topo   *topology
	dialer *nsDialer
	mon    *monitor
	agents []*agent
	names  []string       // identifiers, by index
	index  map[string]int // identifier -> index

	netem     bool // scenarios run with latency (see scen.failover)
	closeOnce sync.Once
}

// agent is one peer's process (restarted as needed) and files.
type agent struct {
	id      string
	cfgPath string
	logPath string
	dataDir string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

var clusterSeq atomic.Int64

// newCluster builds the hosts, starts one agent on each and waits until
// they agree on a leader. Everything is torn down when the test ends,
// whether it passes, fails or panics.
func newCluster(t *testing.T, label string, n int, tm timings, userspace bool) *cluster {
	t.Helper()
	bin := agentBinary(t)
	seq := clusterSeq.Add(1)
	dir := t.TempDir()
	if *flagLogDir != "" {
		dir = filepath.Join(*flagLogDir, fmt.Sprintf("run%d-cluster%d", os.Getpid(), seq))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &cluster{t: t, label: label, tm: tm, bin: bin, dir: dir, index: map[string]int{}}
	register(c)
	t.Cleanup(c.close)

	topo, err := newTopology(fmt.Sprintf("%s%d-%d-", nsPrefix, os.Getpid(), seq), n, userspace)
	if err != nil {
		t.Fatalf("creating %d hosts: %v", n, err)
	}
	c.topo = topo
	c.dialer, err = newNSDialer(topo.sw)
	if err != nil {
		t.Fatalf("monitor dialer: %v", err)
	}

	var peers []map[string]any
	for i, h := range topo.hosts {
		id := fmt.Sprintf("h%d", i+1)
		c.names = append(c.names, id)
		c.index[id] = i
		peers = append(peers, map[string]any{
			"host": h.dataIP, "port": agentPort, "identifier": id,
			"metadata": map[string]any{"namespace": h.ns},
		})
	}
	var mgmt []string
	for i, h := range topo.hosts {
		a := &agent{
			id:      c.names[i],
			cfgPath: filepath.Join(dir, c.names[i]+".json"),
			logPath: filepath.Join(dir, c.names[i]+".log"),
			dataDir: filepath.Join(dir, c.names[i]+".data"),
		}
		cfg := map[string]any{
			"identifier":         a.id,
			"listen_host":        "0.0.0.0",
			"listen_port":        agentPort,
			"advertise_host":     h.dataIP,
			"peers":              peers,
			"data_dir":           a.dataDir,
			"heartbeat_interval": tm.heartbeat.String(),
			"election_timeout":   tm.election.String(),
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.cfgPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c.agents = append(c.agents, a)
		mgmt = append(mgmt, net.JoinHostPort(h.mgmtIP, strconv.Itoa(agentPort)))
	}
	c.mon = newMonitor(c.dialer.DialContext, mgmt, *flagSample)
	// Runs before c.close (cleanups run last-in first-out).
	t.Cleanup(c.dumpOnFailure)

	for i := range c.agents {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, ok := c.waitStable(0, c.stableTimeout()); !ok {
		t.Fatalf("%s: the agents did not agree on a leader within %v", label, c.stableTimeout())
	}
	network := "kernel bridge"
	if userspace {
		network = "user-space switch"
	}
	t.Logf("%s: hosts %s..%s on a %s, agents %s, heartbeat %v, election timeout %v, logs in %s",
		label, topo.hosts[0].ns, topo.hosts[n-1].ns, network, bin, tm.heartbeat, tm.election, dir)
	return c
}

// failoverBound is how soon after a fault the rest must agree on a new
// leader; stableTimeout is how long any wait for agreement may take.
func (c *cluster) failoverBound() time.Duration {
	if c.tm.election >= time.Second {
		return 5 * time.Second
	}
	return 2 * time.Second
}

func (c *cluster) stableTimeout() time.Duration { return 5*c.tm.election + 5*time.Second }

// stableFor is how long agreement must hold to count as stable.
func (c *cluster) stableFor() time.Duration { return max(5*c.tm.heartbeat, 250*time.Millisecond) }

// close kills the agents, stops the monitor and deletes the namespaces.
func (c *cluster) close() {
	c.closeOnce.Do(func() {
		defer unregister(c)
		if c.mon != nil {
			c.mon.close()
		}
		for _, a := range c.agents {
			a.mu.Lock()
			cmd, exited := a.cmd, a.exited
			a.mu.Unlock()
			if cmd != nil {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				select {
				case <-exited:
				case <-time.After(5 * time.Second):
				}
			}
		}
		if c.dialer != nil {
			c.dialer.close()
		}
		if c.topo != nil {
			if err := c.topo.close(); err != nil {
				fmt.Fprintf(os.Stderr, "multihost: cleanup: %v\n", err)
			}
		}
	})
}

// dumpOnFailure prints the tail of every agent's log when the test failed.
func (c *cluster) dumpOnFailure() {
	if !c.t.Failed() {
		return
	}
	for _, a := range c.agents {
		c.t.Logf("%s: last lines of %s:\n%s", c.label, a.logPath, tail(a.logPath, 40))
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// running reports whether agent i's process runs (or is stopped by
// SIGSTOP).
func (c *cluster) running(i int) bool {
	a := c.agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// start starts agent i in its namespace and waits until it answers the
// monitor.
func (c *cluster) start(i int) error {
	a := c.agents[i]
	if c.running(i) {
		return fmt.Errorf("%s is already running", a.id)
	}
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", c.topo.hosts[i].ns,
		c.bin, "agent", "--config", a.cfgPath, "--log-format", "json", "--log-level", *flagLevel,
		"--insecure") // private namespaces only: no token or TLS needed
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so signals reach the agent and only it; and the
	// kernel kills it if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	since := c.mon.now()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("starting %s: %w", a.id, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	a.mu.Lock()
	a.cmd, a.exited = cmd, exited
	a.mu.Unlock()

	dead := false
	_, ok := c.mon.waitUntil(since+10*time.Second, func(latest []sample) bool {
		select {
		case <-exited:
			dead = true
			return true
		default:
		}
		return latest[i].ok && latest[i].sent >= since
	})
	switch {
	case dead:
		return fmt.Errorf("agent %s exited at start:\n%s", a.id, tail(a.logPath, 20))
	case !ok:
		return fmt.Errorf("agent %s does not answer on %s:\n%s", a.id, c.mon.urls[i], tail(a.logPath, 20))
	}
	return nil
}

// signal sends sig to agent i's process group.
func (c *cluster) signal(i int, sig syscall.Signal) error {
	a := c.agents[i]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return fmt.Errorf("%s: not started", a.id)
	}
	return syscall.Kill(-a.cmd.Process.Pid, sig)
}

// waitExit waits until agent i's process has exited.
func (c *cluster) waitExit(i int, timeout time.Duration) error {
	a := c.agents[i]
	a.mu.Lock()
	exited := a.exited
	a.mu.Unlock()
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v", a.id, timeout)
	}
}

// kill SIGKILLs agent i and waits until it is gone.
func (c *cluster) kill(i int) error {
	if err := c.signal(i, syscall.SIGKILL); err != nil {
		return err
	}
	return c.waitExit(i, 5*time.Second)
}

// stop stops agent i cleanly (SIGTERM), or kills it if it does not exit
// within 5s.
func (c *cluster) stop(i int) error {
	if err := c.signal(i, syscall.SIGTERM); err != nil {
		return err
	}
	if err := c.waitExit(i, 5*time.Second); err != nil {
		_ = c.kill(i)
		return fmt.Errorf("SIGTERM: %w; killed it", err)
	}
	return nil
}

// reset brings the cluster back to health after a scenario that failed
// half-way: network healed, no netem, every agent continued and running.
func (c *cluster) reset() error {
	var errs []error
	if err := c.topo.heal(); err != nil {
		errs = append(errs, err)
	}
	for i := range c.agents {
		if c.running(i) {
			_ = c.signal(i, syscall.SIGCONT)
		} else if err := c.start(i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// agreedLeader returns the leader that every peer in set names in its
// latest sample, when every one of those samples was sent at or after since
// and the leader, a member of set, says is_leader.
func (c *cluster) agreedLeader(latest []sample, set []int, since time.Duration) (int, bool) {
	name := ""
	for _, i := range set {
		s := latest[i]
		if !s.ok || s.sent < since || s.st.leader() == "" {
			return -1, false
		}
		if name == "" {
			name = s.st.leader()
		} else if s.st.leader() != name {
			return -1, false
		}
	}
	l, known := c.index[name]
	if !known || !contains(set, l) || !latest[l].st.IsLeader {
		return -1, false
	}
	return l, true
}

func contains(set []int, x int) bool {
	for _, v := range set {
		if v == x {
			return true
		}
	}
	return false
}

// all returns every peer's index; others every index but the given ones.
func (c *cluster) all() []int { return c.others() }

func (c *cluster) others(except ...int) []int {
	var out []int
	for i := range c.agents {
		if !contains(except, i) {
			out = append(out, i)
		}
	}
	return out
}

// waitAgreed waits until the peers in set agree on a leader, with samples
// sent at or after since; it returns the leader and the monitor time at
// which their agreement was first observed.
func (c *cluster) waitAgreed(set []int, since, deadline time.Duration) (leader int, at time.Duration, ok bool) {
	leader = -1
	agreed := func(latest []sample) bool {
		var ok bool
		leader, ok = c.agreedLeader(latest, set, since)
		return ok
	}
	if _, ok = c.mon.waitUntil(deadline, agreed); !ok {
		return -1, 0, false
	}
	at, ok = c.mon.firstTrue(since, agreed)
	return leader, at, ok
}

// waitStable waits until every peer agrees on one leader, and has without
// a break for stableFor, with samples sent at or after since. It returns
// the leader, its term and the monitor time at which the agreement began.
func (c *cluster) waitStable(since, timeout time.Duration) (leader int, term uint64, at time.Duration, ok bool) {
	all := c.all()
	leader = -1
	prev := -1
	at, ok = c.mon.waitHeld(c.mon.now()+timeout, c.stableFor(), func(latest []sample) bool {
		l, agreed := c.agreedLeader(latest, all, since)
		if !agreed || (prev >= 0 && l != prev) {
			prev = l
			return false
		}
		prev, leader, term = l, l, latest[l].st.Term
		return true
	})
	return leader, term, at, ok
}

// holdFor lets a fault last for d while the monitor keeps sampling. It is
// the length of the fault under test, not a wait for some state: every
// state the test depends on is waited for with waitUntil.
func holdFor(d time.Duration) {
	if d > 0 {
		t := time.NewTimer(d)
		<-t.C
	}
}

// post sends POST path to agent i's API (on its management address) and
// expects 200.
func (c *cluster) post(i int, path string) error {
	hc := &http.Client{
		Transport: &http.Transport{DialContext: c.dialer.DialContext},
		Timeout:   30 * time.Second,
	}
	defer hc.CloseIdleConnections()
	url := strings.TrimSuffix(c.mon.urls[i], "/v1/status") + path
	resp, err := hc.Post(url, "application/json", nil)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// peerGoneLog is in the line the raft transport logs when it has proven a
// peer's process gone (a stream ended without a goodbye, then a refused
// connect; internal/transport, Config.PeerGone).
const peerGoneLog = "its process is gone"

// logCount counts the lines of agent i's log (over all its runs) that
// contain s.
func (c *cluster) logCount(i int, s string) int {
	b, err := os.ReadFile(c.agents[i].logPath)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// logCounts is logCount for every agent.
func (c *cluster) logCounts(s string) []int {
	n := make([]int, len(c.agents))
	for i := range c.agents {
		n[i] = c.logCount(i, s)
	}
	return n
}
