// Package apibackend is the peer-facing half of the HTTP API's backend
// (api.Backend, api.HealthSetter): it turns the API's requests into the
// SDK peer's calls, with the API's timeouts, and the SDK's errors
// (internal/sdkerr) into the API's. It reads and drives the peer only
// through Deps; the peer converts its own types (its states, members and
// events) into the API's.
//
// The API's change and membership indexes are the SDK's plus Deps.Base, so
// that an index a client holds never names another state of the same peer
// after a restart (see the root package's apiBackend).
package apibackend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/latest"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

// Deps is what the backend needs from the peer. S is the peer's state type
// (what its Watch sends), E its event type (what its Events sends). Every
// func must be set.
type Deps[S, E any] struct {
	// Base is the offset of the API's indexes from the SDK's.
	Base uint64
	// Identifier names this peer.
	Identifier string
	// Status returns this peer's status now, Base added to its index.
	Status func() api.Status
	// Watch subscribes to the peer's states until ctx ends. StatusOf
	// converts one, Base added to its index, and reports false once the
	// peer is closing: the state Close publishes (no leader) says the peer
	// stops, not that the cluster lost its leader.
	Watch    func(ctx context.Context) <-chan S
	StatusOf func(S) (api.Status, bool)
	// Peers lists the members, Base added to the membership index.
	// WaitMembership waits until the SDK's membership index differs from
	// index (sdkerr.ErrClosed when the peer closes first).
	Peers          func() api.PeerList
	WaitMembership func(ctx context.Context, index uint64) error
	// Events subscribes to the peer's events until ctx ends. MemberEvent
	// converts one, and reports false for the events that are not about
	// membership (leadership: /v1/watch has those).
	Events      func(ctx context.Context) <-chan E
	MemberEvent func(E) (api.MemberEvent, bool)
	// Closed reports whether the peer is closed; IsLeader whether it
	// holds the lease.
	Closed   func() bool
	IsLeader func() bool
	// Transfer hands leadership to identifier, or to the best other voter
	// when identifier is "" (a resignation). TransferTimeout bounds it.
	Transfer        func(ctx context.Context, identifier string) error
	TransferTimeout func(identifier string) time.Duration
	// MembershipTimeout bounds a membership change with no shorter
	// deadline.
	MembershipTimeout func() time.Duration
	// SetHealth records the application's TTL health report.
	SetHealth func(status, output string) error
	// SetMetadata replaces this peer's metadata; Self returns this peer as
	// the members list shows it.
	SetMetadata func(ctx context.Context, md map[string]any) error
	Self        func() (api.Member, bool)
	// Join adds a member; RemovePeer removes one.
	Join       func(ctx context.Context, req api.JoinRequest) (api.JoinResult, error)
	RemovePeer func(ctx context.Context, identifier string) error
	// Leave does the work of leaving but the closing; CloseAfterAnswer
	// closes the peer once the answers in flight are written.
	Leave            func(ctx context.Context) error
	CloseAfterAnswer func()
	// APIError translates the SDK's errors into the API's.
	APIError func(error) error
}

// Backend implements api.Backend's peer-facing methods over Deps. The
// zero Backend is not usable: make it with New.
type Backend[S, E any] struct{ d *Deps[S, E] }

// New returns the backend over d.
func New[S, E any](d Deps[S, E]) Backend[S, E] { return Backend[S, E]{d: &d} }

// Status returns the peer's view now.
func (b Backend[S, E]) Status() api.Status { return b.d.Status() }

// Watch streams the peer's Status from one Watch subscription, until ctx
// ends or the peer stops. Its goroutine converts each state and keeps only
// the latest in the channel, so it never makes the publisher wait. The
// API's blocking queries and /v1/watch read it.
func (b Backend[S, E]) Watch(ctx context.Context) <-chan api.Status {
	in := b.d.Watch(ctx)
	out := latest.New[api.Status]()
	go func() {
		defer out.Close()
		for st := range in {
			s, ok := b.d.StatusOf(st)
			if !ok {
				return // the peer stops
			}
			out.Set(s) // never blocks: replaces what is not read yet
		}
	}()
	return out.C()
}

// Peers lists the members and what this peer knows of them, with the
// membership index.
func (b Backend[S, E]) Peers() api.PeerList { return b.d.Peers() }

// WaitPeers returns Peers once the membership index differs from index.
func (b Backend[S, E]) WaitPeers(ctx context.Context, index uint64) (api.PeerList, error) {
	if index >= b.d.Base { // else an index of another process: answer now
		switch err := b.d.WaitMembership(ctx, index-b.d.Base); {
		case errors.Is(err, sdkerr.ErrClosed):
			return api.PeerList{}, api.ErrUnavailable
		case err != nil:
			return api.PeerList{}, err
		}
	}
	return b.Peers(), nil
}

