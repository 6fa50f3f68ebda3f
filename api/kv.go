package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of the KV store (they match the replicated store's).
const (
	// MaxKeySize is the largest key, in bytes.
	MaxKeySize = 1024
	// MaxValueSize is the largest value, in bytes.
	MaxValueSize = 1 << 20
	// MaxLockNameSize is the longest lock name, in bytes.
	MaxLockNameSize = 255
	// DefaultLockWait is how long POST /v1/locks/{name} waits for the lock
	// when ?wait= is not given.
	DefaultLockWait = 30 * time.Second
)

// maxKVBodyBytes bounds the body of PUT /v1/kv/{key...}: a value of
// MaxValueSize bytes in base64, and room for the JSON around it.
const maxKVBodyBytes = (MaxValueSize+2)/3*4 + 1024

// KeyValue is one key of the replicated KV store.
type KeyValue struct {
	// Key is the key (at most MaxKeySize bytes).
	Key string `json:"key"`
	// Value is the value (at most MaxValueSize bytes; base64 in JSON).
	Value []byte `json:"value"`
	// CreateRevision is the cluster revision that created the key.
	CreateRevision uint64 `json:"create_revision"`
	// ModRevision is the cluster revision of the key's last change: the
	// revision ?cas= compares with.
	ModRevision uint64 `json:"mod_revision"`
	// Version counts the key's changes since it was created (1 at
	// creation).
	Version uint64 `json:"version"`
	// Owner is the identifier of the member an ephemeral key is bound to
	// (the key goes when the member leaves or is removed); absent for a
	// persistent key.
	Owner string `json:"owner,omitempty"`
	// Session is the ID of the session the key is bound to (PUT
	// ?session=): the key goes when the session ends; absent when none.
	Session uint64 `json:"session,omitempty"`
}

// MarshalJSON encodes kv with its value as a string always ("" for an
// empty value, never null).
func (kv KeyValue) MarshalJSON() ([]byte, error) {
	type plain KeyValue
	if kv.Value == nil {
		kv.Value = []byte{}
	}
	return json.Marshal(plain(kv))
}

// KVList is the answer to GET /v1/kv/{key...}: the key (one entry), or
// with ?prefix every key under the prefix, sorted by key.
type KVList struct {
	// Revision is the store's revision when it was read (also the
	// X-QCluster-Index header).
	Revision uint64 `json:"revision"`
	// KVs are the keys.
	KVs []KeyValue `json:"kvs"`
}

// KVResult is the answer to PUT and DELETE /v1/kv/{key...}.
type KVResult struct {
	// Revision is the store's revision after the change.
	Revision uint64 `json:"revision"`
	// KV is the key after a put.
	KV *KeyValue `json:"kv,omitempty"`
	// Prev is the key before the change, when it existed.
	Prev *KeyValue `json:"prev,omitempty"`
}

// KVPutRequest is the body of PUT /v1/kv/{key...}.
type KVPutRequest struct {
	// Value is the new value (base64 in JSON; absent: empty).
	Value []byte `json:"value"`
}

// KV event types: KVEvent.Type, and the event types of GET /v1/kv-watch.
const (
	// KVEventPut: a key was created or changed.
	KVEventPut = "put"
	// KVEventDelete: a key was deleted.
	KVEventDelete = "delete"
	// KVEventCompacted is the event GET /v1/kv-watch sends, instead of
	// any other, when the revision to start from is older than the history
	// the store keeps; its data is a KVCompacted and the stream ends.
	KVEventCompacted = "compacted"
)

// KVEvent is one change of the KV store: the data of a "put" or "delete"
// event of GET /v1/kv-watch.
type KVEvent struct {
	// Type is "put" or "delete".
	Type string `json:"type"`
	// Revision is the change's revision.
	Revision uint64 `json:"revision"`
	// KV is the key after a put; for a delete its Key, and ModRevision the
	// deletion's revision.
	KV KeyValue `json:"kv"`
	// Prev is the key before the change, when the store has it.
	Prev *KeyValue `json:"prev,omitempty"`
}

// KVCompacted is the data of a "compacted" event of GET /v1/kv-watch.
type KVCompacted struct {
	// Oldest is the oldest revision the store can still watch from.
	Oldest uint64 `json:"oldest"`
}

// Lock event types of POST /v1/locks/{name}.
const (
	// LockEventAcquired is the first event of the stream: the lock is
	// held; its data is a LockEvent.
	LockEventAcquired = "acquired"
	// LockEventLost is sent when the lock is lost while the request is
	// open (its key was deleted, or the peer lost it); the stream ends.
	LockEventLost = "lost"
)

// LockEvent is the data of the events of POST /v1/locks/{name}.
type LockEvent struct {
	// Name is the lock's name.
	Name string `json:"name"`
	// Token is the fencing token: the revision at which the lock was
	// taken, larger for every later holder.
	Token uint64 `json:"token"`
	// Session is the session the lock is bound to (?session=); absent
	// for a lock held by a request.
	Session uint64 `json:"session,omitempty"`
}

// KVWriteOptions are the conditions and binding of a KV change.
type KVWriteOptions struct {
	// Compare makes the change apply only if the key's ModRevision equals
	// ModRevision (0: only if the key is absent).
	Compare     bool
	ModRevision uint64
	// Ephemeral binds the key to the peer that answers (its member): it is
	// deleted when the member leaves or is removed (put only).
	Ephemeral bool
	// Session binds the key to a session (put only; 0: none): it is
	// deleted when the session ends. A backend given one implements
	// SessionBackend.
	Session uint64
}

// Errors of the KV store and locks.
var (
	// ErrKeyNotFound: the key does not exist (404 key_not_found).
	ErrKeyNotFound = errors.New("key not found")
	// ErrCompareFailed: the key's mod revision is not the one the change
	// compares with (409 compare_failed).
	ErrCompareFailed = errors.New("compare failed: the key's mod revision differs")
	// ErrQuota: the change would take the store over its size quota (507
	// quota).
	ErrQuota = errors.New("the KV store's quota is exceeded")
	// ErrTooLarge: a value, or a key, is over its limit (413 too_large).
	ErrTooLarge = errors.New("too large")
	// ErrUnsupported: this peer has no KV store (501 unsupported).
	ErrUnsupported = errors.New("not supported by this peer")
	// ErrCompacted: a watch starts from a revision older than the history
	// kept; a *CompactedError says which is the oldest.
	ErrCompacted = errors.New("the revision is compacted")
)

// CompactedError is the error of KVBackend.KVWatch for a revision older
// than the history the store keeps. It matches ErrCompacted.
type CompactedError struct {
	// Oldest is the oldest revision a watch can start from.
	Oldest uint64
}

// Error says which revision is the oldest.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("the revision is compacted: the oldest revision kept is %d", e.Oldest)
}

