package transfer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/qcluster/qcluster/internal/sdkerr"
)

// MaxOnClose caps the hand-over on Close, so that a long election timeout
// cannot hold a stop for minutes (systemd and Kubernetes give a stop 90 s
// and 30 s by default).
const MaxOnClose = 5 * time.Second

// OnCloseTimeout bounds the hand-over on Close: two election timeouts,
// time for raft to give one transferee up and try the next, at most
// MaxOnClose.
func OnCloseTimeout(electionTimeout time.Duration) time.Duration {
	return min(2*electionTimeout, MaxOnClose)
}

// OnClose is a stopping leader's hand-over: Resign within
// OnCloseTimeout(electionTimeout), and the outcome in log (leader names
// the leader afterwards). A stop that cannot hand over says so and goes on
// closing: the others then elect a leader after an election timeout.
func OnClose(d Deps, electionTimeout time.Duration, log *slog.Logger, leader func() string) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), OnCloseTimeout(electionTimeout))
	defer cancel()
	err := Resign(ctx, d)
	took := time.Since(start)
	switch {
	case err == nil:
		log.Info("stopping leader handed leadership over", "to", leader(), "took", took.String())
	case errors.Is(err, sdkerr.ErrNotLeader), errors.Is(err, sdkerr.ErrClosed):
		// Lost leadership meanwhile, or closed by another call.
	case errors.Is(err, sdkerr.ErrUnknownPeer) && !errors.Is(err, sdkerr.ErrTransferFailed):
		log.Info("stopping leader has no other voter to hand leadership to")
	case errors.Is(err, ErrNoneReachable):
		// The others closed or are down (the last peer of a cluster that
		// stops): none could take over.
		log.Info("stopping leader has no reachable voter to hand leadership to", "took", took.String())
	default:
		log.Warn("stopping leader could not hand leadership over: the others elect a leader after an election timeout", "err", err, "took", took.String())
	}
}
