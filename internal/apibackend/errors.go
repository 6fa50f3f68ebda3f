package apibackend

import (
	"context"
	"errors"
	"fmt"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/sdkerr"
	"github.com/qcluster/qcluster/kv"
)

// sdkAPIErrors pairs the SDK's errors (internal/sdkerr, and package kv's)
// with the API's (package api owns the codes: api.CodeOf, api.ErrorOf).
// ToAPIError reads it from SDK to API, FromAPIError from API to SDK; the
// first pair that matches wins. Pairs marked fromPeer only translate
// another peer's answer: this peer does not answer with them (a peer
// refusing this peer's token is not the caller's token being wrong).
var sdkAPIErrors = []struct {
	sdk, api error
	fromPeer bool
}{
	{sdkerr.ErrInvalidMember, api.ErrInvalid, false}, {sdkerr.ErrInvalidMetadata, api.ErrInvalid, false},
	{sdkerr.ErrWouldLoseQuorum, api.ErrWouldLoseQuorum, false}, {sdkerr.ErrConflict, api.ErrConflict, false}, {sdkerr.ErrWrongCluster, api.ErrWrongCluster, false},
	{sdkerr.ErrNoLeader, api.ErrNoLeader, false}, {sdkerr.ErrMasterless, api.ErrMasterless, false},
	{sdkerr.ErrUnknownPeer, api.ErrUnknownPeer, false}, {sdkerr.ErrNotLeader, api.ErrNotLeader, false},
	{sdkerr.ErrClosed, api.ErrUnavailable, false}, {sdkerr.ErrNotStarted, api.ErrUnavailable, false},
	{sdkerr.ErrUnauthorized, api.ErrUnauthorized, true}, {context.DeadlineExceeded, context.DeadlineExceeded, true},
	{kv.ErrKeyNotFound, api.ErrKeyNotFound, false}, {kv.ErrCompareFailed, api.ErrCompareFailed, false},
	{kv.ErrQuota, api.ErrQuota, false}, {kv.ErrTooLarge, api.ErrTooLarge, false}, {kv.ErrInvalidKey, api.ErrInvalid, false},
	{kv.ErrOutcomeUnknown, context.DeadlineExceeded, false}, {kv.ErrCompacted, api.ErrCompacted, false},
	{kv.ErrSessionNotFound, api.ErrSessionNotFound, false}, {kv.ErrInvalidTTL, api.ErrInvalid, false},
}

// ToAPIError translates the SDK's errors into the API's.
func ToAPIError(err error) error {
	for _, m := range sdkAPIErrors {
		if !m.fromPeer && errors.Is(err, m.sdk) {
			return fmt.Errorf("%w: %w", m.api, err)
		}
	}
	return err
}

// FromAPIError turns another peer's API error into the SDK's error: its
// code's API error (api.ErrorOf), paired with the SDK's in sdkAPIErrors.
func FromAPIError(e api.Error) error {
	if base := api.ErrorOf(e.Code); base != nil {
		for _, m := range sdkAPIErrors {
			if m.api == base {
				return fmt.Errorf("%w: %s", m.sdk, e.Error)
			}
		}
	}
	return fmt.Errorf("qcluster: %s (%s)", e.Error, e.Code)
}
