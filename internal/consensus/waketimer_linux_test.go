package consensus

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// BenchmarkIdleFollowerWake is an idle follower's election timer in
// miniature: a byte arrives every 50 ms from another process (a shell
// loop: no timer of this process sends it), read with a raw system call
// (as internal/quietconn does), and a goroutine waiting on the timer and
// the messages moves its wake 150 ms past each one. It reports the
// process's context switches per message: with time.Timer.Reset the
// runtime still wakes at every stale deadline; wakeTimer takes a new timer
// instead.
//
//	go test -run - -bench IdleFollowerWake -benchtime 100x ./internal/consensus
func BenchmarkIdleFollowerWake(b *testing.B) {
	for _, tc := range []struct {
		name string
		loop func(in <-chan struct{}, done chan<- struct{})
	}{
		{"reset", func(in <-chan struct{}, done chan<- struct{}) {
			t := time.NewTimer(150 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
				case _, ok := <-in:
					if !ok {
						close(done)
						return
					}
				}
				t.Reset(150 * time.Millisecond)
			}
		}},
		{"wakeTimer", func(in <-chan struct{}, done chan<- struct{}) {
			clock := func() time.Duration { return time.Duration(time.Now().UnixNano()) }
			var w wakeTimer
			defer w.stop()
			w.set(clock()+150*time.Millisecond, clock())
			for {
				select {
				case <-w.c():
					w.fired()
				case _, ok := <-in:
					if !ok {
						close(done)
						return
					}
				}
				now := clock()
				w.set(now+150*time.Millisecond, now)
			}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			cmd := exec.Command("sh", "-c", "while :; do printf x || exit; sleep 0.05; done")
			cmd.Stdout = w
			if err := cmd.Start(); err != nil {
				b.Skipf("no shell: %v", err)
			}
			w.Close()
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			rc, err := r.SyscallConn()
			if err != nil {
				b.Fatal(err)
			}
			in, done := make(chan struct{}), make(chan struct{})
			go tc.loop(in, done)
			var buf [1]byte
			read := func() {
				var n uintptr
				var errno syscall.Errno
				err := rc.Read(func(fd uintptr) bool {
					n, _, errno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), 1)
					return errno != syscall.EAGAIN
				})
				if err != nil || errno != 0 || n != 1 {
					b.Fatalf("read: %v %v %d", err, errno, n)
				}
			}
			read() // the loop has started
			in <- struct{}{}
			before := benchSwitches(b)
			b.ResetTimer()
			for range b.N {
				read()
				in <- struct{}{}
			}
			b.StopTimer()
			b.ReportMetric(float64(benchSwitches(b)-before)/float64(b.N), "switches/msg")
			close(in)
			<-done
		})
	}
}

// benchSwitches is the process's context switches so far.
func benchSwitches(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Nvcsw + ru.Nivcsw
}
