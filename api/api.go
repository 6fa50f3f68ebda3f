// Package api is QCluster's HTTP API, version 1: the JSON types on the wire
// and the handlers that serve them on a peer's listen port.
//
//	GET  /v1/status               this peer's view: role, term, leader, lease
//	GET  /v1/leader               the leader as a Peer, or 503 {"error": ..., "code": "no_leader"}
//	GET  /v1/peers                every member: identifier, host, port, metadata, leader, self
//	GET  /v1/peers/{identifier}   one member, or 404 "unknown_peer"
//	GET  /v1/watch                Server-Sent Events: one "leader" event per leadership change
//	POST /v1/leader/transfer      the leader hands over to a target ({"identifier": ...} or ?to=)
//	POST /v1/leader/resign        the leader hands over to the best other peer
//	GET  /healthz                 the process is alive
//	GET  /readyz                  200 while a leader is known, else 503
//	GET  /metrics                 Prometheus metrics (when Options.Metrics is set)
//
// Blocking queries. GET /v1/status and GET /v1/leader answer with an
// X-QCluster-Index header: a number that grows with every leadership change
// this peer observes. Given ?index=N (the index of an earlier answer) they
// answer at once when the peer's index differs from N (it moved on, or the
// peer restarted and counts again), and otherwise wait until it changes or
// ?wait= (a Go duration such as "30s"; default and maximum MaxWait, 5m)
// passes, then answer with the state at that moment. The index is per peer:
// a client that moves to another peer may get one answer at once that tells
// it nothing new.
//
// Errors are JSON objects {"error": "...", "code": "..."} with a matching
// HTTP status; Code is stable (see the Code constants). Request bodies are
// limited (Options.MaxBodyBytes, 413 "too_large"). When Options.Token is set,
// the POST endpoints require "Authorization: Bearer <token>" (401
// "unauthorized" otherwise); the token is compared in constant time.
//
// New fields may be added to every JSON object; clients must ignore fields
// they do not know.
package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Peer is a cluster member as the API shows it.
type Peer struct {
	// Identifier is the member's unique name.
	Identifier string `json:"identifier"`
	// Host and Port reach the member's QCluster port (and API).
	Host string `json:"host"`
	Port int    `json:"port"`
	// Metadata is the member's custom metadata from the config.
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Status is this peer's view of the cluster (GET /v1/status, and the data of
// every /v1/watch event).
type Status struct {
	// Identifier names this peer.
	Identifier string `json:"identifier"`
	// Role is "follower", "pre-candidate", "candidate" or "leader".
	Role string `json:"role"`
	// Term is the current Raft term; while leading, the fencing token.
	Term uint64 `json:"term"`
	// Leader is the leader this peer knows of, or null.
	Leader *Peer `json:"leader"`
	// IsLeader reports whether this peer holds the leader lease now.
	IsLeader bool `json:"is_leader"`
	// LeaseRemainingMS is how long the lease is still valid (leader only).
	LeaseRemainingMS float64 `json:"lease_remaining_ms"`
	// Index grows by one with every change of leadership this peer
	// observes (role, term, leader, lease). It is also the X-QCluster-Index
	// header and the id of /v1/watch events. It is per peer, and it starts
	// from a large number taken from the peer's start time, so it does not
	// go back when the peer restarts (it stays below 2^53).
	Index uint64 `json:"index"`
	// Voters are the identifiers of the voting members.
	Voters []string `json:"voters"`
}

// Member is one member of the cluster as GET /v1/peers shows it: a Peer
// (its fields appear at the top level of the JSON object) and what the
// answering peer knows about it. Later versions add fields (health).
type Member struct {
	Peer
	// Voter reports whether the member votes in elections.
	Voter bool `json:"voter"`
	// IsLeader reports whether the answering peer knows this member as
	// the current leader.
	IsLeader bool `json:"is_leader"`
	// IsSelf reports whether this member is the peer that answered.
	IsSelf bool `json:"is_self"`
}

// PeerList is the answer to GET /v1/peers.
type PeerList struct {
	// Index is the answering peer's change index (as in Status).
	Index uint64 `json:"index"`
	// Peers are the members, sorted by identifier.
	Peers []Member `json:"peers"`
}

// TransferRequest is the optional body of POST /v1/leader/transfer.
type TransferRequest struct {
	// Identifier names the member that should lead; empty means the best
	// other voter (like POST /v1/leader/resign).
	Identifier string `json:"identifier,omitempty"`
}

// TransferResult is the answer to POST /v1/leader/transfer and
// POST /v1/leader/resign once another peer leads.
type TransferResult struct {
	// From is the identifier of the peer that led and handed over.
	From string `json:"from"`
	// Leader is the new leader, as the old one sees it (null in the rare
	// case that it was lost again by the time the answer was written).
	Leader *Peer `json:"leader"`
	// Term is the old leader's term once it saw the new leader: the new
	// leader's term.
	Term uint64 `json:"term"`
	// Index is the old leader's change index at that moment.
	Index uint64 `json:"index"`
	// DurationMS is how long the hand-over took, from the request until
	// the old leader saw the new one.
	DurationMS float64 `json:"duration_ms"`
}

// Health is the answer to GET /healthz and, while ready, GET /readyz.
type Health struct {
	// Status is "ok" (healthz) or "ready" (readyz).
	Status string `json:"status"`
	// Identifier names the answering peer.
	Identifier string `json:"identifier,omitempty"`
	// Leader is the identifier of the known leader (readyz).
	Leader string `json:"leader,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	// Error is a human-readable message.
	Error string `json:"error"`
	// Code is a stable machine-readable code, e.g. "no_leader".
	Code string `json:"code"`
	// Leader is the current leader, with code "not_leader" (the request
	// must go to it).
	Leader *Peer `json:"leader,omitempty"`
}

// Error codes, with the HTTP status they come with.
const (
	CodeNoLeader         = "no_leader"          // 503: no leader is known
	CodeNotFound         = "not_found"          // 404: no such endpoint
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeBadRequest       = "bad_request"        // 400: a bad parameter or body
	CodeUnauthorized     = "unauthorized"       // 401: missing or wrong bearer token
	CodeNotLeader        = "not_leader"         // 409: the call must go to the leader (Error.Leader)
	CodeUnknownPeer      = "unknown_peer"       // 404 (GET /v1/peers/{id}) or 400 (transfer target)
	CodeNoTransferee     = "no_transferee"      // 409: no other voter to hand leadership to
	CodeTransferFailed   = "transfer_failed"
	CodeTooLarge         = "too_large"   // 413: request body over the limit
	CodeTimeout          = "timeout"     // 504: a hand-over did not complete in time
	CodeUnavailable      = "unavailable" // 503: the peer is stopping
	CodeInternal         = "internal"    // 500
)

// IndexHeader is the response header that carries the answering peer's
// change index (Status.Index).
const IndexHeader = "X-QCluster-Index"

// Errors a Backend returns; the handlers map them to responses. Wrap them
// with %w to add detail (the message is shown to the client).
var (
	// ErrNotLeader: the call must be made on the leader (409 not_leader,
	// or 503 no_leader when no leader is known).
	ErrNotLeader = errors.New("this peer is not the leader")
	// ErrUnknownPeer: no member has that identifier, or it names the
	// leader itself (400 unknown_peer).
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrNoTransferee: there is no other voter to hand leadership to (409).
	ErrNoTransferee = errors.New("no other voter to hand leadership to")
	// ErrTransferFailed: the peer chosen to take over did not (it is down
	// or far behind); this peer leads on (409).
	ErrTransferFailed = errors.New("leadership transfer failed")
	// ErrUnavailable: the peer is stopping or not running (503).
	ErrUnavailable = errors.New("the peer is not running")
)

// Backend is what the handlers read and act on: one running peer.
// Implementations must be safe for concurrent use.
type Backend interface {
	// Status returns this peer's view now. Its Index must be read before
	// the rest, so that the body is never older than its index.
	Status() Status

	// Wait returns the Status once its Index differs from index: at once
	// if it already does, else as soon as it changes. The Status returned
	// must be the one published with its Index. When ctx ends first it
	// returns ctx's error; when the peer stops, ErrUnavailable. It must
	// never make the peer's publisher wait.
	Wait(ctx context.Context, index uint64) (Status, error)

	// Peers returns every member, this peer included, sorted by
	// identifier.
	Peers() []Member

	// Transfer asks this peer, which must be the leader, to hand
	// leadership to the member named identifier (empty: the best other
	// voter), and waits until another peer leads. Errors: ErrNotLeader,
	// ErrUnknownPeer, ErrNoTransferee, ErrUnavailable, or
	// context.DeadlineExceeded when the hand-over did not complete in time
	// (the backend may bound it by less than ctx).
	Transfer(ctx context.Context, identifier string) (TransferResult, error)
}

// Defaults for the zero fields of Options.
const (
	DefaultMaxBodyBytes = 64 << 10
	DefaultMaxWait      = 5 * time.Minute
	DefaultKeepAlive    = 15 * time.Second
)

// Options configures the handler. The zero value is usable.
type Options struct {
	// Token, when not empty, is the bearer token the mutating endpoints
	// require. Default: "" (no authentication).
	Token string
	// MaxBodyBytes limits request bodies; larger ones get 413. Default
	// DefaultMaxBodyBytes (64 KiB).
	MaxBodyBytes int64
	// MaxWait caps (and is the default of) a blocking query's ?wait=.
	// Default DefaultMaxWait (5m).
	MaxWait time.Duration
	// KeepAlive is how often /v1/watch sends a comment line while nothing
	// changes, so proxies and clients see the stream is alive. Default
	// DefaultKeepAlive (15s).
	KeepAlive time.Duration
	// Metrics, when set, serves GET /metrics (such as a promhttp handler).
	// Default: nil (/metrics is 404 like any unknown path).
	Metrics http.Handler
	// OnRequest, when set, is called after every request with its route,
	// status code and duration (request metrics). It is called from the
	// request's goroutine, concurrently, and must not block. Default: nil.
	OnRequest func(RequestInfo)
}

// RequestInfo describes one answered request, for Options.OnRequest.
type RequestInfo struct {
	// Route is the pattern of the endpoint that answered, such as
	// "/v1/leader" or "/v1/peers/{identifier}" (see Routes), or RouteOther:
	// a small fixed set, fit for a metric label.
	Route string
	// Code is the HTTP status code sent (200 when the handler wrote none).
	Code int
	// Duration is the time from the handler starting to its return.
	Duration time.Duration
	// Waited reports a request that waits for changes by design (a
	// blocking query with ?index=, or a /v1/watch stream): its Duration
	// measures the wait, not the peer's speed.
	Waited bool
}

// RouteOther is RequestInfo.Route for a request no endpoint matched.
const RouteOther = "other"

// Routes returns the route patterns RequestInfo.Route takes, besides
// RouteOther.
func Routes() []string {
	return []string{
		"/v1/status", "/v1/leader", "/v1/peers", "/v1/peers/{identifier}", "/v1/watch",
		"/v1/leader/transfer", "/v1/leader/resign", "/healthz", "/readyz", "/metrics",
	}
}

// NewHandler returns the v1 API handler over b, with default Options.
func NewHandler(b Backend) http.Handler { return NewHandlerWithOptions(b, Options{}) }

// NewHandlerWithOptions returns the v1 API handler over b.
func NewHandlerWithOptions(b Backend, opts Options) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
	h := &handler{b: b, opts: opts}
	if opts.Token != "" {
		h.tokenHash = sha256.Sum256([]byte(opts.Token))
	}
	mux := http.NewServeMux()
	handle := func(pattern string, hf http.HandlerFunc) { mux.HandleFunc(pattern, routed(pattern, hf)) }
	handle("/v1/status", only(http.MethodGet, h.getStatus))
	handle("/v1/leader", only(http.MethodGet, h.getLeader))
	handle("/v1/peers", only(http.MethodGet, h.getPeers))
	handle("/v1/peers/{identifier}", only(http.MethodGet, h.getPeer))
	handle("/v1/watch", only(http.MethodGet, h.watch))
	handle("/v1/leader/transfer", only(http.MethodPost, h.mutating(h.transfer)))
	handle("/v1/leader/resign", only(http.MethodPost, h.mutating(h.resign)))
	handle("/healthz", only(http.MethodGet, h.healthz))
	handle("/readyz", only(http.MethodGet, h.readyz))
	if opts.Metrics != nil {
		handle("/metrics", only(http.MethodGet, opts.Metrics.ServeHTTP))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opts.OnRequest != nil {
			rec := &recorder{ResponseWriter: w, route: RouteOther}
			start := time.Now()
			defer func() {
				opts.OnRequest(RequestInfo{Route: rec.route, Code: rec.status(), Duration: time.Since(start), Waited: rec.waited})
			}()
			w = rec
		}
		if !strings.HasPrefix(r.URL.Path, "/") {
			// "OPTIONS *" and other non-path targets, which ServeMux
			// would answer with a bare 400.
			WriteError(w, http.StatusBadRequest, CodeBadRequest, "the request target must be a path such as /v1/status")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type handler struct {
	b         Backend
	opts      Options
	tokenHash [sha256.Size]byte
}

func (h *handler) getStatus(w http.ResponseWriter, r *http.Request) {
	st, ok := h.read(w, r)
	if !ok {
		return
	}
	setIndex(w, st.Index)
	WriteJSON(w, http.StatusOK, st)
}

func (h *handler) getLeader(w http.ResponseWriter, r *http.Request) {
	st, ok := h.read(w, r)
	if !ok {
		return
	}
	setIndex(w, st.Index)
	if st.Leader == nil {
		writeNoLeader(w)
		return
	}
	WriteJSON(w, http.StatusOK, st.Leader)
}

func writeNoLeader(w http.ResponseWriter) {
	WriteError(w, http.StatusServiceUnavailable, CodeNoLeader, "no leader is elected: a majority of the peers is not reachable, or an election is in progress")
}

func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set(IndexHeader, strconv.FormatUint(index, 10))
}

// read returns the Status for a GET, waiting when the request is a blocking
// query (?index=). It has answered the request itself when ok is false.
func (h *handler) read(w http.ResponseWriter, r *http.Request) (st Status, ok bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the query string cannot be parsed: "+err.Error())
		return Status{}, false
	}
	index, wait, blocking, msg := parseBlocking(q, h.opts.MaxWait)
	if msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return Status{}, false
	}
	if !blocking {
		return h.b.Status(), true
	}
	markWaited(w)
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	st, err = h.b.Wait(ctx, index)
	switch {
	case err == nil:
		return st, true
	case r.Context().Err() != nil:
		return Status{}, false // the client is gone
	case errors.Is(err, context.DeadlineExceeded):
		return h.b.Status(), true // the wait ended with no change
	}
	h.backendError(w, err)
	return Status{}, false
}

// parseBlocking reads ?index= and ?wait=. A query is blocking when index is
// given; wait defaults to, and is capped at, maxWait. msg explains a bad
// value.
func parseBlocking(q url.Values, maxWait time.Duration) (index uint64, wait time.Duration, blocking bool, msg string) {
	wait = maxWait
	if q.Has("wait") {
		s := q.Get("wait")
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			if _, nerr := strconv.ParseFloat(s, 64); nerr == nil && s != "" {
				return 0, 0, false, fmt.Sprintf("wait: %q has no unit; give a duration such as wait=%ss", s, s)
			}
			return 0, 0, false, fmt.Sprintf("wait: %q is not a duration; give one such as wait=30s or wait=5m", s)
		case d < 0:
			return 0, 0, false, fmt.Sprintf("wait: %q is negative; give a duration such as wait=30s", s)
		}
		wait = min(d, maxWait)
	}
	if !q.Has("index") {
		return 0, 0, false, ""
	}
	s := q.Get("index")
	index, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, 0, false, fmt.Sprintf("index: %q is not an index; give the %s header of an earlier answer, such as index=42", s, IndexHeader)
	}
	return index, wait, true, ""
}

func (h *handler) getPeers(w http.ResponseWriter, r *http.Request) {
	idx := h.b.Status().Index
	peers := h.b.Peers()
	if peers == nil {
		peers = []Member{}
	}
	setIndex(w, idx)
	WriteJSON(w, http.StatusOK, PeerList{Index: idx, Peers: peers})
}

func (h *handler) getPeer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("identifier")
	idx := h.b.Status().Index
	for _, m := range h.b.Peers() {
		if m.Identifier == id {
			setIndex(w, idx)
			WriteJSON(w, http.StatusOK, m)
			return
		}
	}
	WriteError(w, http.StatusNotFound, CodeUnknownPeer, fmt.Sprintf("no member has the identifier %q; GET /v1/peers lists them", id))
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, Health{Status: "ok", Identifier: h.b.Status().Identifier})
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	st := h.b.Status()
	setIndex(w, st.Index)
	if st.Leader == nil {
		writeNoLeader(w)
		return
	}
	WriteJSON(w, http.StatusOK, Health{Status: "ready", Identifier: st.Identifier, Leader: st.Leader.Identifier})
}

// mutating wraps a handler that changes the cluster: it checks the bearer
// token and limits the request body.
func (h *handler) mutating(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.Token != "" && !h.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="qcluster"`)
			msg := "this endpoint needs the API token: send the header 'Authorization: Bearer <token>' (the api_token of the peer's config)"
			if r.Header.Get("Authorization") != "" {
				msg = "the Authorization header does not carry the right API token; send 'Authorization: Bearer <token>' with the api_token of the peer's config"
			}
			WriteError(w, http.StatusUnauthorized, CodeUnauthorized, msg)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
		next(w, r)
	}
}

