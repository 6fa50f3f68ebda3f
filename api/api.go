// Package api is QCluster's HTTP API, version 1: the JSON types on the wire
// and the handlers that serve them on a peer's listen port.
//
//	GET /v1/status   this peer's view: role, term, leader, lease
//	GET /v1/leader   the leader as a Peer, or 503 {"error": ..., "code": "no_leader"}
//
// Errors are JSON objects {"error": "...", "code": "..."} with a matching
// HTTP status.
package api

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Peer is a cluster member as the API shows it.
type Peer struct {
	Identifier string         `json:"identifier"`
	Host       string         `json:"host"`
	Port       int            `json:"port"`
	Metadata   map[string]any `json:"metadata,omitempty"`
}

// Status is this peer's view of the cluster (GET /v1/status).
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
	// Index increases with every change of leadership this peer observes.
	Index uint64 `json:"index"`
	// Voters are the identifiers of the voting members.
	Voters []string `json:"voters"`
}

// Error is the body of every error response.
type Error struct {
	// Error is a human-readable message.
	Error string `json:"error"`
	// Code is a stable machine-readable code, e.g. "no_leader".
	Code string `json:"code"`
}

// Error codes.
const (
	CodeNoLeader         = "no_leader"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeBadRequest       = "bad_request"
)

// Backend is what the handlers read. Implementations must be safe for
// concurrent use.
type Backend interface {
	Status() Status
	Leader() (Peer, bool)
}

// NewHandler returns the v1 API handler over b.
func NewHandler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/status", only(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, b.Status())
	}))
	mux.HandleFunc("/v1/leader", only(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		p, ok := b.Leader()
		if !ok {
			WriteError(w, http.StatusServiceUnavailable, CodeNoLeader, "no leader is elected: a majority of the peers is not reachable, or an election is in progress")
			return
		}
		WriteJSON(w, http.StatusOK, p)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/") {
			// "OPTIONS *" and other non-path targets, which ServeMux
			// would answer with a bare 400.
			WriteError(w, http.StatusBadRequest, CodeBadRequest, "the request target must be a path such as /v1/status")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// only restricts h to one method (GET also allows HEAD) and answers others
// with a JSON 405 and an Allow header.
func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			w.Header().Set("Allow", method)
			WriteError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; use "+method)
			return
		}
		h(w, r)
	}
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes an Error response.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, Error{Error: msg, Code: code})
}
