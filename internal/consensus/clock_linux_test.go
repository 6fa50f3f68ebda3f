package consensus

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"golang.org/x/sys/unix"

	"github.com/qcluster/qcluster/internal/storage"
)

// TestNodeClockIsBootTime checks that the node clock reads CLOCK_BOOTTIME,
// and that a Node without an injected clock uses it.
func TestNodeClockIsBootTime(t *testing.T) {
	now := NewClock()
	for range 100 {
		before := mustRead(t, unix.CLOCK_BOOTTIME)
		got := now() - time.Second
		after := mustRead(t, unix.CLOCK_BOOTTIME)
		if got < before || got > after {
			t.Fatalf("node clock read %v, outside CLOCK_BOOTTIME's %v..%v", got, before, after)
		}
	}
	n, err := NewNode(NodeConfig{Core: Config{ID: 1, Voters: []uint64{1}, Storage: storage.NewMemory(),
		HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 150 * time.Millisecond}, Transport: nopSender{}})
	if err != nil {
		t.Fatal(err)
	}
	before := mustRead(t, unix.CLOCK_BOOTTIME)
	got := n.Now() - time.Second
	after := mustRead(t, unix.CLOCK_BOOTTIME)
	if got < before || got > after {
		t.Fatalf("Node.Now read %v, outside CLOCK_BOOTTIME's %v..%v", got, before, after)
	}
}

// clockChildEnv marks the re-executed test binary that runs inside a time
// namespace.
const clockChildEnv = "QCLUSTER_TEST_CLOCK_CHILD"

// TestNodeClockCountsSuspend runs this test binary in a Linux time
// namespace whose boot-time clock is a day ahead of its monotonic clock,
// as a machine's is after a day of suspend: the node clock must be a day
// ahead of the monotonic clock there. (On a machine that has never been
// suspended the two clocks are equal, so only a namespace tells them
// apart.) It needs util-linux's unshare and permission to create a time
// namespace (a user namespace, or root); it is skipped without them.
func TestNodeClockCountsSuspend(t *testing.T) {
	const ahead = 24 * time.Hour
	if os.Getenv(clockChildEnv) != "" {
		mono := mustRead(t, unix.CLOCK_MONOTONIC)
		node := NewClock()()
		fmt.Printf("node clock ahead of CLOCK_MONOTONIC by %d ns\n", node-mono)
		return
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare command (util-linux): cannot make a time namespace")
	}
	args := []string{"--time", "--boottime", strconv.Itoa(int(ahead / time.Second)), os.Args[0], "-test.run=^TestNodeClockCountsSuspend$", "-test.count=1"}
	var out []byte
	var tries []string
	for _, user := range [][]string{{"--user", "--map-root-user"}, nil} {
		cmd := exec.Command(unshare, append(user, args...)...)
		cmd.Env = append(os.Environ(), clockChildEnv+"=1")
		out, err = cmd.CombinedOutput()
		if err == nil {
			break
		}
		tries = append(tries, fmt.Sprintf("%v: %v: %s", cmd.Args[:len(user)+4], err, out))
	}
	if err != nil {
		t.Skipf("cannot run in a time namespace here: %q", tries)
	}
	m := regexp.MustCompile(`node clock ahead of CLOCK_MONOTONIC by (-?\d+) ns`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the child did not report its clocks:\n%s", out)
	}
	ns, _ := strconv.ParseInt(string(m[1]), 10, 64)
	// The node clock adds 1s to CLOCK_BOOTTIME; the host's own suspends
	// only add to the difference.
	if d := time.Duration(ns); d < ahead {
		t.Fatalf("in a namespace whose CLOCK_BOOTTIME runs %v ahead of CLOCK_MONOTONIC, the node clock is only %v ahead: it does not count suspend", ahead, d)
	}
}

func mustRead(t *testing.T, id int32) time.Duration {
	t.Helper()
	d, err := readClock(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type nopSender struct{}

func (nopSender) Send([]raftpb.Message) {}
