//go:build !unix

package proccluster

import "syscall"

// sysProcAttr has nothing to set on this platform.
func sysProcAttr() *syscall.SysProcAttr { return nil }
