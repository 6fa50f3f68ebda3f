package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/qcluster/qcluster/api"
)

// Join asks the cluster to add a member (POST /v1/join) and returns once
// the change is committed, with the new member, the leader that added it
// and every member after the change. Any peer takes the request to the
// leader. JoinResult.AlreadyMember reports a member that was there already
// with the same address (nothing changed). Errors match ErrBadRequest (a
// bad identifier, host or port), ErrConflict (the identifier or address is
// another member's), ErrWrongCluster (req.ClusterName is not the
// cluster's), ErrNoLeader, ErrMasterless, ErrUnauthorized, or are an
// *APIError with Code "timeout".
func (c *Client) Join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return api.JoinResult{}, fmt.Errorf("qcluster client: join: the metadata cannot be encoded as JSON: %w", err)
	}
	var res api.JoinResult
	_, err = c.call(ctx, request{method: http.MethodPost, path: "/v1/join", body: body}, &res)
	return res, err
}

// SetMetadata replaces the metadata of the peer at the client's first
// address (PUT /v1/self/metadata) and returns that peer as the cluster
// records it (Member.Identifier names it). It goes to that address only:
// when the peer cannot be reached the error matches ErrUnreachable, and no
// other peer is changed. An empty or nil map clears the metadata. Errors
// match ErrBadRequest (too large, or not encodable as JSON), ErrNoLeader
// (leader mode: no leader to commit the change), ErrUnauthorized, or are
// an *APIError.
func (c *Client) SetMetadata(ctx context.Context, metadata map[string]any) (api.Member, error) {
	if metadata == nil {
		metadata = map[string]any{}
	}
	body, err := json.Marshal(api.MetadataRequest{Metadata: metadata})
	if err != nil {
		return api.Member{}, fmt.Errorf("qcluster client: set metadata: the metadata cannot be encoded as JSON: %w", err)
	}
	var m api.Member
	_, err = c.call(ctx, request{method: http.MethodPut, path: "/v1/self/metadata", body: body, only: c.bases[0]}, &m)
	return m, err
}

// SetHealth sends the application's report for the first address's TTL
// health check (PUT /v1/self/health): status "passing" or "failing", and
// a short output for humans. It returns that peer's status. The report
// must come again within every TTL; while the check fails the peer is no
// candidate for leadership. Errors: an *APIError with code bad_request
// for a bad report or a peer without health_check.ttl.
func (c *Client) SetHealth(ctx context.Context, status, output string) (api.Status, error) {
	body, err := json.Marshal(api.HealthReport{Status: status, Output: output})
	if err != nil {
		return api.Status{}, fmt.Errorf("qcluster client: set health: %w", err)
	}
	var st api.Status
	_, err = c.call(ctx, request{method: http.MethodPut, path: "/v1/self/health", body: body, only: c.bases[0]}, &st)
	return st, err
}

// RemovePeer removes the member named identifier from the cluster (DELETE
// /v1/peers/{identifier}) and returns once the change is committed. Any
// peer takes the request to the leader; removing the leader makes it hand
// over first. Errors match ErrUnknownPeer, ErrConflict (fewer voters than
// the cluster needs would remain), ErrNoLeader, ErrMasterless,
// ErrUnauthorized, or are an *APIError.
func (c *Client) RemovePeer(ctx context.Context, identifier string) error {
	if identifier == "" {
		return fmt.Errorf("qcluster client: remove peer: %w: the identifier is empty", ErrBadRequest)
	}
	_, err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/peers/" + url.PathEscape(identifier)}, nil)
	return err
}

// Leave makes the peer at the client's first address leave the cluster
// gracefully and stop (POST /v1/self/leave); it returns once that peer is
// out of the cluster. It goes to that address only: when the peer cannot
// be reached the error matches ErrUnreachable, and no other peer leaves.
// Errors match ErrNoLeader, ErrUnauthorized, or are an *APIError. The
// result names the peer that left.
func (c *Client) Leave(ctx context.Context) (api.LeaveResult, error) {
	var res api.LeaveResult
	_, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/self/leave", only: c.bases[0]}, &res)
	return res, err
}
