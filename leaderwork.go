package qcluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
)

// Leader-scoped work: RunWhileLeader and OnLeadership run work only while
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
// The lease's end is read from the snapshot behind IsLeader (one atomic
// load, no lock), judged by the same estimate of the node clock, so a
// tenure ends when IsLeader turns false, give or take the timer's
// wake-up. Two peers' tenures do not overlap: the leases never do (see
// IsLeader), a view that drops the lease early ends the tenure before the
// messages that let another peer lead leave (tenures.check), and a lease
// that runs out leaves a gap of at least the drift margin and a tick
// (ElectionTimeout/10 + HeartbeatInterval/5) before another peer can be
// elected, far more than a timer's wake-up. What no timer can cover is a
// whole process stopped (SIGSTOP, a VM paused) in the middle of the work:
// it resumes with its timer overdue and may run a few instructions before
// leaderCtx ends. Writes that must never come from a deposed leader carry
// the term (LeaderTerm) as a fencing token.

// ErrLeadershipLost is the cause (context.Cause) of a leader context
// that ended because this peer lost the leader lease: it ran out, was
// handed over, or the peer was deposed or closed. It is wrapped with %w,
// with the reason.
var ErrLeadershipLost = errors.New("qcluster: leadership lost")

// RunWhileLeader calls fn each time this peer gains leadership (IsLeader
// turns true), and waits. fn's leaderCtx is cancelled the moment the lease
// is lost, not at a later check: at the lease's end (a timer armed at it,
// re-armed as the lease is renewed, so a leader whose process or node
// loop stalls sees leaderCtx end when its lease runs out), or at once when
// the peer hands leadership over (Transfer, Resign, Close, a failing
// health check), is deposed, or closes. context.Cause(leaderCtx) then
// wraps ErrLeadershipLost. Two peers' leaderCtx lifetimes do not overlap
// (one limit: a process paused as a whole mid-work resumes with its
// timer overdue and may run a few instructions before leaderCtx ends;
// give writes the term, LeaderTerm, as a fencing token), and fn
// never runs twice at once on one peer: a new call waits until the
// previous one has returned.
//
// leaderCtx.Deadline reports the lease's current end. It moves forward
// while the lease is renewed (every heartbeat), so it is only a bound on
// how long this peer is certain to lead. Beware what follows from that: a
// context.WithTimeout(leaderCtx, d) whose deadline falls after the lease's
// current end is not given its own timer by the standard library (it
// assumes a parent's deadline never moves) and does not end at d while
// leadership lasts; derive the timeout from a context that does not
// descend from leaderCtx, or arm your own timer (see
// ExampleCluster_RunWhileLeader_timeout). Libraries that send the deadline
// on (gRPC) give the remote call only the lease's current remainder.
//
// What fn's return means:
//   - nil: the work is done for this tenure. RunWhileLeader cancels
//     leaderCtx and waits for the next gain; while this peer keeps its lease
//     fn is not called again (no spinning).
//   - an error: RunWhileLeader cancels leaderCtx and returns the error.
//     An error that only reports the end of leaderCtx (fn returned
//     leaderCtx.Err() or its cause after it ended) counts as nil.
//
// RunWhileLeader returns ctx.Err() when ctx ends, after leaderCtx (a child
// of ctx) has ended and fn has returned; ErrClosed when the Cluster is
// closed or stops on its own (wrapping Err); ErrMasterless in masterless
// mode, where no peer leads. It may be called before Start: it waits for
// the first gain.
func (c *Cluster) RunWhileLeader(ctx context.Context, fn func(leaderCtx context.Context) error) error {
	if c.cfg.Mode == ModeMasterless {
		return ErrMasterless
	}
	return c.follow(ctx, follower{work: fn, cancelOnReturn: true})
}

