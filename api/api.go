// Package api is QCluster's HTTP API, version 1: the JSON types on the wire
// and the handlers that serve them on a peer's listen port.
//
//	GET    /v1/status               this peer's view: role, term, leader, lease, mode, joined
//	GET    /v1/leader               the leader as a Peer, or 503 {"error": ..., "code": "no_leader"}
//	GET    /v1/peers                every member: identifier, host, port, metadata, role, state, ...;
//	                                blocking with ?index= (the membership index)
//	GET    /v1/peers/{identifier}   one member, or 404 "unknown_peer"
//	DELETE /v1/peers/{identifier}   remove a member from the cluster
//	GET    /v1/watch                Server-Sent Events: "leader" events (leadership changes)
//	                                and "member" events (membership changes)
//	POST   /v1/join                 add a member (self-registration): a JoinRequest
//	PUT    /v1/self/metadata        replace the answering peer's metadata: a MetadataRequest
//	POST   /v1/self/leave           the answering peer leaves the cluster gracefully and stops
//	POST   /v1/leader/transfer      the leader hands over to a target ({"identifier": ...} or ?to=)
//	POST   /v1/leader/resign        the leader hands over to the best other peer
//	GET    /v1/kv/{key...}          a key of the replicated KV store (leader mode), or with
//	                                ?prefix every key under it; ?stale reads this peer's
//	                                copy; blocking with ?index= (the store's revision)
//	PUT    /v1/kv/{key...}          set a key: a KVPutRequest; ?cas=REV only if its mod
//	                                revision is REV (0: only if absent); ?ephemeral
//	DELETE /v1/kv/{key...}          delete a key; ?cas=REV
//	GET    /v1/kv-watch             Server-Sent Events: every change of the keys under
//	                                ?prefix from revision ?from, resumable with Last-Event-ID
//	POST   /v1/locks/{name}         take a named lock and hold it while the request stays
//	                                open (an event stream: "acquired", "lost")
//	GET    /healthz                 the process is alive
//	GET    /readyz                  200 while the peer is ready (see below), else 503
//	GET    /metrics                 Prometheus metrics (when Options.Metrics is set)
//	GET    /v1/openapi.json         the OpenAPI 3.1 document of this API (see OpenAPI)
//	GET    /ui/                     the dashboard (HTML, CSS, JS; its data comes from the API)
//
// Blocking queries. GET /v1/status and GET /v1/leader answer with an
// X-QCluster-Index header: a number that grows with every leadership change
// this peer observes; GET /v1/peers and GET /v1/peers/{identifier} with
// the membership index (PeerList.Index), which grows with every change of
// the members, their health or roles. Given ?index=N (the index of an
// earlier answer of the same endpoint) they
// answer at once when the peer's index differs from N (it moved on, or the
// peer restarted and counts again), and otherwise wait until it changes or
// ?wait= (a Go duration such as "30s"; default and maximum MaxWait, 5m)
// passes, then answer with the state at that moment. The index is per peer:
// a client that moves to another peer may get one answer at once that tells
// it nothing new.
//
// Events. GET /v1/watch sends a "leader" event (data: the Status, id: its
// Index) for every leadership change, resumable with Last-Event-ID, and a
// "member" event (data: a MemberEvent, no id) for every membership change
// from the moment the stream opens. Member events are not replayed after a
// reconnection: a client that reconnects resyncs with GET /v1/peers.
//
// Readiness. In leader mode GET /readyz answers 200 when this peer is a
// member of the Raft configuration (Status.Joined) and knows a leader; in
// masterless mode when it has joined the gossip cluster. Otherwise 503 with
// code "not_joined" or "no_leader" and a message that says why.
//
// Errors are JSON objects {"error": "...", "code": "..."} with a matching
// HTTP status; Code is stable (see the Code constants). Request bodies are
// limited (Options.MaxBodyBytes, 413 "too_large").
//
// Authorization. When Options.Token is set, the endpoints that change the
// cluster (POST, PUT, DELETE) require "Authorization: Bearer <token>" (401
// "unauthorized" otherwise); the token is compared in constant time. With
// Options.ProtectReads as well, every GET under /v1/ and GET /metrics
// require it too; /healthz and /readyz stay open for probes.
//
// Cross-site requests. A web page can make a browser send a POST to any
// address, the peer's included, without asking it first. So the endpoints
// that change the cluster (every POST, PUT, DELETE and PATCH) require
// "Content-Type: application/json" (parameters such as charset allowed; an
// empty body needs it too), else 415 "unsupported_media_type", and refuse
// with 403 "cross_origin" a request whose Origin header is present and is
// not the peer's own origin (the scheme and host:port the request reached),
// or whose Sec-Fetch-Site header is present and is neither "same-origin"
// nor "none". Programs send no Origin; browsers cannot leave it out, nor
// send a JSON Content-Type across origins without a CORS preflight, which
// the API never grants. Reads are not affected. RequestInfo.Refused counts
// the refusals.
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
	"slices"
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
	// Learners are the identifiers of the non-voting members.
	Learners []string `json:"learners,omitempty"`
	// Mode is "leader" (Raft election) or "masterless" (no leader by
	// design: Role is "none", Leader null, IsLeader false); see ModeLeader
	// and ModeMasterless.
	Mode string `json:"mode"`
	// Joined reports, in leader mode, that this peer is a Raft member (a
	// voter or a learner); in masterless mode, that it has joined gossip
	// (another member is alive, or it has no peers configured). GET
	// /readyz needs it.
	Joined bool `json:"joined"`
	// Check is the state of this peer's application health check
	// (health_check): "passing", "failing" (the peer is no candidate for
	// leadership: it neither campaigns nor takes a transfer, a leader
	// hands over) or "none" (no check).
	Check string `json:"check"`
	// CheckOutput is the check's last output, for humans.
	CheckOutput string `json:"check_output,omitempty"`
	// NoLeader says, in leader mode while this peer knows no leader, why
	// when it can tell (every voter's health check fails, or the raft
	// leader's check fails: it holds no lease and hands over, and no peer
	// names it).
	NoLeader string `json:"no_leader,omitempty"`
}

