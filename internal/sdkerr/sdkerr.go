// Package sdkerr holds the SDK's sentinel errors, so that internal packages
// (such as internal/join) can return them without importing the root
// package, which re-exports each one under the same name
// (qcluster.ErrNoLeader is sdkerr.ErrNoLeader, and so on). Their meaning is
// documented there.
package sdkerr

import (
	"errors"
	"fmt"
)

// The SDK's errors (see the root package's Err* variables).
var (
	ErrNoLeader        = errors.New("qcluster: no leader")
	ErrClosed          = errors.New("qcluster: closed")
	ErrNotStarted      = errors.New("qcluster: not started")
	ErrNotLeader       = errors.New("qcluster: not the leader")
	ErrUnknownPeer     = errors.New("qcluster: unknown peer")
	ErrTransferFailed  = errors.New("qcluster: leadership transfer failed")
	ErrConflict        = errors.New("qcluster: conflicts with the membership")
	ErrWrongCluster    = errors.New("qcluster: another cluster")
	ErrInvalidMember   = errors.New("qcluster: invalid member")
	ErrInvalidMetadata = errors.New("qcluster: invalid metadata")
	ErrWouldLoseQuorum = fmt.Errorf("%w: the voters left could not elect a leader", ErrConflict)
	ErrUnauthorized    = errors.New("qcluster: the peer refused the API token")
	ErrMasterless      = errors.New("qcluster: not available in masterless mode")
)