// Is reports whether target is ErrCompacted.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// KVBackend is implemented by a Backend whose peer serves the replicated
// KV store and locks (leader mode). A Backend without it answers the KV and
// lock endpoints with 501 unsupported. Implementations must be safe for
// concurrent use. Errors besides those named: ErrNotLeader/ErrNoLeader
// (no leader to serve a linearizable read or commit a change),
// ErrMasterless, ErrUnavailable, context errors.
type KVBackend interface {
	// KVGet reads one key: a linearizable read, or with stale a read of
	// this peer's copy. The list holds the key, or nothing when it is
	// absent; its Revision is the store's either way.
	KVGet(ctx context.Context, key string, stale bool) (KVList, error)

	// KVList reads every key beginning with prefix (all keys when it is
	// empty; never the store's internal keys), sorted by key.
	KVList(ctx context.Context, prefix string, stale bool) (KVList, error)

	// KVPut sets key to value and waits until the change is applied.
	// Errors: ErrCompareFailed (the result's KV is the key as it is, nil
	// when absent), ErrQuota, ErrTooLarge, ErrInvalid.
	KVPut(ctx context.Context, key string, value []byte, opts KVWriteOptions) (KVResult, error)

	// KVDelete deletes key and waits until the change is applied. Errors:
	// ErrKeyNotFound, ErrCompareFailed (the result's KV is the key as it
	// is).
	KVDelete(ctx context.Context, key string, opts KVWriteOptions) (KVResult, error)

	// KVWatch returns the changes of the keys beginning with prefix, in
	// order, from revision from (0: those after the current revision),
	// and the revision it starts from (from, or for 0 the current
	// revision + 1).
	// Events of one revision (a member's ephemeral keys deleted at once)
	// come in the same order every time. The channel is closed when ctx
	// ends, the peer stops, or the reader fell behind the history kept:
	// the caller may then watch again from where it was. A from older than
	// the history kept is a *CompactedError.
	KVWatch(ctx context.Context, prefix string, from uint64) (events <-chan KVEvent, start uint64, err error)

	// Lock waits until this peer holds the lock name, or ctx ends, and
	// returns its fencing token and a channel closed if the lock is lost
	// before Unlock (its key deleted, the member removed, the peer
	// stopping).
	Lock(ctx context.Context, name string) (token uint64, lost <-chan struct{}, err error)

	// Unlock releases the lock name taken with token; a lock that is no
	// longer held with that token is left alone.
	Unlock(ctx context.Context, name string, token uint64) error
}

