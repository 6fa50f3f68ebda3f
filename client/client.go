// Package client is a Go client for QCluster's HTTP API (package api), which
// every peer serves on its listen port.
//
//	c, err := client.New("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003")
//	if err != nil { ... }
//	leader, err := c.Leader(ctx)
//	switch {
//	case errors.Is(err, client.ErrNoLeader):
//		// no leader elected right now
//	case err != nil:
//		// no peer reachable, ...
//	default:
//		fmt.Println(leader.Identifier, leader.Host, leader.Port, leader.Metadata)
//	}
//
// Several addresses. A call goes to the address that answered last; when
// that peer cannot be reached (connection refused, reset, timed out, or it
// answers 503 "unavailable" because it is stopping) the call moves on to the
// next address, and the one that answers is remembered. Read calls move on
// after any connection error; the calls that change the cluster (Transfer,
// Resign, Join, RemovePeer) only when the connection could not be made at
// all, so a request is never sent twice. Every peer answers for itself: a
// peer cut off from the majority says "no leader" (ErrNoLeader) even while
// the others have one, and the client does not ask another peer then.
//
// TLS. A cluster secured with TLS ("cluster_key" or "tls" in the peers'
// configs) serves the API over HTTPS only. Set Options.TLS to a
// configuration that trusts the cluster CA and, unless the peers have
// "api_client_certs": "optional", presents a client certificate signed by
// it (make one with 'qcluster tls issue'). Addresses without a scheme then
// mean https://, and http:// addresses are refused. https:// addresses
// work without Options.TLS too, with the HTTP client's own configuration.
//
// Calls about one peer. SetMetadata and Leave act on the peer that answers
// them, so they go to the first address only and never move on: moving on
// would change another peer. Give the address of the peer to change first.
//
// Membership. Join adds a member (any peer takes the request to the
// leader), RemovePeer removes one, Peers lists them with their role and
// health, and WatchEvents streams leadership and membership changes.
//
// The KV store and locks. KV returns the cluster's replicated key-value
// store (Get, List, Put and Delete with compare-and-swap, Watch without
// loss), and Lock takes a named lock, held while its request stays open.
//
// Errors. An answer with an error status is an *APIError (with the HTTP
// status and the API's code); errors.Is matches it against ErrNoLeader,
// ErrNotLeader, ErrUnauthorized, ErrUnknownPeer, ErrBadRequest,
// ErrConflict, ErrWrongCluster and ErrMasterless, and for the KV store and
// locks ErrKeyNotFound, ErrCompareFailed, ErrQuota, ErrTooLarge,
// ErrUnsupported and ErrCompacted. When no address could be
// reached the error wraps ErrUnreachable and, joined, each address's error.
// A context's deadline bounds every call; without one a call gives up after
// Options.Timeout.
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/httpclient"
)

// Errors, wrapped with %w or matched by *APIError: test with errors.Is.
// Each that stands for an error code of the API wraps the API's sentinel
// (api.ErrorOf maps the code to it), so it matches that too.
var (
	// ErrNoLeader: the peer knows no leader (503 "no_leader").
	ErrNoLeader error = &sentinel{"qcluster client: no leader", api.ErrNoLeader}
	// ErrNotLeader: the call must go to the leader (409 "not_leader");
	// APIError.Leader names it.
	ErrNotLeader error = &sentinel{"qcluster client: not the leader", api.ErrNotLeader}
	// ErrUnauthorized: the API token is missing or wrong (401).
	ErrUnauthorized error = &sentinel{"qcluster client: unauthorized", api.ErrUnauthorized}
	// ErrUnknownPeer: no member has that identifier ("unknown_peer").
	ErrUnknownPeer error = &sentinel{"qcluster client: unknown peer", api.ErrUnknownPeer}
	// ErrUnreachable: no address could be reached.
	ErrUnreachable = errors.New("qcluster client: no peer reachable")
	// ErrBadRequest: the peer refused a parameter or the body (400
	// "bad_request"); the message says which.
	ErrBadRequest error = &sentinel{"qcluster client: bad request", api.ErrInvalid}
	// ErrConflict: the change conflicts with the membership, such as a
	// duplicate identifier or address (409 "conflict"), or the voters left
	// by a removal could not elect a leader (409 "would_lose_quorum").
	ErrConflict error = &sentinel{"qcluster client: conflicts with the membership", api.ErrConflict}
	// ErrWrongCluster: the request names another cluster than the peer's
	// (409 "wrong_cluster").
	ErrWrongCluster error = &sentinel{"qcluster client: wrong cluster", api.ErrWrongCluster}
	// ErrMasterless: the call needs leader mode and the cluster is
	// masterless (409 "masterless").
	ErrMasterless error = &sentinel{"qcluster client: not available in masterless mode", api.ErrMasterless}
)

