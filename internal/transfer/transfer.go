// Package transfer hands leadership over: one attempt to a chosen or the
// best voter (Start), and resignation, which tries each other voter in
// turn (Resign). It reads the peer through Deps, never through the root
// package's Cluster.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// Leadership is what a hand-over waits to see in a published state.
type Leadership struct {
	// Other is the identifier of the peer other than this one known to
	// lead ("": none, or this peer).
	Other string
	// Self: this peer holds the lease (again).
	Self bool
}

// Deps is what a hand-over needs from the peer.
type Deps struct {
	// Node returns the running election node (nil: not started).
	Node func() *consensus.Node
	// Failing returns the members whose health check fails.
	Failing func() map[uint64]bool
	// Name returns a member's identifier, for errors.
	Name func(id uint64) string
	// Unreachable reports whether this peer cannot reach voter id now
	// (its raft stream to it is down: the voter closed, its process is
	// gone, or the network fails). A hand-over skips such voters instead
	// of waiting out raft's transfer timeout on one, and one to a named
	// target that is unreachable fails at once. Nil: all are reachable.
	Unreachable func(id uint64) bool
	// Watch yields the leadership of every state this peer publishes from
	// now on, until ctx ends (the subscription ends with ctx, or when the
	// caller stops ranging) or the peer closes.
	Watch func(ctx context.Context) iter.Seq[Leadership]
}

// ErrNoneReachable: every other voter that could take over is unreachable
// (Deps.Unreachable); it is a sdkerr.ErrTransferFailed.
var ErrNoneReachable = fmt.Errorf("%w: no other voter is reachable", sdkerr.ErrTransferFailed)

// Start starts one hand-over to target (0: the best reachable voter not
// in tried whose health check passes) and waits for its outcome; it
// returns the target it chose. Errors: sdkerr.ErrNotStarted, NotLeader,
// UnknownPeer (no voter to choose), ErrNoneReachable, TransferFailed (the
// target did not take over, another peer than the target named took over,
// the target's health check fails or it is unreachable), Closed, ctx's
// error.
func Start(ctx context.Context, d Deps, target uint64, tried map[uint64]bool) (uint64, error) {
	node := d.Node()
	if node == nil {
		return 0, sdkerr.ErrNotStarted
	}
	failing := d.Failing()
	unreachable := func(id uint64) bool { return d.Unreachable != nil && d.Unreachable(id) }
	named := target != 0 // the caller's choice: only it may take over
	err := node.Do(ctx, func(core *consensus.Core) error {
		if core.View().Role != consensus.Leader {
			return sdkerr.ErrNotLeader
		}
		if failing[target] {
			return fmt.Errorf("%w: %s: its health check fails", sdkerr.ErrTransferFailed, d.Name(target))
		}
		if target != 0 && unreachable(target) {
			return fmt.Errorf("%w: %s is unreachable", sdkerr.ErrTransferFailed, d.Name(target))
		}
		if target == 0 {
			// Never to a member whose health check fails (it would ignore
			// the transfer), nor to one this peer cannot reach (raft would
			// wait an election timeout for it).
			skipped := false
			target = core.BestTransferee(func(id uint64) bool {
				if tried[id] || failing[id] {
					return true
				}
				if unreachable(id) {
					skipped = true
					return true
				}
				return false
			})
			switch {
			case target == 0 && skipped:
				return ErrNoneReachable
			case target == 0:
				return fmt.Errorf("%w: no other voter to transfer to", sdkerr.ErrUnknownPeer)
			}
		}
		core.TransferLeadership(target)
		return nil
	})
	if err != nil {
		if errors.Is(err, consensus.ErrStopped) {
			return target, sdkerr.ErrClosed
		}
		return target, err
	}
	// Do returns once the dropped lease is published, so the first state
	// here no longer says Self; seeing it again means raft gave up.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the Watch subscription
	for l := range d.Watch(wctx) {
		if done, err := outcome(l, d.Name(target), named); done {
			return target, err
		}
	}
	if ctx.Err() != nil {
		return target, ctx.Err()
	}
	return target, sdkerr.ErrClosed
}

// outcome reads one state published during a hand-over to the peer named
// target: whether the hand-over is over, and how. Another peer leading
// ends it; when the caller named the target (named), a peer other than
// the target that took over instead (an election won by a follower whose
// timer ran out meanwhile) is a failure, as etcd's MoveLeader waits for
// the transferee itself. This peer holding the lease again means raft
// gave up.
func outcome(l Leadership, target string, named bool) (bool, error) {
	switch {
	case l.Other != "" && named && l.Other != target:
		return true, fmt.Errorf("%w: %s took over instead of %s", sdkerr.ErrTransferFailed, l.Other, target)
	case l.Other != "":
		return true, nil
	case l.Self:
		return true, fmt.Errorf("%w: %s did not take over", sdkerr.ErrTransferFailed, target)
	}
	return false, nil
}

// Resign hands leadership to the best other voter, giving up a voter that
// does not take over for the next best. Errors: those of Start, with
// UnknownPeer when there is no other voter, ErrNoneReachable when the
// voters left to try are unreachable and TransferFailed when none took
// over.
func Resign(ctx context.Context, d Deps) error {
	tried := map[uint64]bool{}
	for {
		target, err := Start(ctx, d, 0, tried)
		if target != 0 && errors.Is(err, sdkerr.ErrTransferFailed) {
			tried[target] = true // it did not take over: the next best
			continue
		}
		// Done, or no voter was chosen (none left, or none reachable).
		if len(tried) > 0 && errors.Is(err, sdkerr.ErrUnknownPeer) {
			return fmt.Errorf("%w: no other voter took over", sdkerr.ErrTransferFailed)
		}
		return err
	}
}
