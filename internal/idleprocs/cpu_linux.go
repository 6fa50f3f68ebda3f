package idleprocs

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the CPU time the process has used so far, user and
// system. getrusage is a raw system call here (x/sys marks it sysnb): it
// does not wake the runtime's monitor thread (see internal/quietconn).
func processCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
