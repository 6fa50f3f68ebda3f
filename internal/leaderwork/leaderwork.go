// Package leaderwork runs leader-scoped work: the machinery behind
// qcluster's RunWhileLeader and OnLeadership, which run work only while
// this peer holds the leader lease, and stop it the moment the lease is
// lost. Both follow one tenure at a time: a span during which IsLeader is
// true, from a gain to its loss. A tenure ends
//   - at the end of the lease, by a timer armed at the lease's end and
//     re-armed as the lease is renewed: a leader whose node loop stalls (a
//     stopped process, a stalled disk) sees its work cancelled when its
//     lease runs out, although no new view says so;
//   - at once when a view says this peer no longer holds the lease: a
//     transfer or a resignation drops the lease before the lease's end, a
//     higher term deposes the leader, Close hands leadership over;
//   - when the Cluster closes.
//
// The lease's end is read from the snapshot behind IsLeader (one atomic
// load, no lock), judged by the same estimate of the node clock, so a
// tenure ends when IsLeader turns false, give or take the timer's
// wake-up. Two peers' tenures do not overlap: the leases never do (see
// IsLeader), a view that drops the lease early ends the tenure before the
// messages that let another peer lead leave (Tracker.Check), and a lease
// that runs out leaves a gap of at least the drift margin and a tick
// (ElectionTimeout/10 + HeartbeatInterval/5) before another peer can be
// elected, far more than a timer's wake-up. What no timer can cover is a
// whole process stopped (SIGSTOP, a VM paused) in the middle of the work:
// it resumes with its timer overdue and may run a few instructions before
// leaderCtx ends. Writes that must never come from a deposed leader carry
// the term (LeaderTerm) as a fencing token.
package leaderwork

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrLeadershipLost is the cause (context.Cause) of a leader context
// that ended because this peer lost the leader lease (qcluster re-exports
// it).
var ErrLeadershipLost = errors.New("qcluster: leadership lost")

// Lease is what tenures read of the peer, as IsLeader judges it (one
// atomic load, no lock).
type Lease interface {
	// Left reports how long this peer still holds the lease at now (a
	// reading of time.Now), and its term; ok is false when it does not
	// hold it.
	Left(now time.Time) (left time.Duration, term uint64, ok bool)
	// Why says why the peer no longer holds the lease of term.
	Why(term uint64) Loss
}

// Loss is why a lease is no longer held.
type Loss int

// Losses.
const (
	LossRanOut      Loss = iota // the lease ran out
	LossClosed                  // the peer closed
	LossSteppedDown             // another term, or no longer the leader
	LossGaveUp                  // the lease was given up: a transfer, a failing health check
)

// Status is what Follow reads of each state of the peer's stream.
type Status struct {
	IsLeader  bool   // the peer held the lease when the state was taken
	Term      uint64 // the term
	HasLeader bool   // a leader is known
	Leader    string // its identifier
}

// Stream is the peer's stream of states, with how to read them.
type Stream[S any] struct {
	// States is the stream (one slot, always the latest); it is closed
	// when Follow's ctx ends or the peer closes.
	States <-chan S
	// Status reads a state.
	Status func(S) Status
	// Closed is the error Follow returns when States closes while its
	// ctx has not ended (the peer closed).
	Closed func() error
	// Retry is how often to look again for a gain that the stream shows
	// but the lease does not confirm yet.
	Retry time.Duration
}

// Follower is what Follow does at each gain, loss and new leader.
type Follower[S any] struct {
	// Work runs in its own goroutine at each gain (nil: none).
	Work func(ctx context.Context) error
	// CancelOnReturn ends Work's ctx when Work returns (RunWhileLeader);
	// otherwise it lasts until the loss (OnLeadership).
	CancelOnReturn bool
	// Stopped is called after each loss of a tenure Work ran in.
	Stopped func()
	// NewLeader is called with the state when the reported leader changes.
	NewLeader func(S)
}

