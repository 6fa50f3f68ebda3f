//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package storage

import (
	"os"
	"syscall"
)

// unlock releases bbolt's flock on f. Closing f is not enough after bbolt
// panicked: its memory map of the file keeps the lock alive.
func unlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