// Modes of Status.Mode.
const (
	// ModeLeader: the peers elect a leader (Raft).
	ModeLeader = "leader"
	// ModeMasterless: no election; gossip keeps the membership.
	ModeMasterless = "masterless"
)

// Member is one member of the cluster as GET /v1/peers shows it: a Peer
// (its fields appear at the top level of the JSON object) and what the
// answering peer knows about it.
type Member struct {
	Peer
	// Voter reports whether the member votes in elections.
	Voter bool `json:"voter"`
	// IsLeader reports whether the answering peer knows this member as
	// the current leader.
	IsLeader bool `json:"is_leader"`
	// IsSelf reports whether this member is the peer that answered.
	IsSelf bool `json:"is_self"`
	// Role is the member's place in the election as the answering peer
	// sees it: "leader", "follower" (a voter), "learner" (a non-voting
	// member) or "none" (known to gossip but not a Raft member, e.g. while
	// it joins); "member" in masterless mode.
	Role string `json:"role"`
	// State is the member's health from gossip: "alive", "suspect",
	// "dead", "left", or "unknown" (no gossip about it yet).
	State string `json:"state"`
	// Check is the state of the member's application health check as
	// gossip carries it: "passing", "failing" (no candidate for
	// leadership) or "none" (no check, or not known yet).
	Check string `json:"check"`
}

// HealthReport is the body of PUT /v1/self/health: the application's
// report for a TTL health check (health_check.ttl).
type HealthReport struct {
	// Status is "passing" or "failing". Required.
	Status string `json:"status"`
	// Output is a short text for humans (at most 4096 bytes).
	Output string `json:"output,omitempty"`
}

