//go:build !unix

package config

import "io/fs"

// fileOwner reports no owner: there is no user ID to compare with here
// (Windows), so PrepareDataDir checks no owner.
func fileOwner(fs.FileInfo) (uid int, ok bool) { return 0, false }
