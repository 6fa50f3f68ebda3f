package quiettimer

import (
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelTimer is a timerfd on CLOCK_MONOTONIC (the clock of Go's timers)
// and a goroutine that waits for it in the network poller. Its system
// calls are raw: none of them can block, and a raw call does not wake the
// runtime's monitor thread from its deep sleep (see package quietconn).
type kernelTimer struct {
	f    *os.File
	fd   uintptr
	done chan struct{} // closed when wait has returned
}

func newKernelTimer(expired func(gen uint64)) (mechanism, bool) {
	k, ok := openKernelTimer(expired)
	return k, ok
}

// newKernelTicker starts a periodic timerfd of period d that calls tick
// at every expiry; stop closes it.
func newKernelTicker(d time.Duration, tick func()) (stop func(), ok bool) {
	k, ok := openKernelTimer(func(uint64) { tick() })
	if !ok {
		return nil, false
	}
	p := unix.NsecToTimespec(int64(d))
	k.settime(&unix.ItimerSpec{Interval: p, Value: p})
	return k.close, true
}

func openKernelTimer(expired func(gen uint64)) (*kernelTimer, bool) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, false
	}
	// A non-blocking descriptor: os.NewFile adds it to the network poller.
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, false
	}
	k := &kernelTimer{f: f, fd: uintptr(fd), done: make(chan struct{})}
	go k.wait(rc, expired)
	return k, true
}

// wait reads the timerfd's expiries, waiting in the poller between them,
// until the file is closed. It reports each expiry from inside the
// RawConn's callback, where the descriptor is held open: stale reads it.
func (k *kernelTimer) wait(rc syscall.RawConn, expired func(gen uint64)) {
	defer close(k.done)
	var n [8]byte // the count of expiries since the last read or setting
	read := func(fd uintptr) bool {
		for {
			_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&n[0])), uintptr(len(n)))
			switch e {
			case 0:
				expired(0)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait in the poller
			default:
				// Reading 8 bytes from a timerfd without
				// TFD_TIMER_CANCEL_ON_SET has no other error.
				panic("quiettimer: reading a timerfd: " + e.Error())
			}
		}
	}
	_ = rc.Read(read) // returns when the file is closed
}

func (k *kernelTimer) settime(its *unix.ItimerSpec) {
	_, _, e := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, k.fd, 0, uintptr(unsafe.Pointer(its)), 0, 0, 0)
	if e != 0 {
		// Only a bad descriptor or value can fail, which this package
		// never passes.
		panic("quiettimer: timerfd_settime: " + e.Error())
	}
}

func (k *kernelTimer) set(d time.Duration, _ uint64) {
	k.settime(&unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))})
}

func (k *kernelTimer) stop() { k.settime(&unix.ItimerSpec{}) }

// stale reports whether the timerfd is armed again: a setting made since
// the expiry that was read. (A disarmed timerfd reads zero, as does one
// whose current setting has expired: Timer.armed tells those apart.)
func (k *kernelTimer) stale(_, _ uint64) bool {
	var cur unix.ItimerSpec
	_, _, e := syscall.RawSyscall(syscall.SYS_TIMERFD_GETTIME, k.fd, uintptr(unsafe.Pointer(&cur)), 0)
	return e == 0 && (cur.Value.Sec != 0 || cur.Value.Nsec != 0)
}

func (k *kernelTimer) close() {
	k.f.Close()
	<-k.done
}