// HealthSetter is implemented by a Backend whose peer takes the
// application's TTL health reports (PUT /v1/self/health answers 404
// not_found with a Backend that does not implement it).
type HealthSetter interface {
	// SetHealth records the report and returns this peer's Status.
	// Errors: ErrInvalid (a bad status or output, or no TTL check in the
	// config), ErrUnavailable.
	SetHealth(ctx context.Context, report HealthReport) (Status, error)
}

// JoinRequest is the body of POST /v1/join: a peer asking to become a
// member of the cluster (self-registration).
type JoinRequest struct {
	// Identifier is the new member's unique name. Required.
	Identifier string `json:"identifier"`
	// Host and Port reach the new member's QCluster port. Required.
	Host string `json:"host"`
	Port int    `json:"port"`
	// Metadata is the new member's custom metadata.
	Metadata map[string]any `json:"metadata,omitempty"`
	// Voter, when false, adds the member as a non-voting learner.
	// Default (absent): a voter.
	Voter *bool `json:"voter,omitempty"`
	// ClusterName is the cluster the new member believes it joins; it must
	// equal the cluster's name (both may be empty).
	ClusterName string `json:"cluster_name,omitempty"`
}

// JoinResult is the answer to POST /v1/join once the member is added.
type JoinResult struct {
	// Member is the new member as the cluster records it.
	Member Member `json:"member"`
	// AlreadyMember reports that the peer was a member already, with the
	// same address; nothing changed.
	AlreadyMember bool `json:"already_member"`
	// Leader is the leader that added it.
	Leader *Peer `json:"leader"`
	// Peers are all members after the change (so the new member can reach
	// them at once).
	Peers []Member `json:"peers"`
}

// MetadataRequest is the body of PUT /v1/self/metadata: the answering
// peer's new metadata, replacing the old (a JSON object, at most 64 KiB
// encoded).
type MetadataRequest struct {
	// Metadata is the new metadata: a JSON object, required ({} clears
	// it). JSON numbers decode as float64.
	Metadata map[string]any `json:"metadata"`
}

// RemoveResult is the answer to DELETE /v1/peers/{identifier} once the
// member is removed.
type RemoveResult struct {
	// Removed is the identifier of the member removed.
	Removed string `json:"removed"`
}

// LeaveResult is the answer to POST /v1/self/leave once the answering
// peer is out of the cluster (it stops right after).
type LeaveResult struct {
	// Left is the identifier of the peer that left.
	Left string `json:"left"`
}

// MemberEvent is the data of a /v1/watch "member" event: a change in the
// membership as the answering peer sees it.
type MemberEvent struct {
	// Type is "joined", "updated", "suspect", "alive" (alive again after
	// suspect or dead), "failed", "left" or "removed".
	Type string `json:"type"`
	// Member is the member right after the change.
	Member Member `json:"member"`
	// Time is when the answering peer saw the change (RFC 3339).
	Time time.Time `json:"time"`
}

// PeerList is the answer to GET /v1/peers.
type PeerList struct {
	// Index is the answering peer's membership index, also the
	// X-QCluster-Index header of GET /v1/peers: it grows with every change
	// of the list this peer observes (a member joining, updated, leaving,
	// removed, its health, and every leadership change, which moves
	// roles). Like Status.Index it is per peer and starts from a large
	// number taken from the peer's start time; it is not Status.Index.
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
	// Leader is the identifier of the known leader (readyz, leader mode).
	Leader string `json:"leader,omitempty"`
	// Mode is the cluster's mode, "leader" or "masterless" (readyz).
	Mode string `json:"mode,omitempty"`
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
	// KV is the key as it is, with code "compare_failed" (absent when the
	// key does not exist).
	KV *KeyValue `json:"kv,omitempty"`
}

