//go:build unix

package qcluster

import (
	"io/fs"
	"syscall"
)

// cfgFileOwner returns the user ID that owns the file fi describes.
func cfgFileOwner(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
