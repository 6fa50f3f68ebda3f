// Package idleprocs runs a mostly idle process's Go code on one processor
// while it is idle, and gives the runtime its default number back as soon
// as the process gets busy.
//
// An idle QCluster agent wakes some twenty times a second (a lease round,
// gossip, timers), each time for a few microseconds of work. With
// GOMAXPROCS above one, every goroutine made ready from a running one
// (runtime.ready → wakep) wakes a second thread that spins, finds nothing
// and sleeps again; those wake-ups, not the work, are most of an idle
// peer's CPU. On one processor the runtime never wakes a second thread for
// Go code (issue 13, section 3: side by side on a 2-core machine, idle
// followers used 0.49 and 0.54 % of a core against 0.62 and 0.66 %). A busy agent (the HTTP API, KV writes) needs every
// processor, so the Governor samples the process's CPU time and moves
// between one processor and the runtime's default:
//
//   - a sampling period in which the process used more than Config.Busy of
//     one core, or in which the machine's tasks waited for a CPU
//     Config.Starved of the time or more, restores the default at once
//     (runtime.SetDefaultGOMAXPROCS, which also keeps the runtime's
//     automatic updates, such as a changed cgroup CPU limit);
//   - Config.IdleFor periods in a row under Config.Idle of one core, on a
//     machine not starved of CPU, go down to one (runtime.GOMAXPROCS(1)).
//
// Why the machine matters: on one processor, a thread that the kernel
// preempts (or a virtual CPU the hypervisor stops) while it holds the
// processor holds up every goroutine of the process, where with two the
// other thread runs them. On a CPU-starved machine (four busy loops on two
// cores, bench/compare -starve) agents on one processor were late enough
// to start elections in two idle minutes of three; on their default, in
// none of four. The machine's CPU pressure comes from Linux's pressure
// stall information (/proc/pressure/cpu, "some"); where it is missing
// only the process's own CPU time counts.
//
// Each move stops the world for a moment; the hysteresis keeps moves rare.
// A library must not change a process-wide setting behind its embedder's
// back: only the agent binary runs a Governor, and not when GOMAXPROCS is
// set in its environment (the operator chose).
package idleprocs

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"time"

	"github.com/qcluster/qcluster/internal/quiettimer"
)

// ErrUnsupported is returned by Run where the process's CPU time cannot be
// read (not Linux) and no Config.CPU is given.
var ErrUnsupported = errors.New("idleprocs: the process's CPU time cannot be read on this system")

// The defaults of Config's fields.
const (
	DefaultEvery   = time.Second
	DefaultBusy    = 0.2
	DefaultIdle    = 0.05
	DefaultIdleFor = 10
	DefaultStarved = 0.1
)

// Procs sets how many processors run Go code.
type Procs interface {
	// One runs Go code on one processor.
	One()
	// Default restores the runtime's default.
	Default()
}

// Runtime returns the Procs of this process's Go runtime.
func Runtime() Procs { return runtimeProcs{} }

type runtimeProcs struct{}

func (runtimeProcs) One()     { runtime.GOMAXPROCS(1) }
func (runtimeProcs) Default() { runtime.SetDefaultGOMAXPROCS() }

// Config tells a Governor when the process is idle or busy. Zero fields
// take the defaults.
type Config struct {
	// Every is how often the process's CPU time is sampled
	// (DefaultEvery).
	Every time.Duration
	// Busy is the share of one core above which a period is busy: the
	// governor restores the default at once (DefaultBusy).
	Busy float64
	// Idle is the share of one core below which a period is idle
	// (DefaultIdle).
	Idle float64
	// IdleFor is how many idle periods in a row move the process to one
	// processor (DefaultIdleFor).
	IdleFor int
	// Starved is the share of a period in which some task of the machine
	// waited for a CPU at or above which the machine is starved: the
	// period is busy (DefaultStarved).
	Starved float64
	// Procs is what the governor sets (default Runtime()).
	Procs Procs
	// CPU returns the CPU time (user and system) the process has used so
	// far (default: getrusage on Linux).
	CPU func() (time.Duration, error)
	// Stalled returns the time so far in which some task of the machine
	// waited for a CPU (default: /proc/pressure/cpu on Linux). A source
	// that fails leaves the machine out from then on.
	Stalled func() (time.Duration, error)
	// Logger receives a debug line for each move (default: none).
	Logger *slog.Logger
}