// SetHealth records the application's TTL health report and returns this
// peer's status.
func (b Backend[S, E]) SetHealth(_ context.Context, r api.HealthReport) (api.Status, error) {
	if err := b.d.SetHealth(r.Status, r.Output); err != nil {
		if errors.Is(err, sdkerr.ErrClosed) {
			return api.Status{}, api.ErrUnavailable
		}
		return api.Status{}, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	return b.Status(), nil
}

// Transfer hands leadership over and describes the result, translating
// the SDK's errors into the API's.
func (b Backend[S, E]) Transfer(ctx context.Context, identifier string) (api.TransferResult, error) {
	start := time.Now()
	if b.d.Closed() {
		return api.TransferResult{}, api.ErrUnavailable
	}
	if !b.d.IsLeader() {
		// Checked before the target, so a follower always answers
		// not_leader (with the leader to ask instead). A leader whose
		// lease has lapsed has lost its majority: it cannot hand over.
		return api.TransferResult{}, api.ErrNotLeader
	}
	timeout := b.d.TransferTimeout(identifier)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := transferError(ctx, b.d.Transfer(tctx, identifier), identifier, timeout); err != nil {
		return api.TransferResult{}, err
	}
	st := b.Status()
	return api.TransferResult{
		From:       b.d.Identifier,
		Leader:     st.Leader,
		Term:       st.Term,
		Index:      st.Index,
		DurationMS: float64(time.Since(start)) / float64(time.Millisecond),
	}, nil
}

// transferError translates the error of a hand-over to identifier ("": a
// resignation), bounded by timeout within ctx, into the API's.
func transferError(ctx context.Context, err error, identifier string, timeout time.Duration) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sdkerr.ErrNotLeader):
		return api.ErrNotLeader
	case errors.Is(err, sdkerr.ErrTransferFailed):
		return fmt.Errorf("%w: %w", api.ErrTransferFailed, err)
	case errors.Is(err, sdkerr.ErrUnknownPeer) && identifier == "":
		return api.ErrNoTransferee
	case errors.Is(err, sdkerr.ErrUnknownPeer):
		return fmt.Errorf("%w: %q is not another member of the cluster; GET /v1/peers lists them", api.ErrUnknownPeer, identifier)
	case errors.Is(err, sdkerr.ErrClosed), errors.Is(err, sdkerr.ErrNotStarted):
		return api.ErrUnavailable
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		target := identifier
		if target == "" {
			target = "another peer"
		}
		return fmt.Errorf("leadership did not move to %s within %v (is it running and reachable?): %w", target, timeout, err)
	default:
		return err
	}
}

// SetMetadata replaces this peer's metadata and returns this peer as the
// members list shows it.
func (b Backend[S, E]) SetMetadata(ctx context.Context, metadata map[string]any) (api.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, b.d.MembershipTimeout())
	defer cancel()
	if err := b.d.SetMetadata(ctx, metadata); err != nil {
		return api.Member{}, b.d.APIError(err)
	}
	if m, ok := b.d.Self(); ok {
		return m, nil
	}
	return api.Member{}, api.ErrUnavailable
}

// Join adds a member.
func (b Backend[S, E]) Join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	ctx, cancel := context.WithTimeout(ctx, b.d.MembershipTimeout())
	defer cancel()
	res, err := b.d.Join(ctx, req)
	if err != nil {
		return api.JoinResult{}, b.d.APIError(err)
	}
	return res, nil
}

// RemovePeer removes a member.
func (b Backend[S, E]) RemovePeer(ctx context.Context, identifier string) error {
	ctx, cancel := context.WithTimeout(ctx, b.d.MembershipTimeout()+b.d.TransferTimeout(""))
	defer cancel()
	return b.d.APIError(b.d.RemovePeer(ctx, identifier))
}

// Leave leaves the cluster. The peer closes in the background, after the
// answer is written.
func (b Backend[S, E]) Leave(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.d.MembershipTimeout()+b.d.TransferTimeout(""))
	defer cancel()
	if err := b.d.Leave(ctx); err != nil {
		return b.d.APIError(err)
	}
	go b.d.CloseAfterAnswer()
	return nil
}

// Events streams membership events (not leadership: /v1/watch has those
// from Watch).
func (b Backend[S, E]) Events(ctx context.Context) <-chan api.MemberEvent {
	in := b.d.Events(ctx)
	out := make(chan api.MemberEvent)
	go func() {
		defer close(out)
		for ev := range in {
			mev, ok := b.d.MemberEvent(ev)
			if !ok {
				continue
			}
			select {
			case out <- mev:
			case <-ctx.Done():
				for range in {
				}
				return
			}
		}
	}()
	return out
}
