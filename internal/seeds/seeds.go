// Package seeds keeps a peer's gossip joined to its seeds: the
// configured peers and the members the registry names, queued with Add
// and joined by Run, with backoff while the peer has joined no one (so
// the order in which peers start never matters).
package seeds

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/qcluster/qcluster/internal/backoff"
	"github.com/qcluster/qcluster/internal/loglimit"
	"github.com/qcluster/qcluster/internal/membership"
)

// Gossip is what the seed loop uses of the gossip membership
// (*membership.Membership is one).
type Gossip interface {
	// Join contacts the addresses and reports how many it reached.
	Join(ctx context.Context, addrs []string) (int, error)
	// Members returns the members gossip knows, this peer included.
	Members() []membership.Member
}

// Queue is a peer's gossip seeds waiting to be joined.
type Queue struct {
	self string // this peer's identifier (its gossip name)
	log  *slog.Logger

	mu    sync.Mutex // guards seeds
	seeds []string   // addresses waiting to be joined
	ch    chan struct{}
}

// New returns the empty queue of the peer named self.
func New(self string, log *slog.Logger) *Queue {
	return &Queue{self: self, log: log, ch: make(chan struct{}, 1)}
}

// Add queues addr for the gossip to join (and to rejoin periodically,
// should the two sides of a partition both declare the other dead). It
// never blocks.
func (q *Queue) Add(addr string) {
	q.mu.Lock()
	if !slices.Contains(q.seeds, addr) {
		q.seeds = append(q.seeds, addr)
	}
	q.mu.Unlock()
	select {
	case q.ch <- struct{}{}:
	default:
	}
}

// queuedSeeds moves the queued gossip seeds to pending.
func (q *Queue) queuedSeeds(pending []string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, a := range q.seeds {
		if !slices.Contains(pending, a) {
			pending = append(pending, a)
		}
	}
	q.seeds = nil
	return pending
}

// joinSeeds asks g to join each seed, one at a time, until ctx ends.
func joinSeeds(ctx context.Context, g Gossip, seeds []string) (reached, failed []string, errs []error) {
	for _, a := range seeds {
		if ctx.Err() != nil {
			return
		}
		if n, err := g.Join(ctx, []string{a}); err != nil {
			failed = append(failed, a)
			errs = append(errs, err)
		} else if n > 0 {
			reached = append(reached, a)
		}
	}
	return
}

// Timings of the seed loop: see Run.
const (
	// seedBackoffMin and seedBackoffMax bound the wait between two rounds
	// of joining the seeds while this peer has joined no one. The maximum
	// is low: such a peer has nothing else to do, and a round costs one
	// TCP connection attempt per seed.
	seedBackoffMin = 200 * time.Millisecond
	seedBackoffMax = time.Second
	// seedLogEvery rate-limits the log of failed rounds after the first.
	seedLogEvery = 30 * time.Second
	// settleEvery is the pause between two exchanges with the seeds while
	// settling.
	settleEvery = 300 * time.Millisecond
	// settleQuietRounds exchanges in a row that teach nothing end it.
	settleQuietRounds = 2
	// settleMax bounds it.
	settleMax = 10 * time.Second
)

// Run joins the queued gossip seeds with g until ctx ends.
//
// While this peer has joined no one yet (its gossip knows no other live
// member), the seeds it could not reach are tried again with a growing,
// jittered backoff (seedBackoffMin to seedBackoffMax), so peers started
// before their contacts find them within moments of their start, whatever
// the start order. Failed rounds are logged with the reason: the first at
// Warn, later ones at Info, at most once per seedLogEvery (with the count
// of attempts). Once this peer has joined someone, the seeds it could not
// reach are left to the gossip's periodic rejoin.
//
// A peer that had to wait for its seeds then settles: peers started before
// the same seed all join it within moments of its start, and those that
// join first would otherwise learn of the later ones only as gossip
// spreads (seconds with dozens of peers on a busy machine). So it
// exchanges its state with the seeds that answered again, every
// settleEvery (jittered), until settleQuietRounds exchanges in a row teach
// it no new member (or settleMax): a few TCP exchanges once, after a start
// in the wrong order.
func (q *Queue) Run(ctx context.Context, g Gossip) {
	bo := backoff.New(seedBackoffMin, seedBackoffMax)
	logEvery := loglimit.Limiter{Period: seedLogEvery}
	timer := time.NewTimer(time.Hour)
	timer.Stop() // armed only while retrying or settling (Go 1.23 timers: no stale tick after Stop)
	defer timer.Stop()
	var pending, settling []string
	var settleQuiet int
	var settleEnd time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.ch:
		case <-timer.C:
		}
		pending = q.queuedSeeds(pending)
		if len(pending) == 0 && len(settling) > 0 {
			before := liveMembers(g)
			_, _ = g.Join(ctx, settling)
			if liveMembers(g) > before {
				settleQuiet = 0
			} else {
				settleQuiet++
			}
			if settleQuiet >= settleQuietRounds || time.Now().After(settleEnd) {
				q.log.Debug("gossip: settled after a late join", "members", liveMembers(g))
				settling = nil
				continue
			}
			timer.Reset(backoff.New(settleEvery, settleEvery).Next())
			continue
		}
		reached, failed, errs := joinSeeds(ctx, g, pending)
		if ctx.Err() != nil {
			return
		}
		pending = nil
		if len(failed) == 0 || !q.alone(g) {
			if len(failed) > 0 {
				q.log.Debug("gossip: cannot reach some seeds now; the periodic rejoin retries them", "seeds", failed, "err", errors.Join(errs...))
			}
			switch {
			case bo.Attempts() > 0 && len(reached) > 0:
				q.log.Info("gossip: joined", "via", reached, "after_attempts", bo.Attempts()+1)
				settling, settleQuiet, settleEnd = reached, 0, time.Now().Add(settleMax)
				timer.Reset(backoff.New(settleEvery, settleEvery).Next())
			case len(settling) == 0:
				timer.Stop()
			} // else: a seed came while settling, whose timer still runs
			bo.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		pending = failed
		wait := bo.Next()
		level := slog.LevelInfo
		if bo.Attempts() == 1 {
			level = slog.LevelWarn
		}
		if allowed := logEvery.Allow(time.Now()); level == slog.LevelWarn || allowed {
			q.log.Log(ctx, level, "gossip: cannot reach any seed yet; retrying (are the configured peers up, with the same cluster_name and keys?)",
				"seeds", failed, "attempt", bo.Attempts(), "retry_in", wait.Round(time.Millisecond).String(), "err", errors.Join(errs...))
		}
		timer.Reset(wait)
	}
}

// liveMembers returns how many members (this one included) g reports
// live (alive or suspect).
func liveMembers(g Gossip) int {
	n := 0
	for _, m := range g.Members() {
		if m.State.Live() {
			n++
		}
	}
	return n
}

// alone reports whether g knows no other live (alive or suspect) member:
// this peer has joined no one yet, or lost everyone.
func (q *Queue) alone(g Gossip) bool {
	for _, m := range g.Members() {
		if m.Name != q.self && m.State.Live() {
			return false
		}
	}
	return true
}
