package consensus

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/qcluster/qcluster/internal/clock"
)

// bootClockID is the clock the node clock reads on Linux: CLOCK_BOOTTIME,
// CLOCK_MONOTONIC plus the time spent in suspend.
const bootClockID = unix.CLOCK_BOOTTIME

// bootClock returns a reader of CLOCK_BOOTTIME, or nil when the kernel
// does not offer it (it has since Linux 2.6.39, older than Go supports).
func bootClock() func() time.Duration {
	if _, err := readClock(bootClockID); err != nil {
		return nil
	}
	return func() time.Duration {
		d, err := readClock(bootClockID)
		if err != nil {
			// The kernel answered a moment ago and can only fail for a
			// bad clock ID or address, neither of which changes.
			panic(fmt.Sprintf("consensus: clock_gettime(CLOCK_BOOTTIME): %v", err))
		}
		return clock.FromOrigin(d) // > 0 even in a time namespace that starts it at 0
	}
}

// readClock reads clock id with a raw system call: Go's vDSO clock reads
// do not offer CLOCK_BOOTTIME, and x/sys/unix.ClockGettime enters the
// scheduler like every syscall.Syscall, which wakes the runtime's monitor
// thread from its deep sleep on an idle process (see package quietconn).
// clock_gettime never blocks.
func readClock(id int32) (time.Duration, error) {
	var ts unix.Timespec
	if _, _, e := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, uintptr(id), uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, e
	}
	return time.Duration(ts.Nano()), nil
}