// sentinel is one of the package's errors that stands for the API's error
// api: an *APIError whose code maps to api (api.ErrorOf) matches it.
type sentinel struct {
	msg string
	api error
}

func (s *sentinel) Error() string { return s.msg }

// Unwrap returns the API's error s stands for.
func (s *sentinel) Unwrap() error { return s.api }

// APIError is an error answer from a peer.
type APIError struct {
	// Status is the HTTP status, such as 503.
	Status int
	// Code is the API's error code, such as "no_leader" (api.Code...), or
	// "" when the answer was not a QCluster error (a proxy's, say).
	Code string
	// Message is the API's human-readable message.
	Message string
	// Leader is the current leader, with Code "not_leader".
	Leader *api.Peer
	// KV is the key as it is, with Code "compare_failed" (nil when the key
	// does not exist).
	KV *api.KeyValue
	// Addr is the address of the peer that answered.
	Addr string
}

// Error returns the status, code, peer and message.
func (e *APIError) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	return fmt.Sprintf("qcluster client: %s: %d %s: %s", e.Addr, e.Status, code, e.Message)
}

// Is reports whether e matches one of the package's sentinel errors: its
// code maps to that sentinel's API error (ErrConflict matches
// "would_lose_quorum" too, a kind of conflict), or, for ErrUnauthorized,
// its status is 401 (a proxy's too).
func (e *APIError) Is(target error) bool {
	s, ok := target.(*sentinel)
	if !ok {
		return false
	}
	if target == ErrUnauthorized && e.Status == http.StatusUnauthorized {
		return true
	}
	base := api.ErrorOf(e.Code)
	return base != nil && errors.Is(base, s.api)
}

// DefaultPort is the port assumed for an address without one.
const DefaultPort = 7001

// Defaults for the zero fields of Options.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultWatchWait = 30 * time.Second
)

// Options configures a Client. The zero value is usable.
type Options struct {
	// Token is the API token, sent as "Authorization: Bearer <token>" on
	// every request: the calls that change the cluster need it when the
	// peers have an api_token, and reads too when they protect them
	// (api.Options.ProtectReads). Default: none.
	Token string
	// HTTPClient sends the requests. Default: a client whose connections
	// time out after 3s of dialing and are kept alive; no overall timeout
	// (blocking queries wait long, contexts bound the calls).
	HTTPClient *http.Client
	// Timeout bounds a call whose context has no deadline (a blocking
	// query: on top of its wait). Default DefaultTimeout (10s).
	Timeout time.Duration
	// WatchWait is the wait of each blocking query WatchLeader makes. A
	// peer that stops answering without closing its connections (a paused
	// process, a cut network) is noticed after WatchWait + Timeout at
	// most, by WatchLeader and WatchEvents alike. Default
	// DefaultWatchWait (30s).
	WatchWait time.Duration
	// TLS, when not nil, makes the client talk HTTPS: addresses without a
	// scheme get https:// (an http:// address is an error), and the
	// default HTTP client uses a clone of this configuration. For a
	// QCluster peer it must trust the cluster CA and usually present a
	// client certificate (see the package documentation). With
	// HTTPClient set too, only the scheme changes: that client's transport
	// must be configured for TLS itself. Default: none (http://).
	TLS *tls.Config
}