// Follow turns the stream and the lease's timer into tenures of ts, until
// ctx ends (ctx.Err()), the stream closes (st.Closed()), or work returns an
// error that is not its ctx's end (that error).
func Follow[S any](ctx context.Context, ts *Tracker, st Stream[S], f Follower[S]) error {
	states := st.States
	var (
		curS    S             // the latest state the stream gave
		cur     Status        // st.Status(curS)
		t       *Tenure       // the current tenure, or nil
		running chan struct{} // open while work runs
		workErr error         // work's error that ends follow (set before running closes)
		leader  string        // the last leader given to newLeader
		retry   *time.Timer
		retryC  <-chan time.Time
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	endTenure := func(cause error) {
		t.Lose(cause)
		t.Release()
		t = nil
		if f.Stopped != nil {
			f.Stopped()
		}
	}
	// finish ends the tenure and waits for work, when follow returns.
	finish := func(cause error) {
		if t != nil {
			endTenure(cause)
		}
		if running != nil {
			<-running
		}
	}
	for {
		var lost <-chan struct{}
		if t != nil {
			lost = t.lost
		}
		select {
		case s, ok := <-states:
			if !ok {
				if ctx.Err() != nil {
					finish(context.Cause(ctx))
					if workErr != nil {
						return workErr
					}
					return ctx.Err()
				}
				err := st.Closed()
				finish(fmt.Errorf("%w: %w", ErrLeadershipLost, err))
				if workErr != nil {
					return workErr
				}
				return err
			}
			curS, cur = s, st.Status(s)
		case <-lost: // the lease ran out (the timer)
		case <-running:
			running = nil
			if workErr != nil {
				finish(context.Canceled)
				return workErr
			}
		case <-retryC:
			retryC = nil
		}
		// A loss: the timer said so, or the stream says this peer no
		// longer holds the lease of that term.
		if t != nil {
			switch {
			case t.IsLost():
				endTenure(nil)
			case !cur.IsLeader || cur.Term != t.term:
				endTenure(fmt.Errorf("%w: stepped down in term %d", ErrLeadershipLost, t.term))
			}
		}
		if f.NewLeader != nil && cur.HasLeader && cur.Leader != leader {
			leader = cur.Leader
			f.NewLeader(curS)
		}
		// A gain, judged by the snapshot at this instant (the stream may
		// be behind: a lease that ran out while the node loop stalled is
		// not published until it runs again). While the stream still says
		// leader and the snapshot does not, look again every heartbeat.
		if t == nil && running == nil && cur.IsLeader {
			if t = ts.Gain(ctx); t == nil {
				if retryC == nil {
					if retry == nil {
						retry = time.NewTimer(st.Retry)
					} else {
						retry.Reset(st.Retry)
					}
					retryC = retry.C
				}
			} else if f.Work != nil {
				running = make(chan struct{})
				go func(t *Tenure, done chan struct{}) {
					defer close(done)
					err := f.Work(t.ctx)
					if err != nil && !endedBy(t.ctx, err) {
						workErr = err
					}
					if f.CancelOnReturn {
						t.cancel(context.Canceled)
					}
				}(t, running)
			}
		}
	}
}

// endedBy reports whether err only says that ctx ended.
func endedBy(ctx context.Context, err error) bool {
	if ctx.Err() == nil {
		return false
	}
	if errors.Is(err, ctx.Err()) {
		return true
	}
	cause := context.Cause(ctx)
	return cause != nil && errors.Is(err, cause)
}

// Tenure is one span of leadership of this peer: from a gain, while the
// lease says it holds the lease of term, to the loss of it.
type Tenure struct {
	ts   *Tracker
	term uint64
	// ctx is the work's context; cancel ends it with a cause.
	ctx    *leaderContext
	cancel context.CancelCauseFunc
	// lost is closed at the loss.
	lost chan struct{}
	// end is the lease's end as last seen, as an offset from ts.base
	// (kept after the loss for Deadline).
	end atomic.Int64

	mu     sync.Mutex // guards timer, ended, lostAt and why
	timer  *time.Timer
	ended  bool
	lostAt time.Time      // when it ended
	why    error          // why it ended (lose's cause)
	fires  sync.WaitGroup // timer callbacks armed and not done
}

// Gain starts a tenure when this peer holds the lease now; nil otherwise.
// The tenure's context descends from parent. End it with Lose (Follow
// does), and unregister it with Release.
func (ts *Tracker) Gain(parent context.Context) *Tenure {
	_, term, ok := ts.lease.Left(time.Now())
	if !ok {
		return nil
	}
	t := &Tenure{ts: ts, term: term, lost: make(chan struct{})}
	cctx, cancel := context.WithCancelCause(parent)
	t.ctx, t.cancel = &leaderContext{Context: cctx, t: t}, cancel
	// Registered first, then checked: a view published before the
	// registration is seen by the check, one published after it by
	// Tracker.Check.
	ts.add(t)
	now := time.Now()
	left, ok := t.holds(now)
	if !ok {
		ts.remove(t)
		cancel(context.Canceled)
		return nil
	}
	t.end.Store(int64(now.Sub(ts.base) + left))
	t.mu.Lock()
	t.arm(left)
	t.mu.Unlock()
	return t
}

// Tracker holds a peer's live tenures. The peer calls Check on its node
// goroutine after it publishes a snapshot, and after it closes: a view
// that drops the lease (a transfer, a resignation, a step-down) ends the
// work before the messages that let another peer lead are sent
// (consensus.Loop.send publishes such a view first), so the work of two
// peers never overlaps, even when a transfer ends a lease early.
type Tracker struct {
	lease     Lease
	name      string    // the peer's identifier, for String
	errClosed error     // the cause under ErrLeadershipLost at LossClosed
	base      time.Time // origin of Tenure.end

	n  atomic.Int32 // len(m): Check's fast path takes no lock
	mu sync.Mutex
	m  map[*Tenure]struct{}
}

// NewTracker returns the tracker of the peer named name, whose lease is
// lease; errClosed is the error a tenure's cause wraps when the peer
// closes.
func NewTracker(name string, lease Lease, errClosed error) *Tracker {
	return &Tracker{lease: lease, name: name, errClosed: errClosed, base: time.Now()}
}

func (ts *Tracker) add(t *Tenure) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = make(map[*Tenure]struct{})
	}
	ts.m[t] = struct{}{}
	ts.n.Store(int32(len(ts.m)))
}

