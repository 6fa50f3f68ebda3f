// Package httpclient builds the HTTP clients that talk to QCluster peers'
// API: the Go client (package client), a peer asking another (join,
// forwarding) and the process-cluster test harness, and the one a peer's
// HTTP health check polls the application with (package health). One
// builder, so a fix to how peers are dialled (timeouts, proxies, TLS)
// lands everywhere.
package httpclient

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// Defaults for the zero fields of Options.
const (
	DefaultDialTimeout         = 3 * time.Second
	DefaultMaxIdleConnsPerHost = 2
	DefaultIdleConnTimeout     = 30 * time.Second
)

// Options says how to reach the peers. The zero value is a plain-HTTP
// client that dials peers directly.
type Options struct {
	// TLS, when set, is the client's TLS configuration (cloned). Nil:
	// plain HTTP.
	TLS *tls.Config
	// HTTP1 offers no ALPN protocol and never attempts HTTP/2: a peer's
	// shared port routes a TLS connection by its ALPN, and one without
	// is the API's (the peers' own protocols announce theirs).
	HTTP1 bool
	// Proxy uses the proxy the environment names (HTTPS_PROXY, ...), for
	// users' clients; peers talking to peers never go through one.
	Proxy bool
	// DialTimeout bounds each dial (default DefaultDialTimeout).
	DialTimeout time.Duration
	// MaxIdleConnsPerHost is the number of idle connections kept per
	// peer (default DefaultMaxIdleConnsPerHost).
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes idle connections after it (default
	// DefaultIdleConnTimeout).
	IdleConnTimeout time.Duration
	// DisableCompression does not ask for gzip (small local answers).
	DisableCompression bool
	// Timeout, when set, bounds each request as a whole
	// (http.Client.Timeout), and so its dial and TLS handshake (which
	// default to it). Zero: requests are bounded by their context only.
	Timeout time.Duration
	// NoRedirects answers a redirect with the redirect itself instead of
	// following it.
	NoRedirects bool
	// MaxIdleConns bounds the idle connections kept to all hosts
	// (default 100).
	MaxIdleConns int
}

// New returns an HTTP client for peers' APIs. Unless o.Timeout is set it
// sets no overall timeout: requests are bounded by their context
// (blocking queries and event streams last long by design).
func New(o Options) *http.Client {
	handshake := 10 * time.Second
	if o.Timeout > 0 {
		handshake = o.Timeout
		if o.DialTimeout <= 0 {
			o.DialTimeout = o.Timeout
		}
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 100
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = DefaultIdleConnTimeout
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     !o.HTTP1,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.IdleConnTimeout,
		TLSHandshakeTimeout:   handshake,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    o.DisableCompression,
	}
	if o.Proxy {
		tr.Proxy = http.ProxyFromEnvironment
	}
	if o.TLS != nil {
		tr.TLSClientConfig = o.TLS.Clone()
		if o.HTTP1 {
			tr.TLSClientConfig.NextProtos = nil
		}
	}
	c := &http.Client{Transport: tr, Timeout: o.Timeout}
	if o.NoRedirects {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}