// Client calls the HTTP API of one or more peers of a cluster.
type Client struct {
	bases []*url.URL
	opts  Options
	hc    *http.Client
	cur   atomic.Uint32 // index in bases of the address that answered last
}

// New returns a Client for the peers at addrs: "host:port",
// "http://host:port" or "https://host:port" (the port defaults to 7001;
// with Options.TLS, "host:port" means https://). At least one address is
// required.
func New(addrs ...string) (*Client, error) { return NewWithOptions(Options{}, addrs...) }

// NewWithOptions is New with options.
func NewWithOptions(opts Options, addrs ...string) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("qcluster client: no address given; give a peer's address such as 127.0.0.1:7001")
	}
	c := &Client{opts: opts, hc: opts.HTTPClient}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		u, err := parseAddr(a, scheme)
		if err != nil {
			return nil, err
		}
		if opts.TLS != nil && u.Scheme != "https" {
			return nil, fmt.Errorf("qcluster client: address %q: http:// with TLS configured; use https:// or give host:port alone", a)
		}
		if !seen[u.String()] {
			seen[u.String()] = true
			c.bases = append(c.bases, u)
		}
	}
	if c.hc == nil {
		c.hc = defaultHTTPClient(opts.TLS)
	}
	if c.opts.Timeout <= 0 {
		c.opts.Timeout = DefaultTimeout
	}
	if c.opts.WatchWait <= 0 {
		c.opts.WatchWait = DefaultWatchWait
	}
	return c, nil
}

// defaultHTTPClient is the client's HTTP client unless Options gives one:
// the environment's proxy (a user's client may need it), 16 idle
// connections per peer.
func defaultHTTPClient(tlsCfg *tls.Config) *http.Client {
	return httpclient.New(httpclient.Options{TLS: tlsCfg, Proxy: true, MaxIdleConnsPerHost: 16})
}

// ParseAddr turns a peer address into the base URL the client uses:
// "127.0.0.1:7001" becomes "http://127.0.0.1:7001"; a missing port is
// DefaultPort; http and https are accepted, with an optional path prefix
// (a peer behind a reverse proxy).
func ParseAddr(addr string) (*url.URL, error) { return parseAddr(addr, "http") }

// parseAddr is ParseAddr with the scheme of an address without one.
func parseAddr(addr, scheme string) (*url.URL, error) {
	s := strings.TrimSpace(addr)
	bad := func(why string) (*url.URL, error) {
		return nil, fmt.Errorf("qcluster client: address %q: %s; give one such as 127.0.0.1:7001 or http://db1:7001", addr, why)
	}
	if s == "" {
		return bad("empty")
	}
	if ip := net.ParseIP(s); ip != nil && strings.Contains(s, ":") {
		s = "[" + s + "]" // a bare IPv6 address
	}
	if !strings.Contains(s, "://") {
		s = scheme + "://" + s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return bad(strings.TrimPrefix(err.Error(), "parse "))
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("the scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return bad("no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return bad("no user, query or fragment allowed")
	}
	if p := u.Port(); p == "" {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(DefaultPort))
	} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return bad("the port must be 1-65535")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Addrs returns the base URLs of the client's peers, in order.
func (c *Client) Addrs() []string {
	out := make([]string, len(c.bases))
	for i, u := range c.bases {
		out[i] = u.String()
	}
	return out
}

// CloseIdleConnections closes the idle keep-alive connections of the
// client's HTTP client.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Addr returns the base URL of the peer that answered last (the first one
// before any call).
func (c *Client) Addr() string { return c.bases[c.cur.Load()].String() }

// Status returns the view of the peer that answers (GET /v1/status).
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	_, err := c.get(ctx, "/v1/status", &st)
	return st, err
}

