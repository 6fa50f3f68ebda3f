//go:build !linux

package idleprocs

import "time"

// processCPU is not implemented here: Run returns ErrUnsupported.
func processCPU() (time.Duration, error) { return 0, ErrUnsupported }

// machineStalled is not implemented here.
func machineStalled() (time.Duration, error) { return 0, ErrUnsupported }
