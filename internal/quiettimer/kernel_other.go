//go:build !linux

package quiettimer

import "time"

// newKernelTimer reports false: only Linux has a timerfd.
func newKernelTimer(func(gen uint64)) (mechanism, bool) { return nil, false }

// newKernelTicker reports false: only Linux has a timerfd.
func newKernelTicker(time.Duration, func()) (func(), bool) { return nil, false }
