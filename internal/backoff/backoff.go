// Package backoff computes the waits between retries: exponential growth
// from a minimum to a maximum, with random jitter so that peers that
// failed together (started together, or lost the same contact) do not
// retry in lockstep.
//
//	b := backoff.New(200*time.Millisecond, 5*time.Second)
//	for {
//		if err := try(); err == nil {
//			return nil
//		}
//		if err := b.Wait(ctx); err != nil {
//			return err // ctx ended
//		}
//	}
//
// A Backoff is not safe for concurrent use; each retry loop owns one.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter is the fraction of each wait that is random: a nominal wait d
// becomes a uniform draw in [d*(1-Jitter), d*(1+Jitter)], never above the
// maximum.
const Jitter = 0.2

// Backoff is the state of one retry loop: the nominal wait doubles at every
// Next, from the minimum up to the maximum.
type Backoff struct {
	min, max time.Duration
	cur      time.Duration // the next nominal wait
	attempts int
}

// New returns a Backoff whose first wait is about lo and that never waits
// longer than hi (hi is raised to lo if lower; lo is at least 1ns).
func New(lo, hi time.Duration) *Backoff {
	lo = max(lo, 1)
	b := &Backoff{min: lo, max: max(hi, lo)}
	b.Reset()
	return b
}

// Reset starts over from the minimum (after a success).
func (b *Backoff) Reset() {
	b.cur = b.min
	b.attempts = 0
}

// Attempts returns how many waits Next has handed out since the last
// Reset: the number of failed attempts so far.
func (b *Backoff) Attempts() int { return b.attempts }

// Nominal returns the wait the next Next is drawn around, without jitter:
// the current step of the growth (a rate limit can use it as the interval).
func (b *Backoff) Nominal() time.Duration { return b.cur }

// Next returns the wait before the next attempt, with jitter, and doubles
// the nominal wait (up to the maximum).
func (b *Backoff) Next() time.Duration {
	d := b.cur
	b.attempts++
	if b.cur < b.max {
		b.cur = min(2*b.cur, b.max)
	}
	j := time.Duration((rand.Float64()*2 - 1) * Jitter * float64(d))
	return max(min(d+j, b.max), 1)
}

// Wait sleeps for Next(), or until ctx ends (then it returns ctx's error).
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