// authorized reports whether r carries the bearer token. Both sides are
// hashed first, so the comparison takes the same time whatever the length
// or content of the token sent.
func (h *handler) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) == 1
}

func (h *handler) transfer(w http.ResponseWriter, r *http.Request) {
	var req TransferRequest
	if !readBody(w, r, &req) {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the query string cannot be parsed: "+err.Error())
		return
	}
	if q.Has("to") {
		to := q.Get("to")
		if to == "" {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, "to: empty; give the identifier of the member that should lead, or leave ?to= out to pick the best one")
			return
		}
		if req.Identifier != "" && req.Identifier != to {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("the body names %q but ?to= names %q; give one of them", req.Identifier, to))
			return
		}
		req.Identifier = to
	}
	h.doTransfer(w, r, req.Identifier)
}

func (h *handler) resign(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !readBody(w, r, &req) {
		return
	}
	h.doTransfer(w, r, "")
}

func (h *handler) doTransfer(w http.ResponseWriter, r *http.Request, target string) {
	res, err := h.b.Transfer(r.Context(), target)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client is gone
		}
		h.backendError(w, err)
		return
	}
	setIndex(w, res.Index)
	WriteJSON(w, http.StatusOK, res)
}

// readBody decodes an optional JSON object body into v (unknown fields are
// an error). It has answered the request itself when it returns false.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			WriteError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit))
			return false
		}
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "cannot read the request body: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the request body must be a JSON object such as {\"identifier\": \"server_b\"}: "+err.Error())
		return false
	}
	if dec.More() {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the request body must hold one JSON object")
		return false
	}
	return true
}

