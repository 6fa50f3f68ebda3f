//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package storage

import "os"

// unlock is a no-op here: a file that made bbolt panic stays locked until
// the process exits.
func unlock(*os.File) {}