// withDefaults returns c with its zero fields set.
func (c Config) withDefaults() Config {
	if c.Every <= 0 {
		c.Every = DefaultEvery
	}
	if c.Busy <= 0 {
		c.Busy = DefaultBusy
	}
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.IdleFor <= 0 {
		c.IdleFor = DefaultIdleFor
	}
	if c.Starved <= 0 {
		c.Starved = DefaultStarved
	}
	if c.Procs == nil {
		c.Procs = Runtime()
	}
	if c.CPU == nil {
		c.CPU = processCPU
	}
	if c.Stalled == nil {
		c.Stalled = machineStalled
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Governor decides, one sampling period at a time, whether the process
// runs on one processor. It is not safe for concurrent use; Run drives one.
type Governor struct {
	cfg   Config
	one   bool // the process runs on one processor
	quiet int  // idle periods in a row
}

// NewGovernor returns a governor for cfg, starting at the runtime's
// default.
func NewGovernor(cfg Config) *Governor {
	return &Governor{cfg: cfg.withDefaults()}
}

// One reports whether the governor has moved the process to one processor.
func (g *Governor) One() bool { return g.one }

// Observe takes one sampling period of elapsed wall time, in which the
// process used cpu and some task of the machine waited for a CPU for
// stalled (zero when unknown). It moves the process when the period calls
// for it.
func (g *Governor) Observe(cpu, stalled, elapsed time.Duration) {
	if elapsed <= 0 {
		return
	}
	share := float64(cpu) / float64(elapsed)
	starved := float64(stalled) / float64(elapsed)
	switch {
	case share > g.cfg.Busy || starved >= g.cfg.Starved:
		g.quiet = 0
		if g.one {
			g.one = false
			g.cfg.Procs.Default()
			g.cfg.Logger.Debug("busy: Go code runs on the default number of processors again", "cpu_share", share, "machine_cpu_stalled", starved)
		}
	case share < g.cfg.Idle:
		g.quiet++
		if !g.one && g.quiet >= g.cfg.IdleFor {
			g.one = true
			g.cfg.Procs.One()
			g.cfg.Logger.Debug("idle: Go code runs on one processor", "cpu_share", share, "periods", g.quiet)
		}
	default:
		g.quiet = 0
	}
}

// Run governs the process until ctx ends, then restores the runtime's
// default before it returns ctx's error. It returns ErrUnsupported at once
// where the process's CPU time cannot be read, and the CPU source's error
// (after restoring the default) if a read fails. A Stalled source that
// fails is left out from then on.
func Run(ctx context.Context, cfg Config) error {
	g := NewGovernor(cfg)
	cfg = g.cfg
	last, err := cfg.CPU()
	if err != nil {
		return err
	}
	stalled := cfg.Stalled
	var lastStalled time.Duration
	if stalled != nil {
		if lastStalled, err = stalled(); err != nil {
			cfg.Logger.Debug("the machine's CPU pressure is unknown: only the process's CPU time counts", "err", err)
			stalled = nil
		}
	}
	defer func() {
		if g.one {
			cfg.Procs.Default()
		}
	}()
	lastAt := time.Now()
	// A quiettimer ticker: an idle process wakes once per sample, not
	// three times (package quiettimer).
	t := quiettimer.NewTicker(cfg.Every)
	defer t.Close()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
		}
		now, err := cfg.CPU()
		if err != nil {
			return err
		}
		var st time.Duration
		if stalled != nil {
			if st, err = stalled(); err != nil {
				cfg.Logger.Debug("the machine's CPU pressure cannot be read any more: only the process's CPU time counts", "err", err)
				stalled = nil
			}
		}
		at := time.Now()
		g.Observe(now-last, st-lastStalled, at.Sub(lastAt))
		last, lastStalled, lastAt = now, st, at
	}
}
