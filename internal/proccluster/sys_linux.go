//go:build linux

package proccluster

import "syscall"

// sysProcAttr puts an agent in its own process group (a Ctrl-C in the
// terminal reaches only the controlling program, which then stops the
// agents) and asks the kernel to SIGKILL it if the controlling program dies
// without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