// Error codes, with the HTTP status they come with.
const (
	CodeNoLeader             = "no_leader"          // 503: no leader is known
	CodeNotFound             = "not_found"          // 404: no such endpoint
	CodeMethodNotAllowed     = "method_not_allowed" // 405
	CodeBadRequest           = "bad_request"        // 400: a bad parameter or body
	CodeUnauthorized         = "unauthorized"       // 401: missing or wrong bearer token
	CodeCrossOrigin          = "cross_origin"       // 403: a change sent by a web page of another origin
	CodeNotLeader            = "not_leader"         // 409: the call must go to the leader (Error.Leader)
	CodeUnknownPeer          = "unknown_peer"       // 404 (GET or DELETE /v1/peers/{id}) or 400 (transfer target)
	CodeNoTransferee         = "no_transferee"      // 409: no other voter to hand leadership to
	CodeTransferFailed       = "transfer_failed"
	CodeTooLarge             = "too_large"              // 413: request body over the limit
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: a change without Content-Type: application/json
	CodeTimeout              = "timeout"                // 504: a hand-over did not complete in time
	CodeUnavailable          = "unavailable"            // 503: the peer is stopping
	CodeInternal             = "internal"               // 500
	CodeConflict             = "conflict"               // 409: duplicate identifier/address, or it is the last voter
	CodeWouldLoseQuorum      = "would_lose_quorum"      // 409: the voters left by a removal could not elect a leader
	CodeWrongCluster         = "wrong_cluster"          // 409: the request names another cluster
	CodeMasterless           = "masterless"             // 409: the call needs leader mode
	CodeNotJoined            = "not_joined"             // 503 (GET /readyz): this peer is not a member yet
	CodeKeyNotFound          = "key_not_found"          // 404: no such key in the KV store
	CodeCompareFailed        = "compare_failed"         // 409: ?cas= does not match (Error.KV: the key as it is)
	CodeQuota                = "quota"                  // 507: the KV store's size quota would be exceeded
	CodeUnsupported          = "unsupported"            // 501: this peer has no KV store
	CodeSessionNotFound      = "session_not_found"      // 404: no such session (expired, revoked)
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
	// leader itself (400 unknown_peer; 404 for DELETE
	// /v1/peers/{identifier}).
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrNoTransferee: there is no other voter to hand leadership to (409).
	ErrNoTransferee = errors.New("no other voter to hand leadership to")
	// ErrTransferFailed: the peer chosen to take over did not: it is down
	// or far behind, and this peer leads on; or another peer won an
	// election meanwhile and leads instead (409).
	ErrTransferFailed = errors.New("leadership transfer failed")
	// ErrUnavailable: the peer is stopping or not running (503).
	ErrUnavailable = errors.New("the peer is not running")
	// ErrInvalid: a request field is invalid (400 bad_request).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the change conflicts with the membership, e.g. a
	// duplicate identifier or address (409 conflict).
	ErrConflict = errors.New("conflicts with the current membership")
	// ErrWrongCluster: the request names another cluster (409
	// wrong_cluster).
	ErrWrongCluster = errors.New("the request is for another cluster")
	// ErrNoLeader: the change needs a leader and none is known (503
	// no_leader).
	ErrNoLeader = errors.New("no leader is known")
	// ErrMasterless: the call needs leader mode; this cluster is masterless
	// (409 masterless).
	ErrMasterless = errors.New("not available in masterless mode")
	// ErrWouldLoseQuorum: a removal would leave voters of which fewer than
	// a majority are alive (409 would_lose_quorum). It matches ErrConflict
	// too.
	ErrWouldLoseQuorum = fmt.Errorf("%w: the voters left could not elect a leader", ErrConflict)
)

