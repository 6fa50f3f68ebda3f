package qcluster

import (
	"context"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/leaderwork"
)

// Leader-scoped work: RunWhileLeader and OnLeadership run work only while
// this peer holds the leader lease, and stop it the moment the lease is
// lost; internal/leaderwork holds the machinery (tenures, their timers,
// the follower loop). It reads the lease through tenureLease, and onView
// (and publishClosed) calls Tracker.Check after each snapshot.

// ErrLeadershipLost is the cause (context.Cause) of a leader context
// that ended because this peer lost the leader lease: it ran out, was
// handed over, or the peer was deposed or closed. It is wrapped with %w,
// with the reason.
var ErrLeadershipLost = leaderwork.ErrLeadershipLost

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
	return c.follow(ctx, leaderwork.Follower[State]{Work: fn, CancelOnReturn: true})
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
	f := leaderwork.Follower[State]{Stopped: cb.OnStoppedLeading}
	if cb.OnNewLeader != nil {
		f.NewLeader = func(st State) { cb.OnNewLeader(st.Leader) }
	}
	if cb.OnStartedLeading != nil {
		f.Work = func(ctx context.Context) error {
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

// follow runs f's tenures (leaderwork.Follow) on the Watch stream, until
// ctx ends (ctx.Err()), the Cluster closes (ErrClosed), or work returns an
// error that is not its ctx's end (that error).
func (c *Cluster) follow(ctx context.Context, f leaderwork.Follower[State]) error {
	return leaderwork.Follow(ctx, c.tenures, leaderwork.Stream[State]{
		States: c.Watch(ctx),
		Status: func(st State) leaderwork.Status {
			return leaderwork.Status{IsLeader: st.IsLeader, Term: st.Term, HasLeader: st.HasLeader, Leader: st.Leader.Identifier}
		},
		Closed: func() error {
			if rerr := c.Err(); rerr != nil {
				return fmt.Errorf("%w: %w", ErrClosed, rerr)
			}
			return ErrClosed
		},
		Retry: time.Duration(c.cfg.HeartbeatInterval),
	}, f)
}

// tenureLease is what tenures read of a Cluster (leaderwork.Lease): the
// snapshot behind IsLeader.
type tenureLease struct{ c *Cluster }

// Left reports how long this peer still holds the lease at now (a reading
// of time.Now), and its term, as IsLeader judges it; ok is false when it
// does not hold it.
func (l tenureLease) Left(now time.Time) (left time.Duration, term uint64, ok bool) {
	s := l.c.snap.Load()
	at := s.nodeNow(stamp{mono: now.Sub(l.c.base), wall: now.UnixNano()})
	if s.closed || !s.view.IsLeaderAt(at) {
		return 0, s.view.Term, false
	}
	return s.view.LeaseUntil - at, s.view.Term, true
}

// Why says why the snapshot no longer holds the lease of term.
func (l tenureLease) Why(term uint64) leaderwork.Loss {
	s := l.c.snap.Load()
	switch {
	case s.closed:
		return leaderwork.LossClosed
	case s.view.Term != term || s.view.Role != consensus.Leader:
		return leaderwork.LossSteppedDown
	case s.view.LeaseUntil == 0:
		return leaderwork.LossGaveUp
	default:
		return leaderwork.LossRanOut
	}
}

// LeaderTerm returns the term of the leadership ctx is scoped to, when ctx
// is (or descends from) a leaderCtx of RunWhileLeader or OnStartedLeading.
// The term is a fencing token: pass it to the systems the work writes to,
// so that they can refuse a deposed leader's late writes. It stays the
// same after ctx ends.
func LeaderTerm(ctx context.Context) (uint64, bool) { return leaderwork.Term(ctx) }
