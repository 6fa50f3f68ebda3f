// Package loglimit keeps a flood of the same event from flooding the log:
// the first occurrence in each period is logged at its level, the others
// at debug level (or not at all), so an attacker or a broken peer cannot
// fill the disk, and an operator still sees that it happens.
//
//	var refusals loglimit.Limiter // zero value: once a second
//	if refusals.Allow(time.Now()) {
//		log.Warn("stream refused", "err", err)
//	} else {
//		log.Debug("stream refused", "err", err)
//	}
package loglimit

import (
	"sync/atomic"
	"time"
)

// DefaultPeriod is the period of a Limiter whose Period is zero.
const DefaultPeriod = time.Second

// Limiter allows one event per period. Its zero value allows one a second.
// It is safe for concurrent use and takes no lock: of callers racing at
// the start of a period exactly one is allowed.
type Limiter struct {
	// Period is the shortest time between two allowed events
	// (DefaultPeriod when zero). Set it before the first Allow.
	Period time.Duration

	last atomic.Int64 // UnixNano of the last allowed event; 0: none yet
}

// Allow reports whether the event at now is the first of its period (at
// least Period after the last one allowed), and if so starts a new period.
func (l *Limiter) Allow(now time.Time) bool {
	period := l.Period
	if period <= 0 {
		period = DefaultPeriod
	}
	t := now.UnixNano()
	last := l.last.Load()
	if last != 0 && t-last < int64(period) {
		return false
	}
	return l.last.CompareAndSwap(last, t)
}