// Backend is what the handlers read and act on: one running peer.
// Implementations must be safe for concurrent use.
type Backend interface {
	// Status returns this peer's view now. Its Index must be read before
	// the rest, so that the body is never older than its index.
	Status() Status

	// Watch returns a channel of this peer's Status: the current one at
	// once, then a Status each time its Index changes. The channel holds
	// one Status and always the latest, so a slow reader skips
	// intermediate ones but never the current one. It is closed when ctx
	// ends or the peer stops, and the subscription ends with it. It must
	// never make the peer's publisher wait. When the peer stops, the last
	// Status it sends, if any, is one published before it began to stop
	// (the peer stopping is not the cluster losing its leader).
	// GET /v1/watch and the blocking queries on the Status (?index=) read
	// it: one subscription per request, ended with the request.
	Watch(ctx context.Context) <-chan Status

	// Peers returns every member, this peer included, sorted by
	// identifier, and the membership index (PeerList.Index). The index
	// must be read before the members, so that the list is never older
	// than its index.
	Peers() PeerList

	// WaitPeers returns Peers once its Index differs from index: at once
	// if it already does, else as soon as it changes. When ctx ends first
	// it returns ctx's error; when the peer stops, ErrUnavailable. It
	// must never make the peer's publisher wait.
	WaitPeers(ctx context.Context, index uint64) (PeerList, error)

	// Transfer asks this peer, which must be the leader, to hand
	// leadership to the member named identifier (empty: the best other
	// voter), and waits until it leads (any other voter, when none is
	// named). Errors: ErrNotLeader, ErrUnknownPeer, ErrNoTransferee,
	// ErrTransferFailed, ErrUnavailable, or
	// context.DeadlineExceeded when the hand-over did not complete in time
	// (the backend may bound it by less than ctx).
	Transfer(ctx context.Context, identifier string) (TransferResult, error)

	// SetMetadata replaces this peer's metadata and returns the peer as
	// the cluster records it. Errors: ErrInvalid (too large, not JSON
	// encodable), ErrNoLeader (leader mode, no leader to commit it),
	// ErrUnavailable, context errors.
	SetMetadata(ctx context.Context, metadata map[string]any) (Member, error)

	// Join adds a member (leader mode; forwarded to the leader when this
	// peer does not lead) and waits until the change is committed.
	// Errors: ErrInvalid (bad identifier, host or port), ErrWrongCluster,
	// ErrConflict (identifier or address already used by another member),
	// ErrNoLeader, ErrMasterless, ErrUnavailable, context errors.
	Join(ctx context.Context, req JoinRequest) (JoinResult, error)

	// RemovePeer removes the member named identifier from the cluster
	// (leader mode; forwarded to the leader) and waits until the change is
	// committed. Removing the leader makes it hand over first. Errors:
	// ErrUnknownPeer, ErrConflict (it is the last voter),
	// ErrWouldLoseQuorum (the voters left could not elect a leader: fewer
	// than a majority of them are alive), ErrNoLeader, ErrMasterless,
	// ErrUnavailable, context errors.
	RemovePeer(ctx context.Context, identifier string) error

	// Leave makes this peer leave the cluster gracefully (see
	// qcluster.Cluster.Leave) and then stop. It returns once the peer is
	// out of the cluster; the peer stops right after (the API answers
	// once more at most).
	Leave(ctx context.Context) error

	// Events returns membership events as they happen, until ctx ends or
	// the peer stops (the channel is then closed). A reader that falls far
	// behind loses events (never the latest Peers view).
	Events(ctx context.Context) <-chan MemberEvent
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
	// (POST, PUT, DELETE) require. Default: "" (no authentication).
	Token string
	// ProtectReads, when true and Token is set, makes every GET under
	// /v1/ (status, leader, peers, watch) and GET /metrics require the
	// token too; /healthz and /readyz stay open for probes. Default: false
	// (reads are open).
	ProtectReads bool
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
	// Refused, when not empty, says why a request that would change the
	// cluster was refused before it reached the Backend:
	// RefusedCrossOrigin (403) or RefusedContentType (415); see
	// RefusedReasons.
	Refused string
}

// RouteOther is RequestInfo.Route for a request no endpoint matched.
const RouteOther = "other"

