// Package quietconn wraps TCP connections so that their reads and writes
// are raw system calls, which do not wake the Go runtime's monitor thread.
//
// Every system call a goroutine makes through package syscall enters the
// scheduler (runtime.entersyscall), and when every P is idle the runtime's
// monitor thread (sysmon) sleeps in a deep sleep that this entry ends: it
// then polls every 20 µs until the process is idle again. On a peer that
// idles between lease rounds that is most of its thread wake-ups: a read
// and a write per round, each waking sysmon for nothing (issue 13, section
// 3: an idle follower's CPU). A read or a write on a non-blocking socket
// never blocks, so it may be a raw system call that leaves the scheduler
// out; when the socket is not ready the goroutine still waits in the
// network poller, through syscall.RawConn, with the connection's
// deadlines.
//
// Only Linux connections are wrapped; elsewhere Wrap returns its argument.
package quietconn
