package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SSE framing of GET /v1/watch.
const (
	// EventLeader is the event type of a leadership change; its data is
	// the peer's Status as one line of JSON and its id the Status's Index.
	EventLeader = "leader"
	// EventMember is the event type of a membership change; its data is a
	// MemberEvent as one line of JSON. It has no id: member events are not
	// replayed after a reconnection (resync with GET /v1/peers).
	EventMember = "member"
	// sseRetryMS is the reconnection delay suggested to clients.
	sseRetryMS = 1000
	// sseWriteTimeout drops a client that does not read its stream.
	sseWriteTimeout = 30 * time.Second
)

// watch serves GET /v1/watch: Server-Sent Events, one "leader" event per
// change of this peer's Status and one "member" event per MemberEvent of
// the Backend.
//
// Leader events: the first is the current Status, unless the client sends
// Last-Event-ID equal to the current index (it is up to date); a different
// Last-Event-ID, older or from before a restart, gets the current Status at
// once. A reader that is slow may skip intermediate states, never the
// latest.
//
// Member events are sent as they come from the moment the stream opens
// (the subscription is made before the response header is written). They
// carry no id, so they leave the client's Last-Event-ID alone, and they are
// not replayed after a reconnection.
//
// While nothing is sent a comment line keeps the stream alive. The stream
// ends when the client goes or the peer stops.
func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	var last uint64
	if s := strings.TrimSpace(r.Header.Get("Last-Event-ID")); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("Last-Event-ID: %q is not an event id; send the id of the last event received", s))
			return
		}
		last = n
	}
	markWaited(w)
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if r.Method == http.MethodHead {
		setIndex(w, h.b.Status().Index)
		w.WriteHeader(http.StatusOK)
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // ends both subscriptions
	members := h.b.Events(ctx)
	leaders := h.b.Watch(ctx)

	setIndex(w, h.b.Status().Index)
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n\n", sseRetryMS)
	if !h.flushEvent(w, rc, &buf) {
		return
	}
	keepAlive := time.NewTimer(h.opts.KeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-ctx.Done():
			return // the client is gone
		case st, ok := <-leaders:
			if !ok {
				return // the peer stops
			}
			if st.Index == last {
				continue // the client has this one (Last-Event-ID)
			}
			last = st.Index
			fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: ", st.Index, EventLeader)
			if !encodeData(&buf, st) {
				return
			}
		case ev, ok := <-members:
			if !ok {
				members = nil // no more member events; leader events go on
				continue
			}
			fmt.Fprintf(&buf, "event: %s\ndata: ", EventMember)
			if !encodeData(&buf, ev) {
				return
			}
		case <-keepAlive.C:
			buf.WriteString(": keep-alive\n\n")
		}
		if !h.flushEvent(w, rc, &buf) {
			return
		}
		keepAlive.Reset(h.opts.KeepAlive)
	}
}

// encodeData appends v to buf as the one-line data of an event, and the
// blank line that ends the event. Compact JSON has no newline but the one
// Encode ends with, so the data is one line.
func encodeData(buf *bytes.Buffer, v any) bool {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return false
	}
	buf.WriteString("\n")
	return true
}

// flushEvent writes buf to the client and flushes it, within
// sseWriteTimeout. It reports whether that worked.
func (h *handler) flushEvent(w http.ResponseWriter, rc *http.ResponseController, buf *bytes.Buffer) bool {
	_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	_, err := w.Write(buf.Bytes())
	buf.Reset()
	if err != nil {
		return false
	}
	return rc.Flush() == nil
}