// kvBackend returns the KVBackend for a KV or lock request, or answers 501
// unsupported (a Backend without a KV store) or 409 masterless itself.
func (h *handler) kvBackend(w http.ResponseWriter) (KVBackend, bool) {
	kb, ok := h.b.(KVBackend)
	if !ok {
		WriteError(w, http.StatusNotImplemented, CodeUnsupported, "this peer has no KV store (its backend does not serve one)")
		return nil, false
	}
	if h.b.Status().Mode == ModeMasterless {
		WriteError(w, http.StatusConflict, CodeMasterless, "the KV store and locks need leader mode; this cluster is masterless")
		return nil, false
	}
	return kb, true
}

// keyProblem describes what is wrong with a key a client names, or
// returns "". Keys beginning with NUL are the store's own (locks) and
// cannot be reached through the API.
func keyProblem(key string) string {
	switch {
	case key == "":
		return "the key is empty; name one in the path, such as /v1/kv/config/db (or list with /v1/kv/?prefix)"
	case len(key) > MaxKeySize:
		return fmt.Sprintf("the key is %d bytes long, more than the %d allowed", len(key), MaxKeySize)
	case strings.IndexByte(key, 0) >= 0:
		return "the key contains a NUL byte; keys with NUL are reserved for QCluster"
	}
	return ""
}

// prefixProblem is keyProblem for a prefix, which may be empty.
func prefixProblem(prefix string) string {
	if prefix == "" {
		return ""
	}
	if msg := keyProblem(prefix); msg != "" {
		return "prefix: " + msg
	}
	return ""
}

// boolParam reads a flag parameter such as ?prefix or ?stale: absent is
// false; present with no value, "true" or "1" is true; "false" or "0" is
// false. msg explains another value.
func boolParam(q url.Values, name string) (v bool, msg string) {
	if !q.Has(name) {
		return false, ""
	}
	switch s := q.Get(name); s {
	case "", "true", "1":
		return true, ""
	case "false", "0":
		return false, ""
	default:
		return false, fmt.Sprintf("%s: %q is not a flag; give ?%s alone (or %s=true, %s=false)", name, truncate(s, 40), name, name, name)
	}
}

// kvQuery parses the query string; it has answered the request itself
// when ok is false.
func kvQuery(w http.ResponseWriter, r *http.Request) (q url.Values, ok bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the query string cannot be parsed: "+err.Error())
		return nil, false
	}
	return q, true
}

// kvRequest begins every KV and lock request: the KVBackend (a 501 or a
// 409 masterless is answered here) and the parsed query.
func (h *handler) kvRequest(w http.ResponseWriter, r *http.Request) (KVBackend, url.Values, bool) {
	kb, ok := h.kvBackend(w)
	if !ok {
		return nil, nil, false
	}
	q, ok := kvQuery(w, r)
	return kb, q, ok
}

// kvWriteTarget reads what a put or delete names: the key and the write
// options (a 400 is answered here).
func kvWriteTarget(w http.ResponseWriter, r *http.Request, q url.Values, ephemeralAllowed bool) (string, KVWriteOptions, bool) {
	key := r.PathValue("key")
	if msg := keyProblem(key); msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return "", KVWriteOptions{}, false
	}
	opts, msg := writeOptions(q, ephemeralAllowed)
	if msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return "", KVWriteOptions{}, false
	}
	return key, opts, true
}

// writeOptions reads ?cas= (and ?ephemeral when allowed). msg explains a
// bad value.
func writeOptions(q url.Values, ephemeralAllowed bool) (opts KVWriteOptions, msg string) {
	if q.Has("cas") {
		s := q.Get("cas")
		rev, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return opts, fmt.Sprintf("cas: %q is not a revision; give the key's mod_revision, such as cas=42 (cas=0: only if the key is absent)", truncate(s, 40))
		}
		opts.Compare, opts.ModRevision = true, rev
	}
	eph, msg := boolParam(q, "ephemeral")
	if msg != "" {
		return opts, msg
	}
	if eph && !ephemeralAllowed {
		return opts, "ephemeral: only a put can bind a key to its member"
	}
	opts.Ephemeral = eph
	return opts, ""
}

