// Package peercall sends a peer's requests to the HTTP API of other peers
// (a join, a request forwarded to the leader, a status probe), with the
// peer's API token and TLS, over the one HTTP client (internal/httpclient).
package peercall

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/httpclient"
)

// maxAnswer bounds the answer read from a peer.
const maxAnswer = 4 << 20

// Client calls other peers' API. Its methods are safe for concurrent use.
type Client struct {
	token    string
	tls      *tls.Config
	apiError func(api.Error) error
	hc       *http.Client
}

// New returns a client that sends token (when not empty) and, when tlsCfg
// is not nil, speaks HTTPS with it. apiError turns another peer's API
// error into the caller's error.
func New(token string, tlsCfg *tls.Config, apiError func(api.Error) error) *Client {
	return &Client{token: token, tls: tlsCfg, apiError: apiError,
		hc: httpclient.New(httpclient.Options{HTTP1: true, TLS: tlsCfg})} // HTTP, not the peer protocol
}

// CloseIdleConnections closes the idle connections to other peers.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Call sends one API request to the peer at addr, with the API token, and
// decodes the JSON answer into out (when not nil). An API error comes back
// through apiError; a non-2xx answer without one as "METHOD addr: HTTP n".
func (c *Client) Call(ctx context.Context, addr, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+addr+path, rd)
	if err != nil {
		return err
	}
	// Every change needs it, even with no body (see api's cross-site
	// checks).
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			return fmt.Errorf("%s %s: HTTP %d", method, addr, resp.StatusCode)
		}
		return c.apiError(e)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
