package qcluster

import (
	"context"

	"github.com/qcluster/qcluster/internal/latest"
)

// observable reports whether an observer can tell a from b (role, term,
// leader, lease).
func observable(a, b State) bool {
	return a.Role != b.Role || a.Term != b.Term || a.HasLeader != b.HasLeader ||
		a.IsLeader != b.IsLeader || a.Leader.Identifier != b.Leader.Identifier
}

// Watch returns a channel of leadership changes: the current State at once,
// then a State each time the role, term, leader or lease of this peer
// changes, including to "no leader". The channel holds one State and always
// the latest one, so a reader that falls behind skips intermediate states but
// always ends on the current one; the publisher never blocks. Index numbers
// the changes from 1 (Start publishes the first); a Watch begun before Start
// first receives a State with Index 0 and no leader. The channel is closed
// when ctx is done, when the Cluster is closed, or when the peer stops on its
// own (then Err says why). The subscription lasts until then: cancel ctx
// when done with it (a Watch on context.Background() lasts as long as the
// Cluster).
func (c *Cluster) Watch(ctx context.Context) <-chan State {
	return c.watch.Subscribe(ctx, State{Identifier: c.cfg.Identifier})
}

// newWatchers returns the fan-out behind Watch: a State is published when
// it differs from the last in a way an observer can see, numbered in
// State.Index.
func newWatchers() *latest.Fanout[State] {
	return latest.NewFanout(func(a, b State) bool { return !observable(a, b) },
		func(st *State, index uint64) { st.Index = index })
}