func (ts *Tracker) remove(t *Tenure) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.m, t)
	ts.n.Store(int32(len(ts.m)))
}

// Check ends every tenure whose lease the published snapshot no longer
// holds. It does not block: ending a tenure cancels a context.
func (ts *Tracker) Check() {
	if ts.n.Load() == 0 {
		return
	}
	now := time.Now()
	var lost []*Tenure
	ts.mu.Lock()
	for t := range ts.m {
		if _, ok := t.holds(now); !ok {
			lost = append(lost, t)
			delete(ts.m, t)
		}
	}
	ts.n.Store(int32(len(ts.m)))
	ts.mu.Unlock()
	for _, t := range lost {
		t.Lose(t.lossCause())
	}
}

// lossCause says why the peer no longer holds the tenure's lease.
func (t *Tenure) lossCause() error {
	switch t.ts.lease.Why(t.term) {
	case LossClosed:
		return fmt.Errorf("%w: %w", ErrLeadershipLost, t.ts.errClosed)
	case LossSteppedDown:
		return fmt.Errorf("%w: stepped down in term %d", ErrLeadershipLost, t.term)
	case LossGaveUp:
		return fmt.Errorf("%w: gave the lease up in term %d (a transfer, or a failing health check)", ErrLeadershipLost, t.term)
	default:
		return fmt.Errorf("%w: the lease ran out in term %d", ErrLeadershipLost, t.term)
	}
}

// holds is Lease.Left for this tenure's term.
func (t *Tenure) holds(now time.Time) (time.Duration, bool) {
	left, term, ok := t.ts.lease.Left(now)
	return left, ok && term == t.term
}

