package qcluster

import (
	"context"
	"errors"
	"time"
)

// A stop is a hand-over. A leader that is closed (Close, the agent's
// SIGTERM or SIGINT) first hands leadership to the best other voter, as
// Resign does, so the survivors do not wait out an election timeout: the
// transferee campaigns at once, the others vote for it at once (the leader
// sent it MsgTimeoutNow), and nobody is without a leader for longer than
// the hand-over. A stop that cannot hand over (no other voter, none whose
// health check passes, none that takes over in time) says so in the log and
// goes on closing: the others then elect a leader after an election timeout.

// maxHandOver caps the hand-over on Close, so that a long election
// timeout cannot hold a stop for minutes (systemd and Kubernetes give a
// stop 90 s and 30 s by default).
const maxHandOver = 5 * time.Second

// handOverTimeout bounds the hand-over on Close: two election timeouts,
// time for raft to give one transferee up and try the next, at most
// maxHandOver.
func (c *Cluster) handOverTimeout() time.Duration {
	return min(2*time.Duration(c.cfg.ElectionTimeout), maxHandOver)
}

// handOverOnClose hands leadership over when this peer leads (see above).
// It runs at the start of Close, before anything is torn down.
func (c *Cluster) handOverOnClose() {
	if c.snap.Load().closed || !c.leading() || c.node() == nil {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.handOverTimeout())
	defer cancel()
	err := c.Resign(ctx)
	took := time.Since(start)
	switch {
	case err == nil:
		to := ""
		if l, ok := c.Leader(); ok {
			to = l.Identifier
		}
		c.log.Info("stopping leader handed leadership over", "to", to, "took", took.String())
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrClosed):
		// Lost leadership meanwhile, or closed by another call.
	case errors.Is(err, ErrUnknownPeer) && !errors.Is(err, ErrTransferFailed):
		c.log.Info("stopping leader has no other voter to hand leadership to")
	default:
		c.log.Warn("stopping leader could not hand leadership over: the others elect a leader after an election timeout", "err", err, "took", took.String())
	}
}
