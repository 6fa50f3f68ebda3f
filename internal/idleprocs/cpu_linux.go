package idleprocs

import (
	"errors"
	"os"
	"strconv"
	"strings"
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

// machineStalled returns the time so far in which some task of the
// machine waited for a CPU: the "some" line's total (µs) of Linux's
// pressure stall information.
func machineStalled() (time.Duration, error) {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return 0, err
	}
	return parsePressure(string(b))
}

// errNoPressure is returned for a /proc/pressure file without a "some"
// total.
var errNoPressure = errors.New(`idleprocs: no "some ... total=" in /proc/pressure/cpu`)

// parsePressure reads the "some" total of a /proc/pressure file:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=123456
func parsePressure(s string) (time.Duration, error) {
	for line := range strings.Lines(s) {
		rest, ok := strings.CutPrefix(line, "some ")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				us, err := strconv.ParseUint(v, 10, 63)
				if err != nil {
					return 0, errNoPressure
				}
				return time.Duration(us) * time.Microsecond, nil
			}
		}
	}
	return 0, errNoPressure
}
