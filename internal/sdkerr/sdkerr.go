// Package sdkerr holds the SDK's sentinel errors, so that internal packages
// (such as internal/join) can return them without importing the root
// package, which re-exports each one under its public name (ErrNoLeader is
// NoLeader, and so on). Their meaning is documented there.
package sdkerr

import (
	"errors"
	"fmt"
)

// The SDK's errors (see the root package's Err* variables).
var (
	NoLeader        = errors.New("qcluster: no leader")
	Closed          = errors.New("qcluster: closed")
	NotStarted      = errors.New("qcluster: not started")
	NotLeader       = errors.New("qcluster: not the leader")
	UnknownPeer     = errors.New("qcluster: unknown peer")
	TransferFailed  = errors.New("qcluster: leadership transfer failed")
	Conflict        = errors.New("qcluster: conflicts with the membership")
	WrongCluster    = errors.New("qcluster: another cluster")
	InvalidMember   = errors.New("qcluster: invalid member")
	InvalidMetadata = errors.New("qcluster: invalid metadata")
	WouldLoseQuorum = fmt.Errorf("%w: the voters left could not elect a leader", Conflict)
	Unauthorized    = errors.New("qcluster: the peer refused the API token")
	Masterless      = errors.New("qcluster: not available in masterless mode")
)
