package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Sessions of the KV store (etcd's leases, Consul's sessions): a session
// has a TTL and must be renewed within it; the keys (PUT /v1/kv/{key}
// ?session=ID) and locks (POST /v1/locks/{name}?session=ID) bound to it
// are deleted when it is revoked or expires.

// Session is a session of the KV store.
type Session struct {
	// ID identifies the session.
	ID uint64 `json:"id"`
	// TTL is how long it lives without a renewal, as a duration such as
	// "10s".
	TTL string `json:"ttl"`
	// Owner is the identifier of the member that granted it (the peer
	// asked): the session also ends when that member leaves or is
	// removed.
	Owner string `json:"owner"`
}

// SessionList is the answer to GET /v1/sessions: the sessions, by ID.
type SessionList struct {
	Sessions []Session `json:"sessions"`
}

// SessionRequest is the body of POST /v1/sessions.
type SessionRequest struct {
	// TTL is the session's time to live, a duration such as "10s"
	// (from one second, or two election timeouts when longer, to 24h).
	TTL string `json:"ttl"`
}

// ErrSessionNotFound: the session does not exist: it expired, was
// revoked, or its member left (404 session_not_found).
var ErrSessionNotFound = errors.New("session not found")

// SessionBackend is implemented by a Backend that serves sessions (with
// the KV store). A Backend without it answers the session endpoints, and
// the ?session parameter, with 501 unsupported.
type SessionBackend interface {
	// SessionCreate grants a session owned by this peer's member.
	// ErrInvalid for a TTL out of bounds.
	SessionCreate(ctx context.Context, ttl time.Duration) (Session, error)
	// SessionRenew renews a session (ErrSessionNotFound).
	SessionRenew(ctx context.Context, id uint64) (Session, error)
	// SessionRevoke ends a session and deletes its keys and locks
	// (ErrSessionNotFound).
	SessionRevoke(ctx context.Context, id uint64) (Session, error)
	// SessionList lists the sessions (linearizable unless stale).
	SessionList(ctx context.Context, stale bool) (SessionList, error)
	// LockInSession waits until the lock name is taken, bound to the
	// session, or ctx ends; it returns the fencing token. The lock is
	// held until the session ends or LockRelease.
	LockInSession(ctx context.Context, name string, session uint64) (token uint64, err error)
	// LockRelease releases the lock name if it is held with token
	// (ErrKeyNotFound when it is not).
	LockRelease(ctx context.Context, name string, token uint64) error
}

// sessionBackend returns the SessionBackend, or answers 501 (or what
// kvBackend answers).
func (h *handler) sessionBackend(w http.ResponseWriter) (SessionBackend, bool) {
	if _, ok := h.kvBackend(w); !ok {
		return nil, false
	}
	sb, ok := h.b.(SessionBackend)
	if !ok {
		WriteError(w, http.StatusNotImplemented, CodeUnsupported, "this peer does not serve sessions")
		return nil, false
	}
	return sb, true
}

// sessionRequest begins every session request: the backend and the
// parsed query.
func (h *handler) sessionRequest(w http.ResponseWriter, r *http.Request) (SessionBackend, url.Values, bool) {
	sb, ok := h.sessionBackend(w)
	if !ok {
		return nil, nil, false
	}
	q, ok := kvQuery(w, r)
	return sb, q, ok
}

// parseSessionID reads a session ID: a positive integer. msg explains a
// bad one.
func parseSessionID(name, s string) (uint64, string) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Sprintf("%s: %q is not a session ID; give the id POST /v1/sessions answered, such as %s=42", name, truncate(s, 40), name)
	}
	return id, ""
}

// pathSessionID reads {id} of the path (a 400 is answered here).
func pathSessionID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, msg := parseSessionID("id", r.PathValue("id"))
	if msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return 0, false
	}
	return id, true
}

// createSession serves POST /v1/sessions.
func (h *handler) createSession(w http.ResponseWriter, r *http.Request) {
	sb, _, ok := h.sessionRequest(w, r)
	if !ok {
		return
	}
	var req SessionRequest
	if !decodeBody(w, r, &req, true, `{"ttl": "10s"}`) {
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil || ttl <= 0 {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("ttl: %q is not a positive duration; give one such as \"10s\"", truncate(req.TTL, 40)))
		return
	}
	s, err := sb.SessionCreate(r.Context(), ttl)
	h.sessionAnswer(w, r, s, err)
}

