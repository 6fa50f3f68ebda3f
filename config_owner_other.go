//go:build !unix

package qcluster

import "io/fs"

// cfgFileOwner reports no owner: there is no user ID to compare with here
// (Windows), so cfgPrepareDataDir checks no owner.
func cfgFileOwner(fs.FileInfo) (uid int, ok bool) { return 0, false }
