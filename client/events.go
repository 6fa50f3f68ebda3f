package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/backoff"
)

// Event is one value of WatchEvents: exactly one of Status, Member and Err
// is set.
type Event struct {
	// Status is the answering peer's Status after a leadership change (an
	// api.EventLeader event). The first value on every connection is one:
	// the Status at that moment.
	Status *api.Status
	// Member is a membership change (an api.EventMember event).
	Member *api.MemberEvent
	// Err says why the stream broke; the watch connects again (to the same
	// peer, or the next that answers), and the next value is a Status.
	// Member events between the two may be lost: call Peers then to
	// resync.
	Err error
	// Addr is the base URL of the peer that sent the event (empty with
	// Err).
	Addr string
}

// eventBuffer is how many events WatchEvents' channel holds.
const eventBuffer = 64

// maxEventLine bounds one line of the stream (a member's metadata is at
// most 64 KiB).
const maxEventLine = 4 << 20

// WatchEvents streams the events of GET /v1/watch: a Status for every
// leadership change and a MemberEvent for every membership change, as the
// answering peer sees them. The first value is the current Status. It
// returns an error only if no peer could be connected to (or the answer was
// an error, such as ErrUnauthorized).
//
// Nothing is skipped while the reader keeps up: the channel holds
// eventBuffer values, and then the stream waits for the reader (a peer
// drops a stream that does not read for 30 seconds, which shows as an Err
// value and a new connection). To keep a membership view, call Peers after
// WatchEvents returns and apply the member events; after an Err value,
// call Peers again (member events are not replayed on a new connection).
//
// When the stream breaks, or the peer sends nothing (not even its
// keep-alive comments) for Options.WatchWait + Options.Timeout, the watch
// sends an Err value and connects again, from the address that answered
// last, with a growing pause (up to a second) between failed rounds; it
// reports one Err per outage, not one per attempt. The channel is closed
// when ctx ends; the watch's goroutine ends with it.
func (c *Client) WatchEvents(ctx context.Context) (<-chan Event, error) {
	s, err := c.openEvents(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan Event, eventBuffer)
	go c.watchEvents(ctx, s, ch)
	return ch, nil
}

func (c *Client) watchEvents(ctx context.Context, s *sseStream, ch chan<- Event) {
	defer close(ch)
	send := func(ev Event) bool {
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		err := silence(s.ctx, readEvents(ctx, s, send))
		s.close()
		if ctx.Err() != nil {
			return
		}
		if !send(Event{Err: fmt.Errorf("qcluster client: the event stream from %s broke: %w", s.addr, err)}) {
			return
		}
		bo, reported := backoff.New(watchMinBackoff, watchMaxBackoff), false
		for {
			s, err = c.openEvents(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				break
			}
			if !reported {
				if !send(Event{Err: err}) {
					return
				}
				reported = true
			}
			if bo.Wait(ctx) != nil {
				return
			}
		}
	}
}

// silence returns why the connection of ctx was cancelled for silence, or
// err.
func silence(ctx context.Context, err error) error {
	var se *silentError
	if cause := context.Cause(ctx); errors.As(cause, &se) {
		return se
	}
	return err
}

// silentError is the cause of a stream connection cancelled because the
// peer sent nothing in time.
type silentError struct {
	addr string
}

func (e *silentError) Error() string {
	return fmt.Sprintf("no answer from %s in time: it sent no event or keep-alive", e.addr)
}

// openEvents connects to GET /v1/watch (see Client.openStream).
func (c *Client) openEvents(ctx context.Context) (*sseStream, error) {
	return c.openStream(ctx, http.MethodGet, "/v1/watch", nil, nil, true)
}

// readEvents parses the stream and sends its events until it ends,
// returning why. An event of an unknown type is skipped; "id" and "retry"
// are not needed (every connection starts with the current Status).
func readEvents(ctx context.Context, s *sseStream, send func(Event) bool) error {
	for {
		e, err := s.next()
		if err != nil {
			return err
		}
		if e.data == nil {
			continue // a retry hint, or an event without data
		}
		ev, err := decodeEvent(s.addr, e.event, e.data)
		if err != nil {
			return err
		}
		if ev != nil && !send(*ev) {
			return ctx.Err()
		}
	}
}

// decodeEvent returns the Event for one SSE event, or nil for a type this
// client does not know.
func decodeEvent(addr, typ string, data []byte) (*Event, error) {
	switch typ {
	case api.EventLeader:
		var st api.Status
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("a %q event that is not a Status: %w", typ, err)
		}
		return &Event{Status: &st, Addr: addr}, nil
	case api.EventMember:
		var me api.MemberEvent
		if err := json.Unmarshal(data, &me); err != nil {
			return nil, fmt.Errorf("a %q event that is not a MemberEvent: %w", typ, err)
		}
		return &Event{Member: &me, Addr: addr}, nil
	}
	return nil, nil
}

// errStreamEnded is why a stream the peer closed broke (the peer stops).
var errStreamEnded = errors.New("the peer ended the stream")
