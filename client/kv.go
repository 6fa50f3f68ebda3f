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
	"strconv"
	"strings"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/backoff"
)

// Errors of the KV store and locks (see KV and Lock).
var (
	// ErrKeyNotFound: the key does not exist (404 "key_not_found").
	ErrKeyNotFound error = &sentinel{"qcluster client: key not found", api.ErrKeyNotFound}
	// ErrCompareFailed: a change's condition (IfModRevision, IfAbsent)
	// does not hold (409 "compare_failed"); APIError.KV is the key as it
	// is (nil when it does not exist).
	ErrCompareFailed error = &sentinel{"qcluster client: compare failed", api.ErrCompareFailed}
	// ErrQuota: the change would take the store over its quota (507
	// "quota").
	ErrQuota error = &sentinel{"qcluster client: KV quota exceeded", api.ErrQuota}
	// ErrTooLarge: a key or value over its limit (413 "too_large").
	ErrTooLarge error = &sentinel{"qcluster client: too large", api.ErrTooLarge}
	// ErrUnsupported: the peer has no KV store (501 "unsupported").
	ErrUnsupported error = &sentinel{"qcluster client: not supported by the peer", api.ErrUnsupported}
	// ErrCompacted: a watch starts from a revision older than the history
	// the store keeps; the error is a *CompactedError.
	ErrCompacted error = &sentinel{"qcluster client: revision compacted", api.ErrCompacted}
)

// CompactedError is the error of a watch from a revision older than the
// history the store keeps. It matches ErrCompacted (and api.ErrCompacted).
type CompactedError struct {
	// Oldest is the oldest revision a watch can start from.
	Oldest uint64
}

// Error says which revision is the oldest.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("qcluster client: the revision is compacted; the oldest revision kept is %d: read the keys again and watch from their revision", e.Oldest)
}

// Is reports whether target is ErrCompacted or api.ErrCompacted.
func (e *CompactedError) Is(target error) bool {
	return target == ErrCompacted || target == api.ErrCompacted
}

// KV is the replicated key-value store of a cluster in leader mode, over
// the HTTP API (GET, PUT, DELETE /v1/kv/{key...} and GET /v1/kv-watch).
// Get it from Client.KV. Reads are linearizable unless Stale; errors match
// ErrKeyNotFound, ErrCompareFailed, ErrQuota, ErrTooLarge, ErrBadRequest,
// ErrNoLeader, ErrMasterless, ErrUnsupported, ErrUnauthorized.
type KV struct{ c *Client }

// KV returns the cluster's KV store.
func (c *Client) KV() *KV { return &KV{c: c} }

// ReadOption changes a read of the KV store.
type ReadOption func(*readOptions)

type readOptions struct {
	stale    bool
	index    uint64
	wait     time.Duration
	blocking bool
}

// Stale makes a read answered from the peer's own copy: no leader is
// needed, and it may be behind.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

// WaitIndex makes a read a blocking query: it answers once a key it covers
// changes after revision index (the Revision of an earlier answer), or
// when wait passes (0: the peer's maximum, 5m), with the state then.
func WaitIndex(index uint64, wait time.Duration) ReadOption {
	return func(o *readOptions) { o.index, o.wait, o.blocking = index, wait, true }
}

// WriteOption changes a change of the KV store.
type WriteOption func(*writeOptions)

type writeOptions struct {
	cas       bool
	rev       uint64
	ephemeral bool
	session   uint64 // InSession
}

// IfModRevision makes a change apply only if the key's mod revision is rev
// (compare-and-swap); else it fails with ErrCompareFailed.
func IfModRevision(rev uint64) WriteOption {
	return func(o *writeOptions) { o.cas, o.rev = true, rev }
}

// IfAbsent makes a put apply only if the key does not exist; else it fails
// with ErrCompareFailed.
func IfAbsent() WriteOption { return IfModRevision(0) }

// Ephemeral binds a put key to the member of the peer that answers: the key
// is deleted when that member leaves or is removed.
func Ephemeral() WriteOption { return func(o *writeOptions) { o.ephemeral = true } }