// listSessions serves GET /v1/sessions.
func (h *handler) listSessions(w http.ResponseWriter, r *http.Request) {
	sb, q, ok := h.sessionRequest(w, r)
	if !ok {
		return
	}
	stale, msg := boolParam(q, "stale")
	if msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return
	}
	list, err := sb.SessionList(r.Context(), stale)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if list.Sessions == nil {
		list.Sessions = []Session{}
	}
	WriteJSON(w, http.StatusOK, list)
}

// renewSession serves PUT /v1/sessions/{id}/renew.
func (h *handler) renewSession(w http.ResponseWriter, r *http.Request) {
	h.sessionByID(w, r, SessionBackend.SessionRenew)
}

// revokeSession serves DELETE /v1/sessions/{id}.
func (h *handler) revokeSession(w http.ResponseWriter, r *http.Request) {
	h.sessionByID(w, r, SessionBackend.SessionRevoke)
}

// sessionByID serves a request on the session its path names, with an
// empty body (or {}): do renews or revokes it, and the session is the
// answer.
func (h *handler) sessionByID(w http.ResponseWriter, r *http.Request,
	do func(SessionBackend, context.Context, uint64) (Session, error)) {
	sb, _, ok := h.sessionRequest(w, r)
	if !ok {
		return
	}
	id, ok := pathSessionID(w, r)
	if !ok {
		return
	}
	var req struct{}
	if !decodeBody(w, r, &req, false, "{}") {
		return
	}
	s, err := do(sb, r.Context(), id)
	h.sessionAnswer(w, r, s, err)
}

// sessionAnswer writes a session, or err.
func (h *handler) sessionAnswer(w http.ResponseWriter, r *http.Request, s Session, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, s)
}

// sessionParam reads ?session= (0 when absent); it has answered the
// request (400, or 501 for a backend without sessions) when ok is false.
func (h *handler) sessionParam(w http.ResponseWriter, q url.Values) (id uint64, ok bool) {
	if !q.Has("session") {
		return 0, true
	}
	id, msg := parseSessionID("session", q.Get("session"))
	if msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return 0, false
	}
	if _, ok := h.sessionBackend(w); !ok {
		return 0, false
	}
	return id, true
}

// lockInSession serves POST /v1/locks/{name}?session=ID once the lock
// name and wait are read: it takes the lock bound to the session and
// answers at once; the lock outlives the request, until the session ends
// or DELETE /v1/locks/{name}?token=.
func (h *handler) lockInSession(w http.ResponseWriter, r *http.Request, name string, session uint64, wait time.Duration) {
	sb := h.b.(SessionBackend) // sessionParam checked it
	markWaited(w)
	lctx, cancel := context.WithTimeout(r.Context(), wait)
	token, err := sb.LockInSession(lctx, name, session)
	cancel()
	if err != nil {
		switch {
		case r.Context().Err() != nil:
		case errors.Is(err, context.DeadlineExceeded):
			WriteError(w, http.StatusRequestTimeout, CodeTimeout, fmt.Sprintf("the lock %q is held by another holder; it was not released within %v (?wait=)", truncate(name, 80), wait))
		default:
			h.backendError(w, err)
		}
		return
	}
	setIndex(w, token)
	WriteJSON(w, http.StatusOK, LockEvent{Name: name, Token: token, Session: session})
}

// unlock serves DELETE /v1/locks/{name}?token=T: it releases the lock if
// it is held with token T (a lock taken with ?session, or a streamed one).
func (h *handler) unlock(w http.ResponseWriter, r *http.Request) {
	sb, q, ok := h.sessionRequest(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if msg := lockNameProblem(name); msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return
	}
	s := q.Get("token")
	token, err := strconv.ParseUint(s, 10, 64)
	if err != nil || token == 0 {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("token: %q is not a fencing token; give the token the lock was acquired with, such as token=42", truncate(s, 40)))
		return
	}
	var req struct{}
	if !decodeBody(w, r, &req, false, "{}") {
		return
	}
	if err := sb.LockRelease(r.Context(), name, token); err != nil {
		h.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, LockEvent{Name: name, Token: token})
}