// getKV serves GET /v1/kv/{key...}: one key, or with ?prefix a list; a
// blocking query with ?index=.
func (h *handler) getKV(w http.ResponseWriter, r *http.Request) {
	kb, q, ok := h.kvRequest(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	isPrefix, msg := boolParam(q, "prefix")
	if msg == "" {
		var stale bool
		stale, msg = boolParam(q, "stale")
		if msg == "" {
			h.readKV(w, r, kb, key, isPrefix, stale)
			return
		}
	}
	WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
}

func (h *handler) readKV(w http.ResponseWriter, r *http.Request, kb KVBackend, key string, isPrefix, stale bool) {
	if isPrefix {
		if msg := prefixProblem(key); msg != "" {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
			return
		}
	} else if msg := keyProblem(key); msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return
	}
	now := func(ctx context.Context) (KVList, error) {
		if isPrefix {
			return kb.KVList(ctx, key, stale)
		}
		return kb.KVGet(ctx, key, stale)
	}
	wait := func(ctx context.Context, index uint64) (KVList, error) {
		return waitKV(ctx, kb, key, isPrefix, index, now)
	}
	list, ok := blockingRead(h, w, r, now, wait)
	if !ok {
		return
	}
	if list.KVs == nil {
		list.KVs = []KeyValue{}
	}
	setIndex(w, list.Revision)
	if !isPrefix && len(list.KVs) == 0 {
		WriteError(w, http.StatusNotFound, CodeKeyNotFound, fmt.Sprintf("the key %q does not exist", truncate(key, 80)))
		return
	}
	WriteJSON(w, http.StatusOK, list)
}

// waitKV waits until a key the read covers changes after revision index,
// then reads again. It answers at once when the store is behind index (a
// client from another cluster, or from before a restore).
func waitKV(ctx context.Context, kb KVBackend, key string, isPrefix bool, index uint64, now func(context.Context) (KVList, error)) (KVList, error) {
	list, err := now(ctx)
	if err != nil || list.Revision < index {
		return list, err
	}
	events, _, err := kb.KVWatch(ctx, key, index+1)
	if errors.Is(err, ErrCompacted) {
		return list, nil // changes were made since index: the caller reads them
	}
	if err != nil {
		return list, err
	}
	for ev := range events {
		if isPrefix || ev.KV.Key == key {
			return now(ctx)
		}
	}
	if err := ctx.Err(); err != nil {
		return list, err
	}
	return now(ctx) // the watch ended (the reader fell behind): read again
}

// putKV serves PUT /v1/kv/{key...}.
func (h *handler) putKV(w http.ResponseWriter, r *http.Request) {
	kb, q, ok := h.kvRequest(w, r)
	if !ok {
		return
	}
	key, opts, ok := kvWriteTarget(w, r, q, true)
	if !ok {
		return
	}
	if opts.Session, ok = h.sessionParam(w, q); !ok {
		return
	}
	if opts.Session != 0 && opts.Ephemeral {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "session: a key is bound to its member (?ephemeral) or to a session (?session=), not both")
		return
	}
	var req KVPutRequest
	if !decodeBody(w, r, &req, true, `{"value": "aGVsbG8="} (the value in base64)`) {
		return
	}
	if len(req.Value) > MaxValueSize {
		WriteError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the value is %d bytes long, more than the %d allowed", len(req.Value), MaxValueSize))
		return
	}
	res, err := kb.KVPut(r.Context(), key, req.Value, opts)
	h.kvAnswer(w, r, res, err)
}

// deleteKV serves DELETE /v1/kv/{key...}.
func (h *handler) deleteKV(w http.ResponseWriter, r *http.Request) {
	kb, q, ok := h.kvRequest(w, r)
	if !ok {
		return
	}
	if q.Has("prefix") {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "prefix: DELETE removes one key; list the keys with GET ?prefix and delete each")
		return
	}
	if q.Has("session") {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "session: only a put binds a key to a session; revoke the session with DELETE /v1/sessions/{id}")
		return
	}
	key, opts, ok := kvWriteTarget(w, r, q, false)
	if !ok {
		return
	}
	var req struct{}
	if !decodeBody(w, r, &req, false, "{}") {
		return
	}
	res, err := kb.KVDelete(r.Context(), key, opts)
	h.kvAnswer(w, r, res, err)
}

