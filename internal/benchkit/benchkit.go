// Package benchkit holds what the benchmarks under bench/ share: their
// main (Main, ErrUsage), a process's CPU time and resident memory read from
// /proc, nearest-rank percentiles, and building the agent from the
// enclosing module.
package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ClockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/PID/stat: 100 on every mainstream Linux configuration.
const ClockTicksPerSecond = 100

// CPUTicks returns utime+stime of a process, in clock ticks (Linux only).
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU time (Linux only): %w", err)
	}
	return parseStatTicks(string(b))
}

// parseStatTicks returns utime+stime from the text of /proc/PID/stat.
func parseStatTicks(s string) (int64, error) {
	// The command name (field 2) is in parentheses and may hold spaces.
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/PID/stat: %q", s)
	}
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return ut + st, nil
}

// RSSKB returns VmRSS of a process, in kB (Linux only).
func RSSKB(pid int) (int64, error) { return StatusKB(pid, "VmRSS") }

// StatusKB returns a field of a process's /proc/PID/status given in kB
// (VmRSS, RssAnon, RssFile), in kB (Linux only).
func StatusKB(pid int, field string) (int64, error) {
	return procFieldKB(fmt.Sprintf("/proc/%d/status", pid), field)
}

// ClearReferenced clears the referenced bits of every page of a process
// (it writes 1 to /proc/PID/clear_refs), so that AnonReferencedKB counts
// only the pages the process touches from then on (Linux only; the
// process's owner or root).
func ClearReferenced(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("1"), 0); err != nil {
		return fmt.Errorf("clear the referenced bits (Linux only): %w", err)
	}
	return nil
}

// AnonReferencedKB returns how much of a process's anonymous memory — its
// heap, stacks and other memory not mapped from a file — is marked
// referenced: since ClearReferenced, the part of it the process touched,
// its working set. Resident pages it did not touch (memory it no longer
// uses) are left out. So are pages mapped from files (its binary, shared
// libraries), because their figure is not the process's own: the kernel
// also marks a page of a file referenced when another process that maps
// the same file runs it, so each of three members running one binary
// would count what all three ran (and libc's pages what any process on
// the machine ran). In kB, from /proc/PID/smaps (Linux only).
func AnonReferencedKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, fmt.Errorf("referenced memory (Linux only): %w", err)
	}
	return anonReferencedKB(string(b))
}

// anonReferencedKB sums the Referenced lines of the anonymous mappings in
// the text of /proc/PID/smaps: those with no path, or a path the kernel
// gives anonymous memory ([heap], [stack], [anon:NAME]).
func anonReferencedKB(smaps string) (int64, error) {
	var sum int64
	anon, seen := false, false
	for line := range strings.Lines(smaps) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if isMappingHeader(f) {
			seen = true
			path := strings.Join(f[5:], " ")
			anon = path == "" || path == "[heap]" || strings.HasPrefix(path, "[stack") || strings.HasPrefix(path, "[anon:")
			continue
		}
		if f[0] != "Referenced:" || !anon || len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected smaps line %q: %w", strings.TrimSpace(line), err)
		}
		sum += kb
	}
	if !seen {
		return 0, errors.New("no mappings in smaps")
	}
	return sum, nil
}

// isMappingHeader reports whether the fields of a line of smaps start a
// mapping ("00400000-00bf9000 r-xp 00000000 fe:00 9977998 /path").
func isMappingHeader(f []string) bool {
	if len(f) < 5 {
		return false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(lo, 16, 64)
	_, err2 := strconv.ParseUint(hi, 16, 64)
	return err1 == nil && err2 == nil
}

// procFieldKB returns the value of the line "field: N kB" of a /proc file.
func procFieldKB(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%s (Linux only): %w", field, err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}

// Percentile returns the p-th percentile of sorted ds (nearest rank).
func Percentile(ds []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// ModuleDir returns the root directory of the module the current
// directory belongs to, as `go env GOMOD` tells.
func ModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("cannot find the enclosing Go module (run from inside it): %v", err)
	}
	return filepath.Dir(gomod), nil
}

// BuildAgent builds ./cmd/qcluster of the enclosing module into bin.
func BuildAgent(ctx context.Context, bin string) error {
	dir, err := ModuleDir(ctx)
	if err != nil {
		return fmt.Errorf("cannot build ./cmd/qcluster (or pass -bin): %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/qcluster")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/qcluster: %v\n%s", err, b)
	}
	return nil
}

// ErrUsage marks a bad command line: Main exits with code 2 for it.
var ErrUsage = errors.New("usage")

// Main runs a benchmark command: run gets a context cancelled by SIGINT or
// SIGTERM, the arguments and the standard streams; Main prints run's error
// prefixed with name and exits 2 for ErrUsage, 1 for any other error, 0 for
// none or flag.ErrHelp.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// WorkDir makes a temporary directory for a benchmark's configs, logs and
// data. Its cleanup removes it, or, with keep, leaves it and prints where
// it is on stdout.
func WorkDir(prefix string, keep bool, stdout io.Writer) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	if keep {
		return dir, func() { fmt.Fprintf(stdout, "kept %s\n", dir) }, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// LoadAvg returns the 1-minute load average from /proc/loadavg, or "?".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
