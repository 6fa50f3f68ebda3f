//go:build !linux

package quiettimer

// newKernelTimer reports false: only Linux has a timerfd.
func newKernelTimer(func(gen uint64)) (mechanism, bool) { return nil, false }