// kvPath is the path of key (escaped, slashes included; a key that is a
// dot segment, "." or "..", escaped too, or the path would resolve it).
func kvPath(key string) string {
	e := url.PathEscape(key)
	if e == "." || e == ".." {
		e = strings.ReplaceAll(e, ".", "%2E")
	}
	return "/v1/kv/" + e
}

// read sends a GET of the KV store; a blocking query is bounded by its
// wait (plus Options.Timeout) rather than by Options.Timeout alone.
func (kv *KV) read(ctx context.Context, path string, prefix bool, opts []ReadOption) (api.KVList, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	q := url.Values{}
	if prefix {
		q.Set("prefix", "")
	}
	if o.stale {
		q.Set("stale", "")
	}
	if o.blocking {
		q.Set("index", strconv.FormatUint(o.index, 10))
		if o.wait > 0 {
			q.Set("wait", o.wait.String())
		}
		if _, ok := ctx.Deadline(); !ok {
			wait := o.wait
			if wait <= 0 {
				wait = api.DefaultMaxWait
			}
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, wait+kv.c.opts.Timeout)
			defer cancel()
		}
	}
	var list api.KVList
	_, err := kv.c.call(ctx, request{method: http.MethodGet, path: path, query: func(string) url.Values { return q }}, &list)
	return list, err
}

// Get returns the key (GET /v1/kv/{key}); ErrKeyNotFound when it does not
// exist.
func (kv *KV) Get(ctx context.Context, key string, opts ...ReadOption) (api.KeyValue, error) {
	list, err := kv.read(ctx, kvPath(key), false, opts)
	if err != nil {
		return api.KeyValue{}, err
	}
	if len(list.KVs) != 1 {
		return api.KeyValue{}, fmt.Errorf("qcluster client: GET %s: %d keys in the answer, want 1", kvPath(key), len(list.KVs))
	}
	return list.KVs[0], nil
}

// List returns every key beginning with prefix (all keys when it is
// empty), sorted, and the store's revision.
func (kv *KV) List(ctx context.Context, prefix string, opts ...ReadOption) (api.KVList, error) {
	return kv.read(ctx, kvPath(prefix), true, opts)
}

// write sends a PUT or DELETE of the KV store.
func (kv *KV) write(ctx context.Context, method, key string, body []byte, opts []WriteOption) (api.KVResult, error) {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	q := url.Values{}
	if o.cas {
		q.Set("cas", strconv.FormatUint(o.rev, 10))
	}
	if o.ephemeral {
		q.Set("ephemeral", "")
	}
	if o.session != 0 {
		q.Set("session", strconv.FormatUint(o.session, 10))
	}
	var res api.KVResult
	_, err := kv.c.call(ctx, request{method: method, path: kvPath(key), body: body, query: func(string) url.Values { return q }}, &res)
	return res, err
}

// Put sets key to value and returns once the change is applied (PUT
// /v1/kv/{key}). With IfModRevision or IfAbsent it is a compare-and-swap
// (ErrCompareFailed; the *APIError's KV is the key as it is).
func (kv *KV) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (api.KVResult, error) {
	body, err := json.Marshal(api.KVPutRequest{Value: value})
	if err != nil {
		return api.KVResult{}, err
	}
	return kv.write(ctx, http.MethodPut, key, body, opts)
}

// Delete deletes key and returns once the change is applied (DELETE
// /v1/kv/{key}); ErrKeyNotFound when it does not exist. Ephemeral does
// not apply.
func (kv *KV) Delete(ctx context.Context, key string, opts ...WriteOption) (api.KVResult, error) {
	return kv.write(ctx, http.MethodDelete, key, nil, opts)
}

// KVWatchEvent is one value of KV.Watch: a change, or (Err set, last
// value) why the watch ended.
type KVWatchEvent struct {
	api.KVEvent
	// Err, when not nil, ends the watch: a *CompactedError (the history to
	// go on from is gone), or the peers' refusal (such as
	// ErrUnauthorized). The channel is closed after it.
	Err error
}

// kvWatchBuffer is how many events KV.Watch's channel holds.
const kvWatchBuffer = 64

