// Package quiettimer is a one-shot timer for a deadline that moves on
// every event, such as a follower's election deadline, which every message
// from its leader pushes later.
//
// The Go runtime keeps its timers in a heap per processor, and a
// time.Timer reset to a later time keeps its old place in the heap until
// the old time comes: the runtime wakes a thread then, finds the timer
// moved and sleeps again. (Waiting in the network poller, it rounds its
// wait down to whole milliseconds, so that one wake is two.) A peer whose
// loop timer is reset after every message from its leader thus wakes for
// every other message once more, at a deadline that no longer exists: an
// idle follower's timer wakes were a fifth of its CPU (issue 13, section
// 3; 0.43–0.48 % of a core against 0.53–0.58 % side by side).
//
// On Linux a Timer is a timerfd: the kernel moves its deadline, and a
// goroutine waits for it in the network poller, so a deadline that moves
// before it is due costs one system call and no wake. Elsewhere, or when
// the kernel refuses a timerfd, it is a time.Timer.
package quiettimer
