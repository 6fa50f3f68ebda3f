package qcluster

import (
	"context"
	"time"

	"github.com/qcluster/qcluster/internal/eventhub"
)

// eventHub fans membership and leadership events out to Events channels,
// and counts the changes of what Peers shows (the API's membership index):
// every event it publishes, and the changes that have none (touch). The
// machinery is internal/eventhub; publish stamps each event with its time.
type eventHub struct{ eventhub.Hub[Event] }

func (h *eventHub) publish(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	h.Publish(ev)
}

// touch counts a change of what Peers shows that no Event reports (a
// member known only to gossip, this peer's own metadata in masterless
// mode).
func (h *eventHub) touch() { h.Touch() }

// index returns the number of changes counted so far.
func (h *eventHub) index() uint64 { return h.Index() }

// wait returns once the count differs from index (eventhub.Hub.Wait):
// ctx's error when ctx ends first, ErrClosed when the hub is closed.
func (h *eventHub) wait(ctx context.Context, index uint64) error { return h.Wait(ctx, index) }

func (h *eventHub) closeAll() { h.Close() }
