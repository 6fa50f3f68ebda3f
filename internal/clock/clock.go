// Package clock is the one shape of the clocks QCluster injects: a
// reading is a time.Duration since an arbitrary origin, always greater than
// zero (so zero can mean "never"), that never goes backwards. Consensus
// judges leases by one (consensus.NewClock), the raft transport rate-limits
// by one; tests and the simulator inject their own.
package clock

import "time"

// Clock returns the time since its origin; every reading is > 0 and none
// is smaller than one before it. It takes no lock and does not allocate.
type Clock func() time.Duration

// Origin is added to every reading of the clocks of this package, so the
// first reading is at least Origin: zero stays free to mean "never", even
// in a time namespace whose clocks start at zero.
const Origin = time.Second

// Monotonic returns a Clock on Go's monotonic clock, starting at Origin
// now.
func Monotonic() Clock {
	base := time.Now()
	return func() time.Duration { return time.Since(base) + Origin }
}

// FromOrigin turns a reading of a system clock (which may start at zero)
// into one of a Clock.
func FromOrigin(d time.Duration) time.Duration { return d + Origin }