// arm sets the timer to fire after d. t.mu is held.
func (t *Tenure) arm(d time.Duration) {
	t.fires.Add(1)
	t.timer = time.AfterFunc(d, t.fire)
}

// fire runs at the lease's end as last seen: if the lease was renewed
// meanwhile it re-arms the timer at the new end, otherwise the tenure is
// lost.
func (t *Tenure) fire() {
	defer t.fires.Done()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	now := time.Now()
	if left, ok := t.holds(now); ok {
		t.end.Store(int64(now.Sub(t.ts.base) + left))
		t.arm(left)
		return
	}
	t.loseLocked(now, t.lossCause())
}

// Lose ends the tenure with cause, unless it has ended already.
func (t *Tenure) Lose(cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ended {
		t.loseLocked(time.Now(), cause)
	}
}

func (t *Tenure) loseLocked(now time.Time, cause error) {
	t.ended, t.lostAt, t.why = true, now, cause
	if t.timer.Stop() {
		t.fires.Done() // its callback will not run
	}
	// The lease ended now at the latest.
	t.end.Store(min(t.end.Load(), int64(now.Sub(t.ts.base))))
	close(t.lost)
	t.cancel(cause)
}

// IsLost reports whether the tenure has ended.
func (t *Tenure) IsLost() bool {
	select {
	case <-t.lost:
		return true
	default:
		return false
	}
}

// Release unregisters the tenure and waits until no timer callback of it
// runs. Call it after Lose, never from the timer.
func (t *Tenure) Release() {
	t.ts.remove(t)
	t.fires.Wait()
}

// Deadline is the lease's current end: moved forward while the lease is
// renewed, fixed at the loss.
func (t *Tenure) Deadline() time.Time {
	t.mu.Lock()
	ended := t.ended
	t.mu.Unlock()
	if !ended {
		now := time.Now()
		if left, ok := t.holds(now); ok {
			end := int64(now.Sub(t.ts.base) + left)
			t.end.Store(end)
			return t.ts.base.Add(time.Duration(end))
		}
	}
	return t.ts.base.Add(time.Duration(t.end.Load()))
}

// leaderContext is a tenure's context: a cancel context whose Deadline is
// the lease's current end. Embedding the standard cancel context keeps
// Done, Err, Value and context.Cause as they are, and lets contexts
// derived from it be cancelled without a goroutine.
type leaderContext struct {
	context.Context
	t *Tenure
}

// tenureKey is the context key of a leaderContext's tenure.
type tenureKey struct{}

// Value returns the tenure for tenureKey, and otherwise asks the parent.
func (l *leaderContext) Value(key any) any {
	if key == (tenureKey{}) {
		return l.t
	}
	return l.Context.Value(key)
}

// Term returns the term of the leadership ctx is scoped to, when ctx is
// (or descends from) a tenure's context; it stays the same after ctx ends.
func Term(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(tenureKey{}).(*Tenure)
	if !ok {
		return 0, false
	}
	return t.term, true
}

// Of returns the tenure behind ctx, a tenure's context or one that
// descends from it (nil: none).
func Of(ctx context.Context) *Tenure {
	t, _ := ctx.Value(tenureKey{}).(*Tenure)
	return t
}

// Why is why the tenure ended (nil while it lasts, or when only its
// context was cancelled: Follower.CancelOnReturn).
func (t *Tenure) Why() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.why
}

// Context is the tenure's context: cancelled at the loss, with the loss
// as its cause; its Deadline is the lease's current end.
func (t *Tenure) Context() context.Context { return t.ctx }

// LostAt is when the tenure ended (zero while it lasts).
func (t *Tenure) LostAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lostAt
}

// Deadline returns the lease's current end; see qcluster's RunWhileLeader.
func (l *leaderContext) Deadline() (time.Time, bool) { return l.t.Deadline(), true }

func (l *leaderContext) String() string {
	return fmt.Sprintf("qcluster.leaderCtx(%s, term %d)", l.t.ts.name, l.t.term)
}