// LeaderCallbacks are the callbacks of OnLeadership, in the style of
// client-go's leader election. Any of them may be nil.
type LeaderCallbacks struct {
	// OnStartedLeading is called in a goroutine of its own each time this
	// peer gains leadership, with a context that is cancelled the moment
	// the lease is lost (as RunWhileLeader's leaderCtx, Deadline included)
	// or OnLeadership's stop is called. Returning early does not end the
	// tenure: ctx stays valid until the loss, so it may be handed to
	// goroutines. A new call waits until the previous one has returned.
	OnStartedLeading func(ctx context.Context)
	// OnStoppedLeading is called once for each OnStartedLeading, right
	// after that call's ctx is cancelled (it may still be returning).
	OnStoppedLeading func()
	// OnNewLeader is called with the leader this peer reports (Leader)
	// each time it becomes another peer, this one included; not when no
	// leader is known.
	OnNewLeader func(leader Peer)
}

// OnLeadership calls cb's callbacks as this peer gains and loses
// leadership and as the leader changes. OnStoppedLeading and OnNewLeader
// are called from one goroutine, in the order of the changes, never
// concurrently with each other; a slow callback delays the later ones
// (intermediate changes may then be skipped, as Watch does, never the
// latest). The callbacks run until stop is called or the Cluster closes.
//
// stop ends the callbacks: it cancels the ctx of a running
// OnStartedLeading, calls OnStoppedLeading when leading, waits until
// OnStartedLeading has returned, and returns when no goroutine of
// OnLeadership is left. It is idempotent, and must not be called from a
// callback. In masterless mode no peer leads: only stop does anything.
func (c *Cluster) OnLeadership(cb LeaderCallbacks) (stop func()) {
	if c.cfg.Mode == ModeMasterless {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := follower{stopped: cb.OnStoppedLeading, newLeader: cb.OnNewLeader}
	if cb.OnStartedLeading != nil {
		f.work = func(ctx context.Context) error {
			cb.OnStartedLeading(ctx)
			return nil
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.follow(ctx, f) // only ends with ctx or the Cluster
	}()
	return func() {
		cancel()
		<-done
	}
}

// follower is what follow does at each gain, loss and new leader.
type follower struct {
	// work runs in its own goroutine at each gain (nil: none).
	work func(ctx context.Context) error
	// cancelOnReturn ends work's ctx when work returns (RunWhileLeader);
	// otherwise it lasts until the loss (OnLeadership).
	cancelOnReturn bool
	// stopped is called after each loss of a tenure work ran in.
	stopped func()
	// newLeader is called when the reported leader changes.
	newLeader func(Peer)
}

// follow turns the Watch stream and the lease's timer into tenures, until
// ctx ends (ctx.Err()), the Cluster closes (ErrClosed), or work returns an
// error that is not its ctx's end (that error).
func (c *Cluster) follow(ctx context.Context, f follower) error {
	states := c.Watch(ctx)
	var (
		cur     State         // the latest state the stream gave
		t       *tenure       // the current tenure, or nil
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
		t.lose(cause)
		t.release()
		t = nil
		if f.stopped != nil {
			f.stopped()
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
		case st, ok := <-states:
			if !ok {
				if ctx.Err() != nil {
					finish(context.Cause(ctx))
					if workErr != nil {
						return workErr
					}
					return ctx.Err()
				}
				err := ErrClosed
				if rerr := c.Err(); rerr != nil {
					err = fmt.Errorf("%w: %w", ErrClosed, rerr)
				}
				finish(fmt.Errorf("%w: %w", ErrLeadershipLost, err))
				if workErr != nil {
					return workErr
				}
				return err
			}
			cur = st
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
			case t.isLost():
				endTenure(nil)
			case !cur.IsLeader || cur.Term != t.term:
				endTenure(fmt.Errorf("%w: stepped down in term %d", ErrLeadershipLost, t.term))
			}
		}
		if f.newLeader != nil && cur.HasLeader && cur.Leader.Identifier != leader {
			leader = cur.Leader.Identifier
			f.newLeader(cur.Leader)
		}
		// A gain, judged by the snapshot at this instant (the stream may
		// be behind: a lease that ran out while the node loop stalled is
		// not published until it runs again). While the stream still says
		// leader and the snapshot does not, look again every heartbeat.
		if t == nil && running == nil && cur.IsLeader {
			if t = c.gain(ctx); t == nil {
				if retryC == nil {
					if retry == nil {
						retry = time.NewTimer(time.Duration(c.cfg.HeartbeatInterval))
					} else {
						retry.Reset(time.Duration(c.cfg.HeartbeatInterval))
					}
					retryC = retry.C
				}
			} else if f.work != nil {
				running = make(chan struct{})
				go func(t *tenure, done chan struct{}) {
					defer close(done)
					err := f.work(t.ctx)
					if err != nil && !endedBy(t.ctx, err) {
						workErr = err
					}
					if f.cancelOnReturn {
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

// tenure is one span of leadership of this peer: from a gain, while the
// snapshot says it holds the lease of term, to the loss of it.
type tenure struct {
	c    *Cluster
	term uint64
	// ctx is the work's context; cancel ends it with a cause.
	ctx    *leaderContext
	cancel context.CancelCauseFunc
	// lost is closed at the loss.
	lost chan struct{}
	// end is the lease's end as last seen, as an offset from c.base
	// (kept after the loss for Deadline).
	end atomic.Int64

	mu     sync.Mutex // guards timer, ended, lostAt and why
	timer  *time.Timer
	ended  bool
	lostAt time.Time      // when it ended
	why    error          // why it ended (lose's cause)
	fires  sync.WaitGroup // timer callbacks armed and not done
}

// gain starts a tenure when this peer holds the lease now; nil otherwise.
// The tenure's context descends from parent.
func (c *Cluster) gain(parent context.Context) *tenure {
	_, term, ok := c.leaseLeft(time.Now())
	if !ok {
		return nil
	}
	t := &tenure{c: c, term: term, lost: make(chan struct{})}
	cctx, cancel := context.WithCancelCause(parent)
	t.ctx, t.cancel = &leaderContext{Context: cctx, t: t}, cancel
	// Registered first, then checked: a view published before the
	// registration is seen by the check, one published after it by
	// tenures.check.
	c.tenures.add(t)
	now := time.Now()
	left, ok := t.holds(now)
	if !ok {
		c.tenures.remove(t)
		cancel(context.Canceled)
		return nil
	}
	t.end.Store(int64(now.Sub(c.base) + left))
	t.mu.Lock()
	t.arm(left)
	t.mu.Unlock()
	return t
}

// tenures are a Cluster's live tenures. onView checks them on the node
// goroutine after it publishes a snapshot, and publishClosed after it
// closes it: a view that drops the lease (a transfer, a resignation, a
// step-down) ends the work before the messages that let another peer lead
// are sent (consensus.Loop.send publishes such a view first), so the work
// of two peers never overlaps, even when a transfer ends a lease early.
type tenures struct {
	n  atomic.Int32 // len(m): check's fast path takes no lock
	mu sync.Mutex
	m  map[*tenure]struct{}
}

func (ts *tenures) add(t *tenure) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = make(map[*tenure]struct{})
	}
	ts.m[t] = struct{}{}
	ts.n.Store(int32(len(ts.m)))
}

func (ts *tenures) remove(t *tenure) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.m, t)
	ts.n.Store(int32(len(ts.m)))
}

// check ends every tenure whose lease the published snapshot no longer
// holds. It does not block: ending a tenure cancels a context.
func (ts *tenures) check() {
	if ts.n.Load() == 0 {
		return
	}
	now := time.Now()
	var lost []*tenure
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
		t.lose(t.lossCause())
	}
}

// lossCause says why the snapshot no longer holds the tenure's lease.
func (t *tenure) lossCause() error {
	s := t.c.snap.Load()
	switch {
	case s.closed:
		return fmt.Errorf("%w: %w", ErrLeadershipLost, ErrClosed)
	case s.view.Term != t.term || s.view.Role != consensus.Leader:
		return fmt.Errorf("%w: stepped down in term %d", ErrLeadershipLost, t.term)
	case s.view.LeaseUntil == 0:
		return fmt.Errorf("%w: gave the lease up in term %d (a transfer, or a failing health check)", ErrLeadershipLost, t.term)
	default:
		return fmt.Errorf("%w: the lease ran out in term %d", ErrLeadershipLost, t.term)
	}
}

// leaseLeft reports how long this peer still holds the lease at now (a
// reading of time.Now), and its term, as IsLeader judges it; ok is false
// when it does not hold it.
func (c *Cluster) leaseLeft(now time.Time) (left time.Duration, term uint64, ok bool) {
	s := c.snap.Load()
	at := s.nodeNow(stamp{mono: now.Sub(c.base), wall: now.UnixNano()})
	if s.closed || !s.view.IsLeaderAt(at) {
		return 0, s.view.Term, false
	}
	return s.view.LeaseUntil - at, s.view.Term, true
}

// holds is leaseLeft for this tenure's term.
func (t *tenure) holds(now time.Time) (time.Duration, bool) {
	left, term, ok := t.c.leaseLeft(now)
	return left, ok && term == t.term
}

// arm sets the timer to fire after d. t.mu is held.
func (t *tenure) arm(d time.Duration) {
	t.fires.Add(1)
	t.timer = time.AfterFunc(d, t.fire)
}

// fire runs at the lease's end as last seen: if the lease was renewed
// meanwhile it re-arms the timer at the new end, otherwise the tenure is
// lost.
func (t *tenure) fire() {
	defer t.fires.Done()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	now := time.Now()
	if left, ok := t.holds(now); ok {
		t.end.Store(int64(now.Sub(t.c.base) + left))
		t.arm(left)
		return
	}
	t.loseLocked(now, t.lossCause())
}

// lose ends the tenure with cause, unless it has ended already.
func (t *tenure) lose(cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ended {
		t.loseLocked(time.Now(), cause)
	}
}

func (t *tenure) loseLocked(now time.Time, cause error) {
	t.ended, t.lostAt, t.why = true, now, cause
	if t.timer.Stop() {
		t.fires.Done() // its callback will not run
	}
	// The lease ended now at the latest.
	t.end.Store(min(t.end.Load(), int64(now.Sub(t.c.base))))
	close(t.lost)
	t.cancel(cause)
}

// isLost reports whether the tenure has ended.
func (t *tenure) isLost() bool {
	select {
	case <-t.lost:
		return true
	default:
		return false
	}
}

// release unregisters the tenure and waits until no timer callback of it
// runs. Call it after lose, never from the timer.
func (t *tenure) release() {
	t.c.tenures.remove(t)
	t.fires.Wait()
}

// deadline is the lease's current end: moved forward while the lease is
// renewed, fixed at the loss.
func (t *tenure) deadline() time.Time {
	t.mu.Lock()
	ended := t.ended
	t.mu.Unlock()
	if !ended {
		now := time.Now()
		if left, ok := t.holds(now); ok {
			end := int64(now.Sub(t.c.base) + left)
			t.end.Store(end)
			return t.c.base.Add(time.Duration(end))
		}
	}
	return t.c.base.Add(time.Duration(t.end.Load()))
}

// leaderContext is a tenure's context: a cancel context whose Deadline is
// the lease's current end. Embedding the standard cancel context keeps
// Done, Err, Value and context.Cause as they are, and lets contexts
// derived from it be cancelled without a goroutine.
type leaderContext struct {
	context.Context
	t *tenure
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

// LeaderTerm returns the term of the leadership ctx is scoped to, when ctx
// is (or descends from) a leaderCtx of RunWhileLeader or OnStartedLeading.
// The term is a fencing token: pass it to the systems the work writes to,
// so that they can refuse a deposed leader's late writes. It stays the
// same after ctx ends.
func LeaderTerm(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(tenureKey{}).(*tenure)
	if !ok {
		return 0, false
	}
	return t.term, true
}

// Deadline returns the lease's current end; see RunWhileLeader.
func (l *leaderContext) Deadline() (time.Time, bool) { return l.t.deadline(), true }

func (l *leaderContext) String() string {
	return fmt.Sprintf("qcluster.leaderCtx(%s, term %d)", l.t.c.cfg.Identifier, l.t.term)
}
