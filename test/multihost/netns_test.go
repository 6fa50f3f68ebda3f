//go:build multihost && linux

package multihost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// nsPrefix starts the name of every namespace this suite creates; the pid
// of the test process follows it (see sweepStale).
const nsPrefix = "qcmh"

// runCmd runs a short command (ip, tc) with a time-out and returns an error
// that quotes the command and its output.
func runCmd(name string, args ...string) error {
	_, err := outputCmd(name, args...)
	return err
}

func outputCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// nsHost is one test host: a network namespace with a data and a
// management interface.
type nsHost struct {
	ns       string // namespace name
	dataIP   string // eth0's address: peers reach the agent here
	mgmtIP   string // mgmt0's address: the monitor reaches the agent here
	dataPort string // the switch's end of eth0's veth pair
}

// topology is a switch namespace and N host namespaces; see the package
// doc for the picture. The data network is a kernel bridge in the switch
// namespace, or, when user is set, the test process's user-space switch.
type topology struct {
	prefix string
	sw     string
	hosts  []nsHost
	made   []string // namespaces created, in order
	user   *uswitch
	seg    []int // user: the segment of each port
}

// Names inside the switch namespace.
const (
	dataBridge = "br0" // the data network
	sideBridge = "brp" // the far side of a partition
)

// newTopology creates the switch and n hosts, with the data network on a
// kernel bridge, or on a user-space switch when userspace is set. On error
// it removes what it made.
func newTopology(prefix string, n int, userspace bool) (tp *topology, err error) {
	tp = &topology{prefix: prefix, sw: prefix + "sw"}
	defer func() {
		if err != nil {
			tp.close()
		}
	}()
	addNS := func(name string) error {
		if err := runCmd("ip", "netns", "add", name); err != nil {
			return err
		}
		tp.made = append(tp.made, name)
		return runCmd("ip", "-n", name, "link", "set", "lo", "up")
	}
	if err := addNS(tp.sw); err != nil {
		return nil, err
	}
	if !userspace {
		for _, br := range []string{dataBridge, sideBridge} {
			if err := runAll(
				[]string{"-n", tp.sw, "link", "add", br, "type", "bridge", "stp_state", "0"},
				[]string{"-n", tp.sw, "link", "set", br, "up"},
			); err != nil {
				return nil, err
			}
		}
	}
	for i := range n {
		h := nsHost{
			ns:       fmt.Sprintf("%sh%d", prefix, i),
			dataIP:   fmt.Sprintf("10.213.0.%d", i+1),
			mgmtIP:   fmt.Sprintf("10.213.%d.2", 100+i),
			dataPort: fmt.Sprintf("d%d", i),
		}
		if err := addNS(h.ns); err != nil {
			return nil, err
		}
		tp.hosts = append(tp.hosts, h)
		if !userspace {
			// Data link: host eth0 <-> switch d<i>, on the data bridge.
			if err := runAll(
				[]string{"-n", tp.sw, "link", "add", h.dataPort, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
				[]string{"-n", tp.sw, "link", "set", h.dataPort, "master", dataBridge},
				[]string{"-n", tp.sw, "link", "set", h.dataPort, "up"},
			); err != nil {
				return nil, err
			}
		}
		mgmtPort := fmt.Sprintf("m%d", i)
		// Management link: host mgmt0 <-> switch m<i>, a point-to-point
		// subnet of its own, not bridged: hosts cannot use it to reach each
		// other.
		if err := runAll(
			[]string{"-n", tp.sw, "link", "add", mgmtPort, "type", "veth", "peer", "name", "mgmt0", "netns", h.ns},
			[]string{"-n", tp.sw, "addr", "add", fmt.Sprintf("10.213.%d.1/24", 100+i), "dev", mgmtPort},
			[]string{"-n", tp.sw, "link", "set", mgmtPort, "up"},
			[]string{"-n", h.ns, "addr", "add", h.mgmtIP + "/24", "dev", "mgmt0"},
			[]string{"-n", h.ns, "link", "set", "mgmt0", "up"},
		); err != nil {
			return nil, err
		}
	}
	if userspace {
		var names []string
		for _, h := range tp.hosts {
			names = append(names, h.ns)
		}
		if tp.user, err = newUswitch(names); err != nil {
			return nil, err
		}
		tp.seg = make([]int, n)
	}
	for _, h := range tp.hosts {
		if err := runAll(
			[]string{"-n", h.ns, "addr", "add", h.dataIP + "/24", "dev", "eth0"},
			[]string{"-n", h.ns, "link", "set", "eth0", "up"},
		); err != nil {
			return nil, err
		}
	}
	return tp, nil
}

func runAll(cmds ...[]string) error {
	for _, args := range cmds {
		if err := runCmd("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// isolate cuts host i off the data network: its link leaves every bridge,
// so its frames, and frames for it, are dropped.
func (tp *topology) isolate(i int) error {
	if tp.user != nil {
		tp.seg[i] = -1
		tp.user.setSegments(tp.seg)
		return nil
	}
	return runCmd("ip", "-n", tp.sw, "link", "set", tp.hosts[i].dataPort, "nomaster")
}

// split moves the given hosts to the partition's far side: they reach each
// other but none of the others.
func (tp *topology) split(side []int) error {
	if tp.user != nil {
		for _, i := range side {
			tp.seg[i] = 1
		}
		tp.user.setSegments(tp.seg)
		return nil
	}
	for _, i := range side {
		if err := runCmd("ip", "-n", tp.sw, "link", "set", tp.hosts[i].dataPort, "master", sideBridge); err != nil {
			return err
		}
	}
	return nil
}

// heal puts every host back on the data network.
func (tp *topology) heal() error {
	if tp.user != nil {
		clear(tp.seg)
		tp.user.setSegments(tp.seg)
		return nil
	}
	var errs []error
	for _, h := range tp.hosts {
		if err := runCmd("ip", "-n", tp.sw, "link", "set", h.dataPort, "master", dataBridge); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rejectTable is the nftables table reject adds in a host's namespace.
const rejectTable = "qcmhreject"

// reject cuts host i's peer port off the data network while its agent
// stays alive, the way a firewall that rejects does: an nftables table in
// the host's namespace answers every TCP packet to or from port on eth0
// with a TCP reset (`reject with tcp reset`: an established connection is
// reset, a connect is refused), in both directions, and every UDP packet
// (gossip) with an ICMP port unreachable. The resets the rules send out
// pass (nftables cannot reject a reset); the management link is left
// alone, so the monitor still sees the host.
func (tp *topology) reject(i, port int) error {
	p := strconv.Itoa(port)
	ruleset := `table inet ` + rejectTable + ` {
	chain in {
		type filter hook input priority 0; policy accept;
		iifname "eth0" tcp dport ` + p + ` reject with tcp reset
		iifname "eth0" tcp sport ` + p + ` reject with tcp reset
		iifname "eth0" udp dport ` + p + ` reject
		iifname "eth0" udp sport ` + p + ` reject
	}
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "eth0" tcp flags & rst == rst accept
		oifname "eth0" tcp dport ` + p + ` reject with tcp reset
		oifname "eth0" tcp sport ` + p + ` reject with tcp reset
		oifname "eth0" udp dport ` + p + ` reject
		oifname "eth0" udp sport ` + p + ` reject
	}
}
`
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tp.hosts[i].ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f in %s: %v: %s", tp.hosts[i].ns, err, out)
	}
	return nil
}

// unreject removes what reject added in host i.
func (tp *topology) unreject(i int) error {
	return runCmd("ip", "netns", "exec", tp.hosts[i].ns, "nft", "delete", "table", "inet", rejectTable)
}

// connectFrom makes one TCP connect from host from's namespace to host
// to's data address and port, and returns its error (nil if accepted).
func (tp *topology) connectFrom(from, to, port int) error {
	out, err := exec.Command("ip", "netns", "exec", tp.hosts[from].ns, "timeout", "2",
		"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", tp.hosts[to].dataIP, port)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netem delays every frame a host sends by delay ± jitter: with
// `tc qdisc replace dev eth0 root netem delay <delay> <jitter>` in every
// host, or in the user-space switch.
func (tp *topology) netem(delay, jitter time.Duration) error {
	if tp.user != nil {
		tp.user.setDelay(delay, jitter)
		return nil
	}
	for _, h := range tp.hosts {
		if err := runCmd("ip", "netns", "exec", h.ns, "tc", "qdisc", "replace", "dev", "eth0", "root",
			"netem", "delay", delay.String(), jitter.String()); err != nil {
			return err
		}
	}
	return nil
}

// netemKind says how netem delays frames.
func (tp *topology) netemKind() string {
	if tp.user != nil {
		return "user-space switch (this kernel has no sch_netem)"
	}
	return "tc netem on each host's eth0"
}

// close kills any process left in the namespaces and deletes them.
func (tp *topology) close() error {
	var errs []error
	if tp.user != nil {
		tp.user.close()
		tp.user = nil
	}
	for i := len(tp.made) - 1; i >= 0; i-- {
		if err := deleteNS(tp.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	tp.made = nil
	return errors.Join(errs...)
}

// deleteNS SIGKILLs every process in namespace name and deletes it.
func deleteNS(name string) error {
	if out, err := outputCmd("ip", "netns", "pids", name); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return runCmd("ip", "netns", "del", name)
}

var netemProbe struct {
	once sync.Once
	err  error
}

// netemSupported reports whether this kernel has the netem qdisc, by adding
// one to the loopback device of a probe namespace.
func netemSupported() error {
	netemProbe.once.Do(func() {
		name := fmt.Sprintf("%s%d-netem", nsPrefix, os.Getpid())
		if netemProbe.err = runCmd("ip", "netns", "add", name); netemProbe.err != nil {
			return
		}
		defer runCmd("ip", "netns", "del", name)
		netemProbe.err = runCmd("ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms")
	})
	return netemProbe.err
}

var staleName = regexp.MustCompile(`^` + nsPrefix + `(\d+)-`)

// sweepStale deletes the namespaces of earlier runs whose test process is
// gone (the pid in the name no longer exists). Namespaces of live runs,
// including parallel ones, are left alone.
func sweepStale() ([]string, error) {
	out, err := outputCmd("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		name := fields[0]
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || pidAlive(pid) {
			continue
		}
		if err := deleteNS(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// nsDialer opens TCP connections from inside a network namespace, for the
// monitor's HTTP client: one goroutine, locked to its OS thread, enters the
// namespace (setns) and makes every connection there; a socket stays in the
// namespace it was created in, so the connection is then used from any
// goroutine. The root namespace is never touched. On close the thread
// returns to its original namespace (or, if that fails, is destroyed).
type nsDialer struct {
	reqs     chan dialReq
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

type dialReq struct {
	ctx           context.Context
	network, addr string
	res           chan dialRes
}

type dialRes struct {
	conn net.Conn
	err  error
}

func newNSDialer(ns string) (*nsDialer, error) {
	d := &nsDialer{reqs: make(chan dialReq), stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go d.loop("/run/netns/"+ns, ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// setnsTrap is setns(2)'s system call number, which package syscall does
// not name.
var setnsTrap = map[string]uintptr{
	"amd64": 308, "arm64": 268, "riscv64": 268, "loong64": 268,
	"386": 346, "arm": 375, "ppc64le": 350, "ppc64": 350, "s390x": 339,
}

// setns moves the calling thread into the network namespace f.
func setns(f *os.File) error {
	trap, ok := setnsTrap[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("setns: system call number unknown on %s", runtime.GOARCH)
	}
	if _, _, errno := syscall.RawSyscall(trap, f.Fd(), syscall.CLONE_NEWNET, 0); errno != 0 {
		return errno
	}
	return nil
}

func (d *nsDialer) loop(path string, ready chan<- error) {
	defer close(d.done)
	runtime.LockOSThread()
	// No UnlockOSThread unless the thread is back in its own namespace: a
	// goroutine that exits locked takes its thread with it.
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		ready <- err
		return
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		ready <- err
		return
	}
	err = setns(target)
	target.Close()
	if err != nil {
		ready <- fmt.Errorf("setns %s: %w", path, err)
		return
	}
	ready <- nil
	var dialer net.Dialer
	for {
		select {
		case r := <-d.reqs:
			c, err := dialer.DialContext(r.ctx, r.network, r.addr)
			r.res <- dialRes{c, err}
		case <-d.stop:
			if setns(orig) == nil {
				runtime.UnlockOSThread()
			}
			return
		}
	}
}

// DialContext connects to addr from inside the namespace.
func (d *nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	r := dialReq{ctx: ctx, network: network, addr: addr, res: make(chan dialRes, 1)}
	select {
	case d.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.done:
		return nil, net.ErrClosed
	}
	res := <-r.res
	return res.conn, res.err
}

func (d *nsDialer) close() {
	d.stopOnce.Do(func() { close(d.stop) })
	<-d.done
}
