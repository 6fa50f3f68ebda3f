// Package quiettimer has timers that wake an idle process once when they
// fire, and not at all when their deadline moves: a one-shot Timer for a
// deadline that moves on every event, such as a follower's election
// deadline, which every message from its leader pushes later, and a
// Ticker for an idle loop's periodic checks.
//
// The Go runtime's timers cost an idle process more than their fire:
//
//   - A time.Timer reset to a later time keeps its old place in the
//     runtime's timer heap until the old time comes: the runtime wakes a
//     thread then, finds the timer moved and sleeps again. A peer whose
//     loop timer is reset after every message from its leader thus wakes
//     for every other message once more, at a deadline that no longer
//     exists.
//   - The runtime waits for its next timer in the network poller, in
//     whole milliseconds rounded down: it wakes just before the timer is
//     due, and again when it is.
//   - The runtime's monitor thread (sysmon) sleeps while every processor
//     is idle only until the next runtime timer: each one wakes it too.
//
// So an idle follower's timer wakes were a fifth of its CPU (issue 13,
// section 3: 0.48 and 0.55 % of a core against 0.65 and 0.68 %, side by
// side, with the consensus loop's timer alone moved here).
//
// On Linux a Timer or a Ticker is a timerfd: the kernel moves its
// deadline, and a goroutine waits for it in the network poller, so a
// deadline that moves before it is due costs one system call and no wake,
// and a fire wakes one thread once. Its system calls are raw, which do not
// wake the monitor thread either (see package quietconn). Each holds a
// file descriptor and a goroutine until Close. Elsewhere, or when the
// kernel refuses a timerfd, they are the runtime's timers.
package quiettimer
