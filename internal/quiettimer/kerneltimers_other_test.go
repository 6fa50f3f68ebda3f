//go:build !linux

package quiettimer

const kernelTimers = false
