package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

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

func (c *Client) watchEvents(ctx context.Context, s *eventStream, ch chan<- Event) {
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
		err := silence(s.ctx, s.read(ctx, send))
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

// eventStream is one open GET /v1/watch.
type eventStream struct {
	addr   string
	body   io.ReadCloser
	ctx    context.Context // the connection's
	idle   *time.Timer     // cancels ctx when the peer stays silent
	cancel context.CancelCauseFunc
	wait   time.Duration // the idle limit
}

func (s *eventStream) close() {
	s.idle.Stop()
	s.cancel(nil)
	s.body.Close()
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

// openEvents connects to GET /v1/watch, trying the addresses in turn from
// the one that answered last, and remembers the one that answers.
func (c *Client) openEvents(ctx context.Context) (*eventStream, error) {
	start := int(c.cur.Load())
	var errs []error
	for i := range c.bases {
		k := (start + i) % len(c.bases)
		s, err := c.openEventsAt(ctx, c.bases[k])
		if err == nil {
			c.cur.Store(uint32(k))
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qcluster client: GET /v1/watch: %w", err)
		}
		if isAnswer(err) && !tryNext(http.MethodGet, err) {
			c.cur.Store(uint32(k))
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, &unreachableError{errs: errs}
}

func (c *Client) openEventsAt(ctx context.Context, base *url.URL) (*eventStream, error) {
	addr := base.String()
	u := endpoint(base, "/v1/watch")
	cctx, cancel := context.WithCancelCause(ctx)
	// Until the header arrives the call is bounded by Timeout, then by the
	// idle limit between lines.
	idle := time.AfterFunc(c.opts.Timeout, func() { cancel(&silentError{addr: addr}) })
	fail := func(err error) (*eventStream, error) {
		idle.Stop()
		err = silence(cctx, err)
		cancel(nil)
		return nil, err
	}
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		return fail(apiError(addr, resp.StatusCode, data))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		return fail(fmt.Errorf("qcluster client: %s answered GET /v1/watch with %q, not an event stream; is it a QCluster peer?", addr, resp.Header.Get("Content-Type")))
	}
	wait := c.opts.WatchWait + c.opts.Timeout
	idle.Reset(wait)
	return &eventStream{addr: addr, body: resp.Body, ctx: cctx, idle: idle, cancel: cancel, wait: wait}, nil
}

// read parses the stream and sends its events until it ends, returning
// why. An event of an unknown type is skipped.
func (s *eventStream) read(ctx context.Context, send func(Event) bool) error {
	sc := bufio.NewScanner(s.body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var typ string
	var data bytes.Buffer
	hasData := false
	for sc.Scan() {
		s.idle.Reset(s.wait)
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(line) == 0 { // the end of an event
			if hasData {
				ev, err := decodeEvent(s.addr, typ, data.Bytes())
				if err != nil {
					return err
				}
				if ev != nil && !send(*ev) {
					return ctx.Err()
				}
			}
			typ, hasData = "", false
			data.Reset()
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			typ = string(value)
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		}
		// "id" and "retry" are not needed: every connection starts with
		// the current Status. A comment (empty field) keeps it alive.
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errStreamEnded
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
