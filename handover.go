package qcluster

import (
	"time"

	"github.com/qcluster/qcluster/internal/transfer"
)

// A stop is a hand-over. A leader that is closed (Close, the agent's
// SIGTERM or SIGINT) first hands leadership to the best other voter, as
// Resign does, so the survivors do not wait out an election timeout: the
// transferee campaigns at once, the others vote for it at once (the leader
// sent it MsgTimeoutNow), and nobody is without a leader for longer than
// the hand-over. A stop that cannot hand over (no other voter, none whose
// health check passes, none that takes over in time) says so in the log and
// goes on closing: the others then elect a leader after an election timeout.
// The hand-over is bounded by two election timeouts, at most 5 s
// (transfer.OnCloseTimeout, transfer.MaxOnClose).

// handOverOnClose hands leadership over when this peer leads (see above;
// transfer.OnClose). It runs at the start of Close, before anything is
// torn down.
func (c *Cluster) handOverOnClose() {
	if c.snap.Load().closed || !c.leading() || c.node() == nil {
		return
	}
	transfer.OnClose(c.transferDeps(), time.Duration(c.cfg.ElectionTimeout), c.log, func() string {
		l, _ := c.Leader()
		return l.Identifier
	})
}
