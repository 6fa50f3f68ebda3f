//go:build multihost && linux

package multihost

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// uswitch is the data network in user space, for kernels without sch_netem
// (CONFIG_NET_SCH_NETEM unset, as on this project's CI machines): each
// host's eth0 is a TAP device whose other end this process holds, and a
// learning switch forwards Ethernet frames between them. It emulates
// `tc qdisc add dev eth0 root netem delay D J` on every host: each frame a
// host sends is delivered after D ± J, drawn uniformly per frame as netem
// does (so frames may be reordered). It also makes partitions: ports
// forward only to ports of the same segment, checked when a frame is
// delivered, so frames in flight across a new cut are lost as on a wire.
type uswitch struct {
	ports []*os.File
	wg    sync.WaitGroup

	mu      sync.Mutex
	segment []int // per port; -1: isolated
	macs    map[[6]byte]int
	delay   time.Duration
	jitter  time.Duration
	rng     *rand.Rand

	forwarded, dropped atomic.Int64
}

// newUswitch creates a TAP device named eth0 in each host namespace and
// starts forwarding between them.
func newUswitch(hostNS []string) (*uswitch, error) {
	sw := &uswitch{
		segment: make([]int, len(hostNS)),
		macs:    map[[6]byte]int{},
		rng:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	for _, ns := range hostNS {
		var f *os.File
		err := inNetns(ns, func() (err error) {
			f, err = openTap("eth0")
			return err
		})
		if err != nil {
			sw.close()
			return nil, fmt.Errorf("TAP device in %s: %w", ns, err)
		}
		sw.ports = append(sw.ports, f)
	}
	for i := range sw.ports {
		sw.wg.Add(1)
		go sw.read(i)
	}
	return sw, nil
}

// openTap creates TAP device name in the calling thread's network
// namespace. The device lives as long as the returned file is open.
func openTap(name string) (*os.File, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var ifr [40]byte // struct ifreq: name[16], flags (short)
	copy(ifr[:15], name)
	binary.NativeEndian.PutUint16(ifr[16:], syscall.IFF_TAP|syscall.IFF_NO_PI)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); errno != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	// Non-blocking: os.NewFile makes it pollable, so Close stops a Read.
	return os.NewFile(uintptr(fd), "tap-"+name), nil
}

// inNetns runs fn on an OS thread that has entered network namespace ns,
// then returns the thread to its own namespace (or, if that fails, lets the
// runtime destroy it).
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = setns(target)
		target.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if setns(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func (sw *uswitch) read(i int) {
	defer sw.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := sw.ports[i].Read(buf)
		if err != nil {
			return
		}
		if n >= 14 {
			sw.forward(i, append([]byte(nil), buf[:n]...))
		}
	}
}

// forward sends a frame that host src sent to the port of its destination
// MAC address (learnt from the frames each port sent), or to every other
// port for a broadcast, multicast or unknown address, after the delay.
func (sw *uswitch) forward(src int, frame []byte) {
	var dst, from [6]byte
	copy(dst[:], frame[0:6])
	copy(from[:], frame[6:12])
	sw.mu.Lock()
	if from[0]&1 == 0 {
		sw.macs[from] = src
	}
	var to []int
	if p, ok := sw.macs[dst]; ok && dst[0]&1 == 0 {
		if p != src {
			to = append(to, p)
		}
	} else {
		for p := range sw.ports {
			if p != src {
				to = append(to, p)
			}
		}
	}
	d := sw.delay
	if sw.jitter > 0 {
		d += time.Duration(sw.rng.Int64N(int64(2*sw.jitter)+1)) - sw.jitter
	}
	sw.mu.Unlock()
	deliver := func() {
		for _, p := range to {
			sw.mu.Lock()
			ok := sw.segment[src] >= 0 && sw.segment[src] == sw.segment[p]
			sw.mu.Unlock()
			if !ok {
				sw.dropped.Add(1)
				continue
			}
			if _, err := sw.ports[p].Write(frame); err == nil {
				sw.forwarded.Add(1)
			}
		}
	}
	if d <= 0 {
		deliver()
	} else {
		time.AfterFunc(d, deliver)
	}
}

// setSegments puts port i in segment seg[i]; -1 isolates it.
func (sw *uswitch) setSegments(seg []int) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	copy(sw.segment, seg)
}

// setDelay makes every frame wait delay ± jitter (uniform).
func (sw *uswitch) setDelay(delay, jitter time.Duration) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.delay, sw.jitter = delay, jitter
}

// close removes the TAP devices and stops forwarding.
func (sw *uswitch) close() {
	for _, f := range sw.ports {
		f.Close()
	}
	sw.wg.Wait()
}
