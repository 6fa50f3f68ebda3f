package clock

import "time"

// Anchor ties a reading of the node clock to a reading of time.Now, taken
// right before it, as time.Now's two clocks: Mono, the monotonic reading
// (since an origin of the caller's), which stops while the machine is
// suspended, and Wall, the wall clock (Unix nanoseconds), which counts
// suspend but can be stepped. It lets a hot path (IsLeader) estimate the
// node clock from time.Now alone (NodeNow).
type Anchor struct {
	Mono time.Duration
	Wall int64
	Node time.Duration
}

// NodeNow estimates the node clock (consensus.NewClock: CLOCK_BOOTTIME on
// Linux) at the reading (mono, wall) of time.Now, taken after a, without
// reading it: a read of CLOCK_BOOTTIME is a system call, too slow for
// IsLeader. The estimate is the node clock at the anchor plus the time
// since, by whichever clock of time.Now says more:
//
//	a.Node + max(mono - a.Mono, wall - a.Wall)
//
// It never lags the node clock, so a lease judged by it ends no later than
// the node loop judges it:
//   - a.Node was read after a.Mono and a.Wall, so it is at least the node
//     clock then;
//   - without a suspend the node clock advances exactly as the monotonic
//     clock does (CLOCK_BOOTTIME is CLOCK_MONOTONIC plus the time spent
//     suspended; both run at the same, NTP-adjusted, rate);
//   - across a suspend the monotonic clock stops, but on resume the kernel
//     adds the time slept to the wall clock and to CLOCK_BOOTTIME alike, so
//     the wall term covers it;
//   - a wall clock stepped forward makes the estimate run ahead: the lease
//     ends early (safe), until the next tick publishes a new anchor;
//   - a wall clock stepped backwards makes the wall term small: the
//     monotonic term still covers the time that passed.
//
// Only a suspend and a backward step of the wall clock between the same
// two ticks make it lag, by at most the step, until the node loop's first
// tick after the resume. Where the node clock is Go's monotonic clock
// (not Linux), the estimate runs ahead of it after a suspend, but only
// until that tick, which judges the lease by the monotonic clock again
// (see consensus.NewClock).
func (a Anchor) NodeNow(mono time.Duration, wall int64) time.Duration {
	return a.Node + max(mono-a.Mono, time.Duration(wall-a.Wall))
}
