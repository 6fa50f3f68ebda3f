//go:build multihost && linux

package multihost

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Flags; see the package doc.
var (
	flagBin    = flag.String("multihost.bin", os.Getenv("QCLUSTER_BIN"), "prebuilt qcluster binary (default: go build ./cmd/qcluster)")
	flagIdle   = flag.Duration("multihost.idle", defaultIdle(), "idle period of the netem scenario")
	flagReps   = flag.Int("multihost.reps", defaultReps(), "repetitions of each fault scenario")
	flagSample = flag.Duration("multihost.sample", 5*time.Millisecond, "monitor sampling period per peer (5ms-10ms)")
	flagLogDir = flag.String("multihost.logdir", os.Getenv("QCLUSTER_MULTIHOST_LOGDIR"), "directory to keep the agents' logs in (default: a temp dir)")
	flagSwitch = flag.String("multihost.switch", envOr("QCLUSTER_MULTIHOST_SWITCH", "auto"), "data network: kernel (bridge), user (user-space switch) or auto (kernel, user-space for netem where the kernel lacks sch_netem)")
	flagLevel  = flag.String("multihost.loglevel", envOr("QCLUSTER_MULTIHOST_LOGLEVEL", "info"), "the agents' --log-level")
	flagTrace  = flag.Bool("multihost.trace", false, "print every status transition the monitor saw")
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fullRun() bool { return os.Getenv("QCLUSTER_MULTIHOST_FULL") == "1" }

func defaultIdle() time.Duration {
	if s := os.Getenv("QCLUSTER_MULTIHOST_IDLE"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	if fullRun() {
		return 60 * time.Second
	}
	return 15 * time.Second
}

func defaultReps() int {
	if s := os.Getenv("QCLUSTER_MULTIHOST_REPS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	if fullRun() {
		return 10
	}
	return 3
}

// TestMain sweeps namespaces left by earlier runs that died, runs the
// tests, cleans up whatever a test left behind (also on SIGINT/SIGTERM) and
// prints the table of results.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() == 0 {
		if removed, err := sweepStale(); err != nil {
			fmt.Fprintf(os.Stderr, "multihost: sweeping stale namespaces: %v\n", err)
		} else if len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "multihost: removed stale namespaces %v\n", removed)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "multihost: %v: cleaning up\n", s)
		closeAllClusters()
		os.Exit(1)
	}()
	code := m.Run()
	closeAllClusters()
	printTable(os.Stdout)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// live holds every cluster not yet closed, so TestMain and the signal
// handler can clean up after a test that could not.
var live struct {
	sync.Mutex
	clusters map[*cluster]bool
}

func register(c *cluster) {
	live.Lock()
	defer live.Unlock()
	if live.clusters == nil {
		live.clusters = make(map[*cluster]bool)
	}
	live.clusters[c] = true
}

func unregister(c *cluster) {
	live.Lock()
	defer live.Unlock()
	delete(live.clusters, c)
}

func closeAllClusters() {
	live.Lock()
	cs := make([]*cluster, 0, len(live.clusters))
	for c := range live.clusters {
		cs = append(cs, c)
	}
	live.Unlock()
	for _, c := range cs {
		c.close()
	}
}

// requireHosts skips the test unless namespaced hosts can be made here:
// root, iproute2, and a probe namespace that can be added and deleted.
// tool names further commands the test needs (such as "tc").
func requireHosts(t *testing.T, tools ...string) {
	t.Helper()
	if reason := hostsUnavailable(tools...); reason != "" {
		if os.Getenv("QCLUSTER_MULTIHOST_REQUIRED") != "" {
			// .ci/multihost.sh, as root on Linux: a skip would leave CI
			// green without the suite.
			t.Fatal("multihost: cannot run: " + reason)
		}
		t.Skip("multihost: skipped: " + reason)
	}
}

var probe struct {
	once   sync.Once
	reason string
}

func hostsUnavailable(tools ...string) string {
	if runtime.GOOS != "linux" {
		return "needs Linux network namespaces"
	}
	if os.Geteuid() != 0 {
		return "needs root to create network namespaces (run as root, or use .ci/multihost.sh)"
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := map[string]string{"nft": "nftables"}[tool]
			if pkg == "" {
				pkg = "iproute2"
			}
			return tool + " (" + pkg + ") is not installed: apt-get install -y " + pkg
		}
	}
	probe.once.Do(func() {
		name := fmt.Sprintf("%s%d-probe", nsPrefix, os.Getpid())
		if err := runCmd("ip", "netns", "add", name); err != nil {
			probe.reason = "ip netns add does not work here: " + err.Error()
			return
		}
		if err := runCmd("ip", "netns", "del", name); err != nil {
			probe.reason = "ip netns del does not work here: " + err.Error()
		}
	})
	return probe.reason
}

// userspaceSwitch reports whether a cluster's data network is the
// user-space switch (see uswitch) rather than a kernel bridge: when
// -multihost.switch=user, or when netem is needed and the kernel has none
// (auto). It skips the test when netem is needed, the kernel has none and
// -multihost.switch=kernel.
func userspaceSwitch(t *testing.T, needNetem bool) bool {
	t.Helper()
	switch *flagSwitch {
	case "user":
		return true
	case "kernel":
		if err := netemSupported(); needNetem && err != nil {
			t.Skipf("multihost: skipped: no netem qdisc in this kernel and -multihost.switch=kernel: %v", err)
		}
		return false
	case "auto", "":
		if !needNetem {
			return false
		}
		if err := netemSupported(); err != nil {
			t.Logf("no netem qdisc in this kernel (%v): the data network is the test's user-space switch, which delays frames as netem would", err)
			return true
		}
		return false
	}
	t.Fatalf("-multihost.switch=%q: want kernel, user or auto", *flagSwitch)
	return false
}

var (
	binOnce sync.Once
	binPath string
	binDir  string
	binErr  error
)

// agentBinary returns the qcluster binary the agents run: -multihost.bin,
// or one built from ./cmd/qcluster once per run.
func agentBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if *flagBin != "" {
			binPath, binErr = filepath.Abs(*flagBin)
			return
		}
		binDir, binErr = os.MkdirTemp("", "qcluster-multihost-bin-")
		if binErr != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		binPath = filepath.Join(binDir, "qcluster")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", binPath, "github.com/qcluster/qcluster/cmd/qcluster")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/qcluster: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("multihost: no agent binary: %v", binErr)
	}
	if _, err := os.Stat(binPath); err != nil {
		t.Fatalf("multihost: agent binary: %v", err)
	}
	return binPath
}