// Watch streams every change of the keys beginning with prefix, in order,
// from revision from (0: the changes after now), over GET /v1/kv-watch.
// A watch from a revision older than the history the store keeps fails
// with a *CompactedError (ErrCompacted).
//
// When the stream breaks, or the peer sends nothing for Options.WatchWait
// + Options.Timeout, the watch connects again (to the same peer or the
// next), from right after the last event received: no change is lost or
// repeated. It ends, with a KVWatchEvent whose Err says why, when that
// history is gone or a peer refuses it; the channel is closed then, and
// when ctx ends.
func (kv *KV) Watch(ctx context.Context, prefix string, from uint64) (<-chan KVWatchEvent, error) {
	w := &kvWatch{c: kv.c, prefix: prefix, from: from}
	s, err := w.open(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan KVWatchEvent, kvWatchBuffer)
	go w.run(ctx, s, ch)
	return ch, nil
}

// kvWatch is the state of one KV.Watch: where to go on from.
type kvWatch struct {
	c      *Client
	prefix string
	from   uint64 // before any event: the revision to start from
	lastID string // the id of the last event received
}

// query is the query string of the next connection.
func (w *kvWatch) query() url.Values {
	q := url.Values{}
	if w.prefix != "" {
		q.Set("prefix", w.prefix)
	}
	if w.from > 0 {
		q.Set("from", strconv.FormatUint(w.from, 10))
	}
	return q
}

// open connects, trying the addresses in turn, and reads the stream's
// first block: the retry hint, or "compacted".
func (w *kvWatch) open(ctx context.Context) (*sseStream, error) {
	hdr := http.Header{}
	if w.lastID != "" {
		hdr.Set("Last-Event-ID", w.lastID)
	}
	s, err := w.c.openStream(ctx, http.MethodGet, "/v1/kv-watch", w.query(), hdr, true)
	if err != nil {
		return nil, err
	}
	if w.from == 0 && w.lastID == "" {
		// From now: the next connection goes on from where this one
		// starts.
		if n, err := strconv.ParseUint(s.header.Get(api.IndexHeader), 10, 64); err == nil {
			w.from = n + 1
		}
	}
	// The first block is the retry hint, or "compacted".
	ev, err := s.next()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("qcluster client: GET /v1/kv-watch on %s: %w", s.addr, err)
	}
	switch ev.event {
	case "":
	case api.KVEventCompacted:
		s.close()
		var c api.KVCompacted
		if err := json.Unmarshal(ev.data, &c); err != nil {
			return nil, fmt.Errorf("qcluster client: a compacted event that is not a KVCompacted: %w", err)
		}
		return nil, &CompactedError{Oldest: c.Oldest}
	default:
		s.close()
		return nil, fmt.Errorf("qcluster client: GET /v1/kv-watch on %s: the stream begins with a %q event, not the retry hint", s.addr, ev.event)
	}
	return s, nil
}

func (w *kvWatch) run(ctx context.Context, s *sseStream, ch chan<- KVWatchEvent) {
	defer close(ch)
	send := func(ev KVWatchEvent) bool {
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		err := w.read(ctx, s, send)
		s.close()
		if ctx.Err() != nil {
			return
		}
		var ce *CompactedError
		if errors.As(err, &ce) {
			send(KVWatchEvent{Err: err})
			return
		}
		bo := backoff.New(watchMinBackoff, watchMaxBackoff)
		for {
			s, err = w.open(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				break
			}
			if errors.As(err, &ce) || (isAnswer(err) && !tryNext(http.MethodGet, err)) {
				send(KVWatchEvent{Err: err}) // the history is gone, or refused
				return
			}
			if bo.Wait(ctx) != nil {
				return
			}
		}
	}
}

// read sends the stream's events until it ends, and returns why.
func (w *kvWatch) read(ctx context.Context, s *sseStream, send func(KVWatchEvent) bool) error {
	for {
		ev, err := s.next()
		if err != nil {
			return err
		}
		switch ev.event {
		case api.KVEventPut, api.KVEventDelete:
			var e api.KVEvent
			if err := json.Unmarshal(ev.data, &e); err != nil {
				return fmt.Errorf("a %q event that is not a KVEvent: %w", ev.event, err)
			}
			if !send(KVWatchEvent{KVEvent: e}) {
				return ctx.Err()
			}
			if ev.id != "" {
				w.lastID = ev.id
			}
		case api.KVEventCompacted:
			var c api.KVCompacted
			if err := json.Unmarshal(ev.data, &c); err != nil {
				return fmt.Errorf("a compacted event that is not a KVCompacted: %w", err)
			}
			return &CompactedError{Oldest: c.Oldest}
		}
	}
}