// Leader returns the leader as the answering peer knows it
// (GET /v1/leader). With no leader, the error matches ErrNoLeader.
func (c *Client) Leader(ctx context.Context) (api.Peer, error) {
	var p api.Peer
	_, err := c.get(ctx, "/v1/leader", &p)
	return p, err
}

// Peers returns every member of the cluster, sorted by identifier
// (GET /v1/peers).
func (c *Client) Peers(ctx context.Context) ([]api.Member, error) {
	var list api.PeerList
	_, err := c.get(ctx, "/v1/peers", &list)
	return list.Peers, err
}

// Peer returns one member (GET /v1/peers/{identifier}); an unknown
// identifier matches ErrUnknownPeer.
func (c *Client) Peer(ctx context.Context, identifier string) (api.Member, error) {
	var m api.Member
	_, err := c.get(ctx, "/v1/peers/"+url.PathEscape(identifier), &m)
	return m, err
}

// Transfer asks the leader to hand leadership to the member named
// identifier (empty: the best other voter) and returns once it leads (any
// other peer, when none is named) (POST /v1/leader/transfer). When the
// peer asked is a follower, the request is sent once more, to the leader
// it names. Errors match ErrUnauthorized, ErrNoLeader, ErrNotLeader
// (leadership moved meanwhile), ErrUnknownPeer, or are an *APIError with
// Code "transfer_failed" (the target did not take over, or another peer
// did instead), "timeout" or "no_transferee".
func (c *Client) Transfer(ctx context.Context, identifier string) (api.TransferResult, error) {
	var body []byte
	if identifier != "" {
		body, _ = json.Marshal(api.TransferRequest{Identifier: identifier})
	}
	return c.transfer(ctx, "/v1/leader/transfer", body)
}

// Resign asks the leader to hand leadership to the best other voter and
// returns once another peer leads (POST /v1/leader/resign), following a
// follower's answer to the leader like Transfer.
func (c *Client) Resign(ctx context.Context) (api.TransferResult, error) {
	return c.transfer(ctx, "/v1/leader/resign", nil)
}

func (c *Client) transfer(ctx context.Context, path string, body []byte) (api.TransferResult, error) {
	var res api.TransferResult
	_, err := c.call(ctx, request{method: http.MethodPost, path: path, body: body}, &res)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == api.CodeNotLeader && ae.Leader != nil {
		from, perr := url.Parse(ae.Addr)
		if perr != nil {
			return res, err
		}
		to := &url.URL{Scheme: from.Scheme, Host: net.JoinHostPort(ae.Leader.Host, strconv.Itoa(ae.Leader.Port))}
		_, err = c.call(ctx, request{method: http.MethodPost, path: path, body: body, only: to}, &res)
	}
	return res, err
}

// request is one API call.
type request struct {
	method, path string
	// query returns the query string for the peer at base (nil: none).
	query func(base string) url.Values
	body  []byte
	// only, when not nil, is the one address to send the request to.
	only *url.URL
}

// meta is what a call learned besides the body.
type meta struct {
	addr     string // base URL of the peer that answered
	index    uint64 // its X-QCluster-Index
	hasIndex bool
}

func (c *Client) get(ctx context.Context, path string, out any) (meta, error) {
	return c.call(ctx, request{method: http.MethodGet, path: path}, out)
}

