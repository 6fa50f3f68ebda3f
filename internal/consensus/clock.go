package consensus

import (
	"time"

	"github.com/qcluster/qcluster/internal/clock"
)

// NewClock returns the node clock: the clock a Node's core judges leases,
// ticks and "heard from the leader" by (Config.Now), unless the caller
// injects another. Each reading is the time since an arbitrary origin,
// greater than zero, and never goes backwards. It takes no lock and does not
// allocate.
//
// A lease must end on time even when the leader's machine sleeps. On Linux
// the node clock is CLOCK_BOOTTIME, which keeps counting while the system is
// suspended: a leader that wakes from a suspend longer than its lease finds
// the lease over at its next reading, before it can renew it. Go's monotonic
// clock (CLOCK_MONOTONIC on Linux) stops during a suspend, so a leader
// judged by it would wake up believing in a lease the others have already
// outlived (and elected another leader). A reading of CLOCK_BOOTTIME is a
// system call (about a microsecond; the runtime's fast path covers only the
// wall and monotonic clocks), so only the node's loop reads it, once per
// tick or message: hot paths such as qcluster's IsLeader extrapolate from
// the loop's last reading instead.
//
// Elsewhere (macOS, Windows, the BSDs) the node clock is Go's monotonic
// clock, which may stop while the machine sleeps:
// there a leader whose machine is suspended for longer than its lease may,
// after it wakes, count the rest of its old lease as still running, while
// another peer already leads. Do not let leaders' machines sleep there.
func NewClock() func() time.Duration {
	if now := bootClock(); now != nil {
		return now
	}
	return clock.Monotonic()
}