// kvAnswer answers a put or delete: the result, or the error (with the
// key as it is for a failed compare).
func (h *handler) kvAnswer(w http.ResponseWriter, r *http.Request, res KVResult, err error) {
	switch {
	case err == nil:
		setIndex(w, res.Revision)
		WriteJSON(w, http.StatusOK, res)
	case r.Context().Err() != nil:
		// the client is gone
	case errors.Is(err, ErrCompareFailed):
		if res.Revision != 0 {
			setIndex(w, res.Revision)
		}
		WriteJSON(w, http.StatusConflict, Error{Error: err.Error(), Code: CodeCompareFailed, KV: res.KV})
	default:
		h.backendError(w, err)
	}
}

// lastKVEvent parses a Last-Event-ID of GET /v1/kv-watch: "REV" (the
// first event of revision REV) or "REV.N" (its event N, from 0). It
// returns the revision to watch from and how many of its events the client
// has.
func lastKVEvent(s string) (from, have uint64, ok bool) {
	revS, nS, dotted := strings.Cut(s, ".")
	rev, err := strconv.ParseUint(revS, 10, 64)
	if err != nil || rev == 0 {
		return 0, 0, false
	}
	if !dotted {
		return rev, 1, true
	}
	n, err := strconv.ParseUint(nS, 10, 64)
	if err != nil || n == 0 || n == ^uint64(0) {
		return 0, 0, false
	}
	return rev, n + 1, true
}

// KVEventID is the SSE id of event n (from 0) of revision rev on GET
// /v1/kv-watch: "REV" for the first (almost every revision has one
// event), "REV.N" for the others (a member's ephemeral keys deleted at
// once). Last-Event-ID takes it back.
func KVEventID(rev, n uint64) string {
	if n == 0 {
		return strconv.FormatUint(rev, 10)
	}
	return strconv.FormatUint(rev, 10) + "." + strconv.FormatUint(n, 10)
}

// kvWatch serves GET /v1/kv-watch: Server-Sent Events, one "put" or
// "delete" event per change of the keys under ?prefix from revision
// ?from (default: the changes after now), each with an id that
// Last-Event-ID resumes after; a "compacted" event, and the end of the
// stream, when the revision is older than the history kept. The
// X-QCluster-Index header is the revision the stream starts after.
func (h *handler) kvWatch(w http.ResponseWriter, r *http.Request) {
	kb, q, ok := h.kvRequest(w, r)
	if !ok {
		return
	}
	prefix := q.Get("prefix")
	if msg := prefixProblem(prefix); msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return
	}
	// rev and have: the client has every event before revision rev, and
	// the first have events of rev.
	var rev, have uint64
	if q.Has("from") {
		s := q.Get("from")
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("from: %q is not a revision; give one such as from=42 (leave it out to watch from now)", truncate(s, 40)))
			return
		}
		rev = n
	}
	if s := strings.TrimSpace(r.Header.Get("Last-Event-ID")); s != "" {
		var ok bool
		if rev, have, ok = lastKVEvent(s); !ok {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("Last-Event-ID: %q is not an event id; send the id of the last event received", truncate(s, 40)))
			return
		}
	}
	markWaited(w)
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	events, start, err := kb.KVWatch(ctx, prefix, rev)
	var ce *CompactedError
	if err != nil && !errors.As(err, &ce) {
		h.fail(w, r, err)
		return
	}
	var buf bytes.Buffer
	if ce != nil {
		w.WriteHeader(http.StatusOK)
		writeCompacted(&buf, ce)
		h.flushEvent(w, rc, &buf)
		return
	}
	if rev == 0 {
		rev = start // from now
	}
	if rev > 0 {
		setIndex(w, rev-1)
	}
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(&buf, "retry: %d\n\n", sseRetryMS)
	if !h.flushEvent(w, rc, &buf) {
		return
	}
	// cur and idx: the revision of the subscription's last event, and its
	// number within the revision.
	var cur, idx uint64
	sent := false // the subscription delivered an event
	keepAlive := time.NewTimer(h.opts.KeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil || !sent {
					return // the peer stops, or the watch ended again at once
				}
				// The reader fell behind the history: watch again from
				// where the client is.
				events, _, err = kb.KVWatch(ctx, prefix, rev)
				if errors.As(err, &ce) {
					writeCompacted(&buf, ce)
					h.flushEvent(w, rc, &buf)
					return
				}
				if err != nil {
					return
				}
				cur, sent = 0, false
				continue
			}
			sent = true
			if ev.Revision != cur {
				cur, idx = ev.Revision, 0
			} else {
				idx++
			}
			if cur < rev || (cur == rev && idx < have) {
				continue // the client has it
			}
			rev, have = cur, idx+1
			fmt.Fprintf(&buf, "id: %s\nevent: %s\ndata: ", KVEventID(cur, idx), ev.Type)
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

