//go:build unix && !linux

package proccluster

import "syscall"

// sysProcAttr puts an agent in its own process group, so a Ctrl-C in the
// terminal reaches only the controlling program, which then stops the agents.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