// backendError answers with the response for an error from the Backend.
func (h *handler) backendError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotLeader):
		st := h.b.Status()
		setIndex(w, st.Index)
		if st.Leader == nil {
			writeNoLeader(w)
			return
		}
		WriteJSON(w, http.StatusConflict, Error{
			Error:  fmt.Sprintf("%s is not the leader: send the request to the leader, %s at %s:%d", st.Identifier, st.Leader.Identifier, st.Leader.Host, st.Leader.Port),
			Code:   CodeNotLeader,
			Leader: st.Leader,
		})
	case errors.Is(err, ErrUnknownPeer):
		WriteError(w, http.StatusBadRequest, CodeUnknownPeer, err.Error())
	case errors.Is(err, ErrNoTransferee):
		WriteError(w, http.StatusConflict, CodeNoTransferee, err.Error())
	case errors.Is(err, ErrTransferFailed):
		WriteError(w, http.StatusConflict, CodeTransferFailed, err.Error())
	case errors.Is(err, ErrUnavailable):
		WriteError(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		WriteError(w, http.StatusGatewayTimeout, CodeTimeout, err.Error())
	default:
		WriteError(w, http.StatusInternalServerError, CodeInternal, err.Error())
	}
}

// only restricts h to one method (GET also allows HEAD) and answers others
// with a JSON 405 and an Allow header.
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			allow := method
			if method == http.MethodGet {
				allow = "GET, HEAD"
			}
			w.Header().Set("Allow", allow)
			WriteError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; use "+method)
			return
		}
		h(w, r)
	}
}

// recorder is the ResponseWriter of a request whose metrics are recorded:
// it notes the status code, and the handlers note the route and whether the
// request waits by design.
type recorder struct {
	http.ResponseWriter
	route  string
	code   int
	waited bool
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 { // 1xx responses are not the final status
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes and
// deadlines of /v1/watch).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// routed notes pattern as the route of the requests hf answers.
func routed(pattern string, hf http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*recorder); ok {
			rec.route = pattern
		}
		hf(w, r)
	}
}

// markWaited notes that the request waits for changes by design.
func markWaited(w http.ResponseWriter) {
	if rec, ok := w.(*recorder); ok {
		rec.waited = true
	}
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // messages show <token>, not \u003ctoken\u003e
	_ = enc.Encode(v)
}

// WriteError writes an Error response.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, Error{Error: msg, Code: code})
}