// writeCompacted appends the "compacted" event to buf.
func writeCompacted(buf *bytes.Buffer, ce *CompactedError) {
	fmt.Fprintf(buf, "event: %s\ndata: ", KVEventCompacted)
	encodeData(buf, KVCompacted{Oldest: ce.Oldest})
}

// lock serves POST /v1/locks/{name}: it takes the lock (waiting up to
// ?wait=), then holds it while the request stays open, in an event stream:
// "acquired" first, "lost" if the lock is lost. The lock is released when
// the client goes away. With ?session=ID the lock is bound to the session
// instead and the answer is a LockEvent at once (see lockInSession).
func (h *handler) lock(w http.ResponseWriter, r *http.Request) {
	kb, q, ok := h.kvRequest(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if msg := lockNameProblem(name); msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return
	}
	wait := DefaultLockWait
	if q.Has("wait") {
		s := q.Get("wait")
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("wait: %q is not a positive duration; give one such as wait=30s", truncate(s, 40)))
			return
		}
		wait = d
	}
	wait = min(wait, h.opts.MaxWait)
	session, ok := h.sessionParam(w, q)
	if !ok {
		return
	}
	var req struct{}
	if !decodeBody(w, r, &req, false, "{}") {
		return
	}
	if session != 0 {
		h.lockInSession(w, r, name, session, wait)
		return
	}
	markWaited(w)
	lctx, cancel := context.WithTimeout(r.Context(), wait)
	token, lost, err := kb.Lock(lctx, name)
	cancel()
	if err != nil {
		switch {
		case r.Context().Err() != nil:
			// the client is gone
		case errors.Is(err, context.DeadlineExceeded):
			WriteError(w, http.StatusRequestTimeout, CodeTimeout, fmt.Sprintf("the lock %q is held by another holder; it was not released within %v (?wait=)", truncate(name, 80), wait))
		default:
			h.backendError(w, err)
		}
		return
	}
	released := false
	defer func() {
		if released {
			return
		}
		// The client went away, or its stream broke: release the lock
		// (the request's context is done by now).
		uctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		defer cancel()
		_ = kb.Unlock(uctx, name, token)
	}()
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	setIndex(w, token)
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n\nevent: %s\ndata: ", sseRetryMS, LockEventAcquired)
	encodeData(&buf, LockEvent{Name: name, Token: token})
	if !h.flushEvent(w, rc, &buf) {
		return
	}
	keepAlive := time.NewTimer(h.opts.KeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return // the client is gone: released by the deferred Unlock
		case <-lost:
			released = true
			fmt.Fprintf(&buf, "event: %s\ndata: ", LockEventLost)
			encodeData(&buf, LockEvent{Name: name, Token: token})
			h.flushEvent(w, rc, &buf)
			return
		case <-keepAlive.C:
			buf.WriteString(": keep-alive\n\n")
		}
		if !h.flushEvent(w, rc, &buf) {
			return
		}
		keepAlive.Reset(h.opts.KeepAlive)
	}
}

// lockNameProblem describes what is wrong with a lock name, or returns "".
func lockNameProblem(name string) string {
	switch {
	case name == "":
		return "the lock name is empty; name one in the path, such as /v1/locks/backup"
	case len(name) > MaxLockNameSize:
		return fmt.Sprintf("the lock name is %d bytes long, more than the %d allowed", len(name), MaxLockNameSize)
	case !utf8.ValidString(name):
		return "the lock name is not valid UTF-8"
	case strings.IndexFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
		return fmt.Sprintf("the lock name %q contains a control character", name)
	}
	return ""
}