// call sends one request, trying the addresses in turn from the one that
// answered last (or only req.only), and decodes a 2xx answer into out. An
// error answer is an *APIError.
func (c *Client) call(ctx context.Context, req request, out any) (meta, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	bases, start := c.bases, int(c.cur.Load())
	if req.only != nil {
		bases, start = []*url.URL{req.only}, 0
	}
	var errs []error
	for i := range bases {
		k := (start + i) % len(bases)
		m, err := c.once(ctx, req, bases[k], out)
		if err == nil || !tryNext(req.method, err) {
			if req.only == nil && (err == nil || isAnswer(err)) {
				c.cur.Store(uint32(k))
			}
			return m, err
		}
		if ctx.Err() != nil {
			return m, fmt.Errorf("qcluster client: %s %s: %w", req.method, req.path, err)
		}
		errs = append(errs, err)
	}
	return meta{}, &unreachableError{errs: errs}
}

// unreachableError is ErrUnreachable with each address's error.
type unreachableError struct{ errs []error }

func (e *unreachableError) Error() string {
	var b strings.Builder
	b.WriteString(ErrUnreachable.Error())
	for i, err := range e.errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			// "Get "http://h:p/v1/x?...": dial tcp h:p: connect: refused"
			// -> "http://h:p: connect: refused"
			if u, perr := url.Parse(ue.URL); perr == nil {
				b.WriteString(u.Scheme + "://" + u.Host + ": ")
			}
			var op *net.OpError
			if errors.As(ue.Err, &op) && op.Op == "dial" {
				b.WriteString(op.Err.Error()) // "connect: connection refused"
			} else {
				b.WriteString(ue.Err.Error())
			}
			continue
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns ErrUnreachable and each address's error.
func (e *unreachableError) Unwrap() []error { return append([]error{ErrUnreachable}, e.errs...) }

// isAnswer reports whether err is an answer from a peer.
func isAnswer(err error) bool {
	var ae *APIError
	return errors.As(err, &ae)
}

// tryNext reports whether a call that failed with err may go to the next
// address: a peer that is stopping, or one that could not be reached (for
// a POST: only if the connection could not be made, so that a request is
// never sent twice).
func tryNext(method string, err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code == api.CodeUnavailable
	}
	if method == http.MethodGet {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// authorize adds the token, if any, to req.
func (c *Client) authorize(req *http.Request) {
	if c.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.Token)
	}
}

// endpoint returns the URL of path (which may hold escaped identifiers) on
// the peer at base.
func endpoint(base *url.URL, path string) url.URL {
	u := *base
	u.Path = base.Path + path
	u.RawPath = ""
	if strings.Contains(path, "%") {
		u.RawPath = base.Path + path // keep escaped identifiers escaped
		u.Path, _ = url.PathUnescape(u.RawPath)
	}
	return u
}

// apiError returns the *APIError for an answer with an error status and
// body data.
func apiError(addr string, status int, data []byte) *APIError {
	ae := &APIError{Status: status, Addr: addr}
	var e api.Error
	if json.Unmarshal(data, &e) == nil && e.Code != "" {
		ae.Code, ae.Message, ae.Leader, ae.KV = e.Code, e.Error, e.Leader, e.KV
	} else {
		ae.Message = strings.TrimSpace(string(data))
		if len(ae.Message) > 200 {
			ae.Message = ae.Message[:200] + "..."
		}
	}
	return ae
}

func (c *Client) once(ctx context.Context, r request, base *url.URL, out any) (meta, error) {
	method, path := r.method, r.path
	u := endpoint(base, path)
	if r.query != nil {
		u.RawQuery = r.query(base.String()).Encode()
	}
	m := meta{addr: base.String()}
	var rd io.Reader
	body := r.body
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return m, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil || (method != http.MethodGet && method != http.MethodHead) {
		// The API refuses a change without it (415), even with no body:
		// it is what tells it apart from a form a web page made a
		// browser send.
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if s := resp.Header.Get(api.IndexHeader); s != "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			m.index, m.hasIndex = n, true
		}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return m, fmt.Errorf("reading the answer of %s: %w", m.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		return m, apiError(m.addr, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return m, fmt.Errorf("qcluster client: %s %s: the answer of %s is not the expected JSON: %w", method, path, m.addr, err)
		}
	}
	return m, nil
}