// sseEvent is one event of a stream, or (retry set, no event) the
// stream's retry hint.
type sseEvent struct {
	id, event string
	data      []byte
	retry     bool
}

// sseStream is one open event stream.
type sseStream struct {
	addr   string
	header http.Header
	body   io.ReadCloser
	sc     *bufio.Scanner
	ctx    context.Context // the connection's
	idle   *time.Timer     // cancels ctx when the peer stays silent
	cancel context.CancelCauseFunc
	wait   time.Duration // the idle limit
}

func (s *sseStream) close() {
	s.idle.Stop()
	s.cancel(nil)
	s.body.Close()
}

// next returns the next event or retry hint (comments skipped), or why
// the stream ended.
func (s *sseStream) next() (sseEvent, error) {
	var ev sseEvent
	var data bytes.Buffer
	has := false
	for s.sc.Scan() {
		s.idle.Reset(s.wait)
		line := bytes.TrimSuffix(s.sc.Bytes(), []byte("\r"))
		if len(line) == 0 {
			if has || ev.event != "" || ev.retry {
				ev.data = data.Bytes()
				return ev, nil
			}
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			ev.id = string(value)
		case "retry":
			ev.retry = true
		case "event":
			ev.event = string(value)
		case "data":
			if has {
				data.WriteByte('\n')
			}
			data.Write(value)
			has = true
		}
	}
	if err := s.sc.Err(); err != nil {
		return ev, silence(s.ctx, err)
	}
	return ev, errStreamEnded
}

// openStream sends a request for an event stream, trying the addresses in
// turn from the one that answered last (a change only moves on when the
// connection could not be made), and remembers the one that answers. Its
// connection lives until the stream is closed or ctx ends, and is dropped
// when the peer sends nothing for Options.WatchWait + Options.Timeout.
func (c *Client) openStream(ctx context.Context, method, path string, q url.Values, hdr http.Header, retry bool) (*sseStream, error) {
	start := int(c.cur.Load())
	var errs []error
	for i := range c.bases {
		k := (start + i) % len(c.bases)
		s, err := c.openStreamAt(ctx, method, path, q, hdr, c.bases[k])
		if err == nil {
			c.cur.Store(uint32(k))
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qcluster client: %s %s: %w", method, path, err)
		}
		if !retry || !tryNext(method, err) {
			if isAnswer(err) {
				c.cur.Store(uint32(k))
			}
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, &unreachableError{errs: errs}
}

func (c *Client) openStreamAt(ctx context.Context, method, path string, q url.Values, hdr http.Header, base *url.URL) (*sseStream, error) {
	addr := base.String()
	u := endpoint(base, path)
	u.RawQuery = q.Encode()
	cctx, cancel := context.WithCancelCause(ctx)
	// Until the header arrives the call is bounded by Timeout (a lock
	// request by its wait too), then by the idle limit between lines.
	first := c.opts.Timeout
	if w := q.Get("wait"); w != "" {
		if d, err := time.ParseDuration(w); err == nil {
			first += d
		}
	}
	idle := time.AfterFunc(first, func() { cancel(&silentError{addr: addr}) })
	fail := func(err error) (*sseStream, error) {
		idle.Stop()
		err = silence(cctx, err)
		cancel(nil)
		return nil, err
	}
	req, err := http.NewRequestWithContext(cctx, method, u.String(), nil)
	if err != nil {
		return fail(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "text/event-stream")
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
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
		return fail(fmt.Errorf("qcluster client: %s answered %s %s with %q, not an event stream; is it a QCluster peer?", addr, method, path, resp.Header.Get("Content-Type")))
	}
	wait := c.opts.WatchWait + c.opts.Timeout
	idle.Reset(wait)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	return &sseStream{addr: addr, header: resp.Header, body: resp.Body, sc: sc, ctx: cctx, idle: idle, cancel: cancel, wait: wait}, nil
}
