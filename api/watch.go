package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	// sseRetryMS is the reconnection delay suggested to clients.
	sseRetryMS = 1000
	// sseWriteTimeout drops a client that does not read its stream.
	sseWriteTimeout = 30 * time.Second
)

// watch serves GET /v1/watch: Server-Sent Events, one "leader" event per
// change of this peer's Status. The first event is the current Status,
// unless the client sends Last-Event-ID equal to the current index (it is
// up to date); a different Last-Event-ID, older or from before a restart,
// gets the current Status at once. While nothing changes a comment line
// keeps the stream alive. The stream ends when the client goes or the peer
// stops.
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
	setIndex(w, h.b.Status().Index)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n\n", sseRetryMS)
	if !h.flushEvent(w, rc, &buf) {
		return
	}
	for {
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.KeepAlive)
		st, err := h.b.Wait(ctx, last)
		cancel()
		switch {
		case err == nil:
			fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: ", st.Index, EventLeader)
			// Compact JSON has no newline but the one Encode ends with, so
			// the data is one line.
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if enc.Encode(st) != nil {
				return
			}
			buf.WriteString("\n")
			last = st.Index
		case r.Context().Err() != nil:
			return // the client is gone
		case errors.Is(err, context.DeadlineExceeded):
			buf.WriteString(": keep-alive\n\n")
		default:
			return // the peer stops
		}
		if !h.flushEvent(w, rc, &buf) {
			return
		}
	}
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