// Routes returns the route patterns RequestInfo.Route takes, besides
// RouteOther.
func Routes() []string {
	return []string{
		"/v1/status", "/v1/leader", "/v1/peers", "/v1/peers/{identifier}", "/v1/watch",
		"/v1/leader/transfer", "/v1/leader/resign", "/v1/join", "/v1/self/metadata",
		"/v1/self/leave", "/v1/self/health", "/healthz", "/readyz", "/metrics", "/v1/openapi.json", UIPath,
		"/v1/kv/{key...}", "/v1/kv-watch", "/v1/locks/{name}",
		"/v1/sessions", "/v1/sessions/{id}", "/v1/sessions/{id}/renew",
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
	routes := Routes()
	handle := func(pattern string, hf http.HandlerFunc) {
		if !slices.Contains(routes, pattern) {
			// Routes feeds a metric label: it must list every endpoint.
			panic("api: route " + pattern + " is missing from Routes()")
		}
		mux.HandleFunc(pattern, routed(pattern, hf))
	}
	handle("/v1/status", only(http.MethodGet, h.reading(h.getStatus)))
	handle("/v1/leader", only(http.MethodGet, h.reading(h.getLeader)))
	handle("/v1/peers", only(http.MethodGet, h.reading(h.getPeers)))
	handle("/v1/peers/{identifier}", methods(
		method{http.MethodGet, h.reading(h.getPeer)},
		method{http.MethodDelete, h.mutating(h.removePeer)},
	))
	handle("/v1/watch", only(http.MethodGet, h.reading(h.watch)))
	handle("/v1/leader/transfer", only(http.MethodPost, h.mutating(h.transfer)))
	handle("/v1/leader/resign", only(http.MethodPost, h.mutating(h.resign)))
	handle("/v1/join", only(http.MethodPost, h.mutating(h.join)))
	handle("/v1/self/metadata", only(http.MethodPut, h.mutating(h.setMetadata)))
	handle("/v1/self/leave", only(http.MethodPost, h.mutating(h.leave)))
	handle("/v1/self/health", only(http.MethodPut, h.mutating(h.setHealth)))
	handle("/v1/kv/{key...}", methods(
		method{http.MethodGet, h.reading(h.getKV)},
		method{http.MethodPut, h.mutatingLimit(max(opts.MaxBodyBytes, maxKVBodyBytes), h.putKV)},
		method{http.MethodDelete, h.mutating(h.deleteKV)},
	))
	handle("/v1/kv-watch", only(http.MethodGet, h.reading(h.kvWatch)))
	handle("/v1/locks/{name}", methods(
		method{http.MethodPost, h.mutating(h.lock)},
		method{http.MethodDelete, h.mutating(h.unlock)},
	))
	handle("/v1/sessions", methods(
		method{http.MethodGet, h.reading(h.listSessions)},
		method{http.MethodPost, h.mutating(h.createSession)},
	))
	handle("/v1/sessions/{id}", only(http.MethodDelete, h.mutating(h.revokeSession)))
	handle("/v1/sessions/{id}/renew", only(http.MethodPut, h.mutating(h.renewSession)))
	handle("/healthz", only(http.MethodGet, h.healthz))
	handle("/readyz", only(http.MethodGet, h.readyz))
	handle("/v1/openapi.json", only(http.MethodGet, h.reading(h.openAPI)))
	handle(UIPath, only(http.MethodGet, ui()))
	if opts.Metrics != nil {
		handle("/metrics", only(http.MethodGet, h.reading(opts.Metrics.ServeHTTP)))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if opts.OnRequest != nil {
			rec := &recorder{ResponseWriter: w, route: RouteOther}
			start := time.Now()
			defer func() {
				opts.OnRequest(RequestInfo{Route: rec.route, Code: rec.status(), Duration: time.Since(start), Waited: rec.waited, Refused: rec.refused})
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
	return blockingRead(h, w, r, nowOf(h.b.Status), h.waitStatus)
}

// waitStatus returns the first Status of one Watch subscription whose
// Index differs from index. The subscription lasts until ctx ends: the
// caller ends it (blockingRead cancels ctx when the request is answered).
// When the stream ends first, the peer stops: ErrUnavailable.
func (h *handler) waitStatus(ctx context.Context, index uint64) (Status, error) {
	for st := range h.b.Watch(ctx) {
		if st.Index != index {
			return st, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	return Status{}, ErrUnavailable
}

// readPeers returns the PeerList for a GET, waiting when the request is a
// blocking query (?index=). It has answered the request itself when ok is
// false.
func (h *handler) readPeers(w http.ResponseWriter, r *http.Request) (pl PeerList, ok bool) {
	pl, ok = blockingRead(h, w, r, nowOf(h.b.Peers), h.b.WaitPeers)
	if ok && pl.Peers == nil {
		pl.Peers = []Member{}
	}
	return pl, ok
}

// nowOf turns a read that cannot fail into the now of blockingRead.
func nowOf[T any](read func() T) func(context.Context) (T, error) {
	return func(context.Context) (T, error) { return read(), nil }
}

// blockingRead answers a GET with now(), or, for a blocking query
// (?index=N), with wait(ctx, N) within ?wait=, and with now() when the
// wait ends with no change. It has answered the request itself when ok is
// false.
func blockingRead[T any](h *handler, w http.ResponseWriter, r *http.Request, now func(context.Context) (T, error), wait func(context.Context, uint64) (T, error)) (v T, ok bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the query string cannot be parsed: "+err.Error())
		return v, false
	}
	index, d, blocking, msg := parseBlocking(q, h.opts.MaxWait)
	if msg != "" {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, msg)
		return v, false
	}
	if !blocking {
		if v, err = now(r.Context()); err != nil {
			h.fail(w, r, err)
			return v, false
		}
		return v, true
	}
	markWaited(w)
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel() // ends the wait's subscription with the request
	v, err = wait(ctx, index)
	switch {
	case err == nil:
		return v, true
	case r.Context().Err() != nil:
		return v, false // the client is gone
	case errors.Is(err, context.DeadlineExceeded):
		// The wait ended with no change.
		if v, err = now(r.Context()); err == nil {
			return v, true
		}
	}
	h.fail(w, r, err)
	return v, false
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
	pl, ok := h.readPeers(w, r)
	if !ok {
		return
	}
	setIndex(w, pl.Index)
	WriteJSON(w, http.StatusOK, pl)
}

func (h *handler) getPeer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("identifier")
	pl, ok := h.readPeers(w, r)
	if !ok {
		return
	}
	setIndex(w, pl.Index)
	for _, m := range pl.Peers {
		if m.Identifier == id {
			WriteJSON(w, http.StatusOK, m)
			return
		}
	}
	WriteError(w, http.StatusNotFound, CodeUnknownPeer, fmt.Sprintf("no member has the identifier %q; GET /v1/peers lists them", id))
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, Health{Status: "ok", Identifier: h.b.Status().Identifier})
}

// readyz answers 200 while the peer is ready to serve: in leader mode a
// Raft member that knows a leader, in masterless mode a member of the
// gossip cluster.
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	st := h.b.Status()
	setIndex(w, st.Index)
	if st.Mode == ModeMasterless {
		if !st.Joined {
			WriteError(w, http.StatusServiceUnavailable, CodeNotJoined, st.Identifier+" has not joined the cluster yet (masterless mode): none of its configured peers has answered")
			return
		}
		WriteJSON(w, http.StatusOK, Health{Status: "ready", Identifier: st.Identifier, Mode: ModeMasterless})
		return
	}
	if !st.Joined {
		WriteError(w, http.StatusServiceUnavailable, CodeNotJoined, st.Identifier+" is not a member of the cluster yet (neither a voter nor a learner): it is still joining, or it was removed")
		return
	}
	if st.Leader == nil {
		writeNoLeader(w)
		return
	}
	WriteJSON(w, http.StatusOK, Health{Status: "ready", Identifier: st.Identifier, Leader: st.Leader.Identifier, Mode: ModeLeader})
}

// mutating wraps a handler that changes the cluster: it checks the bearer
// token, refuses requests a browser may send from another site (see
// crossSite), and limits the request body.
func (h *handler) mutating(next http.HandlerFunc) http.HandlerFunc {
	return h.mutatingLimit(h.opts.MaxBodyBytes, next)
}

// mutatingLimit is mutating with a body limit of its own (PUT
// /v1/kv/{key...} takes values up to MaxValueSize).
func (h *handler) mutatingLimit(limit int64, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.Token != "" && !h.authorized(r) {
			writeUnauthorized(w, r)
			return
		}
		if reason, status, code, msg := crossSite(r); reason != "" {
			markRefused(w, reason)
			WriteError(w, status, code, msg)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next(w, r)
	}
}

// reading wraps a handler that only reads: it checks the bearer token when
// Options.ProtectReads is set (and a token is configured).
func (h *handler) reading(next http.HandlerFunc) http.HandlerFunc {
	if !h.opts.ProtectReads || h.opts.Token == "" {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.authorized(r) {
			writeUnauthorized(w, r)
			return
		}
		next(w, r)
	}
}

// writeUnauthorized answers 401, saying how to send the token (never the
// token itself).
func writeUnauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="qcluster"`)
	msg := "this endpoint needs the API token: send the header 'Authorization: Bearer <token>' (the api_token of the peer's config)"
	if r.Header.Get("Authorization") != "" {
		msg = "the Authorization header does not carry the right API token; send 'Authorization: Bearer <token>' with the api_token of the peer's config"
	}
	WriteError(w, http.StatusUnauthorized, CodeUnauthorized, msg)
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
		h.fail(w, r, err)
		return
	}
	setIndex(w, res.Index)
	WriteJSON(w, http.StatusOK, res)
}

// fail answers with the response for an error from the Backend, unless
// the client is gone.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client is gone
	}
	h.backendError(w, err)
}

// readBody decodes an optional JSON object body into v (unknown fields are
// an error). It has answered the request itself when it returns false.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeBody(w, r, v, false, `{"identifier": "server_b"}`)
}

// decodeBody decodes a JSON object body into v (unknown fields are an
// error); an empty body is an error when required. example shows a good
// body in messages. It has answered the request itself when it returns
// false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, required bool, example string) bool {
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
		if required {
			WriteError(w, http.StatusBadRequest, CodeBadRequest, "the request body is empty; send a JSON object such as "+example)
			return false
		}
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the request body must be a JSON object such as "+example+": "+err.Error())
		return false
	}
	if dec.More() {
		WriteError(w, http.StatusBadRequest, CodeBadRequest, "the request body must hold one JSON object")
		return false
	}
	return true
}

// backendError answers with the response for an error from the Backend:
// the code and status of the errors table, and for ErrNotLeader the leader
// to ask (or no_leader when none is known).
func (h *handler) backendError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotLeader) {
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
		return
	}
	code, status := CodeOf(err)
	WriteError(w, status, code, err.Error())
}

// only restricts h to one method (GET also allows HEAD) and answers others
// with a JSON 405 and an Allow header.
func only(name string, h http.HandlerFunc) http.HandlerFunc {
	return methods(method{name, h})
}

// method is one method of an endpoint and its handler.
type method struct {
	name string
	h    http.HandlerFunc
}

// methods dispatches a request on its method (GET also answers HEAD) and
// answers others with a JSON 405 and an Allow header.
func methods(ms ...method) http.HandlerFunc {
	var allow, names []string
	for _, m := range ms {
		allow = append(allow, m.name)
		names = append(names, m.name)
		if m.name == http.MethodGet {
			allow = append(allow, http.MethodHead)
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		for _, m := range ms {
			if r.Method == m.name || (m.name == http.MethodGet && r.Method == http.MethodHead) {
				m.h(w, r)
				return
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; use "+strings.Join(names, " or "))
	}
}

// recorder is the ResponseWriter of a request whose metrics are recorded:
// it notes the status code, and the handlers note the route and whether the
// request waits by design.
type recorder struct {
	http.ResponseWriter
	route   string
	code    int
	waited  bool
	refused string
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
