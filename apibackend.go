package qcluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/kvnode"
	"github.com/qcluster/qcluster/internal/latest"
)

// apiBackend adapts a Cluster to the HTTP API (package api).
//
// The API's change index is the SDK's (State.Index, which starts at 1 in
// every process) plus a base taken from the wall clock when the Cluster was
// created, in microseconds. So the index a client holds never names another
// state of the same peer after a restart (the new base is larger than any
// index of the previous process: a peer does not change state every
// microsecond), two peers practically never share an index, and it stays
// below 2^53, exact in JavaScript.
type apiBackend struct {
	c           *Cluster
	base        uint64
	*kvnode.API // the KV store, sessions and locks
}

var (
	_ api.Backend      = apiBackend{}
	_ api.HealthSetter = apiBackend{}
)

func newAPIBackend(c *Cluster) apiBackend {
	return apiBackend{c: c, base: apiIndexBase(c), API: c.kvAPI}
}

// apiIndexBase is the offset of c's API index from its State.Index.
func apiIndexBase(c *Cluster) uint64 { return uint64(c.base.UnixMicro()) }

func toAPIPeer(p Peer) api.Peer {
	return api.Peer{Identifier: p.Identifier, Host: p.Host, Port: p.Port, Metadata: p.Metadata}
}

// Status returns the peer's view now. The index is read first, so the body
// is at least as new as its index: a blocking query with that index never
// waits for a change the body does not show.
func (b apiBackend) Status() api.Status {
	st, s := b.c.stateNow()
	st.Index += b.base
	return b.status(st, s)
}

// status converts st, adding what snapshot s (the one st was taken from, or
// a later one) knows: voters and the lease.
func (b apiBackend) status(st State, s *snapshot) api.Status {
	c := b.c
	out := api.Status{
		Identifier: st.Identifier,
		Role:       st.Role.String(),
		Term:       st.Term,
		IsLeader:   st.IsLeader,
		Index:      st.Index,
		Voters:     make([]string, 0, len(s.view.Voters)),
	}
	if st.HasLeader {
		p := toAPIPeer(st.Leader)
		out.Leader = &p
	}
	if st.IsLeader {
		out.LeaseRemainingMS = max(0, float64(s.view.LeaseUntil-c.now())/float64(time.Millisecond))
	}
	for _, id := range s.view.Voters {
		out.Voters = append(out.Voters, c.peer(id).Identifier)
	}
	slices.Sort(out.Voters)
	for _, id := range s.view.Learners {
		out.Learners = append(out.Learners, c.peer(id).Identifier)
	}
	slices.Sort(out.Learners)
	out.Mode = c.cfg.Mode
	out.Joined = c.mode.joined(s.view)
	out.Check, out.CheckOutput = c.Health()
	if !st.HasLeader {
		out.NoLeader = c.mode.noLeaderReason(s.view, st.Role == RoleLeader)
	}
	return out
}

// SetHealth records the application's TTL health report (see
// Cluster.SetHealth) and returns this peer's status.
func (b apiBackend) SetHealth(_ context.Context, r api.HealthReport) (api.Status, error) {
	if err := b.c.SetHealth(r.Status, r.Output); err != nil {
		if errors.Is(err, ErrClosed) {
			return api.Status{}, api.ErrUnavailable
		}
		return api.Status{}, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	return b.Status(), nil
}

// Watch streams the peer's Status from one Watch subscription, until ctx
// ends or the peer stops. Its goroutine converts each State and keeps only
// the latest in the channel, so it never makes the publisher wait. The
// API's blocking queries and /v1/watch read it.
func (b apiBackend) Watch(ctx context.Context) <-chan api.Status {
	in := b.c.Watch(ctx)
	out := latest.New[api.Status]()
	go func() {
		defer out.Close()
		for st := range in {
			st.Index += b.base
			snap := b.c.snap.Load()
			if snap.closed {
				// The State Close publishes (no leader) says the peer
				// stops, not that the cluster lost its leader.
				return
			}
			out.Set(b.status(st, snap)) // never blocks: replaces what is not read yet
		}
	}()
	return out.C()
}

// Peers lists the members and what this peer knows of them, with the
// membership index: the count of the changes the event hub has seen
// (membership, health, leadership), plus the same base as the change
// index. The index is read first, so the list is never older than it.
func (b apiBackend) Peers() api.PeerList {
	idx := b.base + b.c.events.index()
	ms := b.c.Peers()
	out := make([]api.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, toAPIMember(m))
	}
	return api.PeerList{Index: idx, Peers: out}
}

// WaitPeers returns Peers once the membership index differs from index.
func (b apiBackend) WaitPeers(ctx context.Context, index uint64) (api.PeerList, error) {
	if index >= b.base { // else an index of another process: answer now
		switch err := b.c.events.wait(ctx, index-b.base); {
		case errors.Is(err, ErrClosed):
			return api.PeerList{}, api.ErrUnavailable
		case err != nil:
			return api.PeerList{}, err
		}
	}
	return b.Peers(), nil
}

func toAPIMember(m Member) api.Member {
	return api.Member{
		Peer:     toAPIPeer(m.Peer),
		Voter:    m.Voter,
		IsLeader: m.Role == MemberLeader,
		IsSelf:   m.IsSelf,
		Role:     m.Role.String(),
		State:    m.Health.String(),
		Check:    m.Check,
	}
}

// transferTimeout bounds a hand-over requested through the API. Raft gives a
// transfer up after an election timeout (this peer then leads on), so a
// hand-over that has not happened well after that will not happen. A
// resignation (no target) may try each other voter in turn.
func (c *Cluster) transferTimeout(identifier string) time.Duration {
	d := max(2*time.Second, 10*time.Duration(c.cfg.ElectionTimeout))
	if identifier == "" {
		d += time.Duration(max(0, c.reg.Load().Len()-2)) * max(500*time.Millisecond, 3*time.Duration(c.cfg.ElectionTimeout))
	}
	return d
}

// Transfer hands leadership over (see Cluster.Transfer) and describes the
// result, translating the SDK's errors into the API's.
func (b apiBackend) Transfer(ctx context.Context, identifier string) (api.TransferResult, error) {
	c := b.c
	start := time.Now()
	if c.snap.Load().closed {
		return api.TransferResult{}, api.ErrUnavailable
	}
	if !c.IsLeader() {
		// Checked before the target, so a follower always answers
		// not_leader (with the leader to ask instead). A leader whose
		// lease has lapsed has lost its majority: it cannot hand over.
		return api.TransferResult{}, api.ErrNotLeader
	}
	timeout := c.transferTimeout(identifier)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	if identifier == "" {
		err = c.Resign(tctx)
	} else {
		err = c.Transfer(tctx, identifier)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotLeader):
		return api.TransferResult{}, api.ErrNotLeader
	case errors.Is(err, ErrTransferFailed):
		return api.TransferResult{}, fmt.Errorf("%w: %w", api.ErrTransferFailed, err)
	case errors.Is(err, ErrUnknownPeer) && identifier == "":
		return api.TransferResult{}, api.ErrNoTransferee
	case errors.Is(err, ErrUnknownPeer):
		return api.TransferResult{}, fmt.Errorf("%w: %q is not another member of the cluster; GET /v1/peers lists them", api.ErrUnknownPeer, identifier)
	case errors.Is(err, ErrClosed), errors.Is(err, ErrNotStarted):
		return api.TransferResult{}, api.ErrUnavailable
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		target := identifier
		if target == "" {
			target = "another peer"
		}
		return api.TransferResult{}, fmt.Errorf("leadership did not move to %s within %v (is it running and reachable?): %w", target, timeout, err)
	default:
		return api.TransferResult{}, err
	}
	st := b.Status()
	return api.TransferResult{
		From:       c.cfg.Identifier,
		Leader:     st.Leader,
		Term:       st.Term,
		Index:      st.Index,
		DurationMS: float64(time.Since(start)) / float64(time.Millisecond),
	}, nil
}

// membershipTimeout bounds a membership change requested through the API
// when the request has no shorter deadline: a few retries of the proposal.
func (c *Cluster) membershipTimeout() time.Duration { return 3*c.retryEvery() + 2*time.Second }

// sdkAPIErrors pairs the SDK's errors with the API's (package api owns
// the codes: api.CodeOf, api.ErrorOf). toAPIError reads it from SDK to
// API, fromAPIError from API to SDK; the first pair that matches wins.
// Pairs marked fromPeer only translate another peer's answer: this peer
// does not answer with them (a peer refusing this peer's token is not the
// caller's token being wrong).
var sdkAPIErrors = []struct {
	sdk, api error
	fromPeer bool
}{
	{ErrInvalidMember, api.ErrInvalid, false}, {ErrInvalidMetadata, api.ErrInvalid, false},
	{ErrWouldLoseQuorum, api.ErrWouldLoseQuorum, false}, {ErrConflict, api.ErrConflict, false}, {ErrWrongCluster, api.ErrWrongCluster, false},
	{ErrNoLeader, api.ErrNoLeader, false}, {ErrMasterless, api.ErrMasterless, false},
	{ErrUnknownPeer, api.ErrUnknownPeer, false}, {ErrNotLeader, api.ErrNotLeader, false},
	{ErrClosed, api.ErrUnavailable, false}, {ErrNotStarted, api.ErrUnavailable, false},
	{ErrUnauthorized, api.ErrUnauthorized, true}, {context.DeadlineExceeded, context.DeadlineExceeded, true},
	{ErrKeyNotFound, api.ErrKeyNotFound, false}, {ErrCompareFailed, api.ErrCompareFailed, false},
	{ErrQuota, api.ErrQuota, false}, {ErrTooLarge, api.ErrTooLarge, false}, {ErrInvalidKey, api.ErrInvalid, false},
	{ErrOutcomeUnknown, context.DeadlineExceeded, false}, {ErrCompacted, api.ErrCompacted, false},
	{ErrSessionNotFound, api.ErrSessionNotFound, false}, {ErrInvalidTTL, api.ErrInvalid, false},
}

// toAPIError translates the SDK's errors into the API's.
func toAPIError(err error) error {
	for _, m := range sdkAPIErrors {
		if !m.fromPeer && errors.Is(err, m.sdk) {
			return fmt.Errorf("%w: %w", m.api, err)
		}
	}
	return err
}

// SetMetadata replaces this peer's metadata (see Cluster.SetMetadata).
func (b apiBackend) SetMetadata(ctx context.Context, metadata map[string]any) (api.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, b.c.membershipTimeout())
	defer cancel()
	if err := b.c.SetMetadata(ctx, metadata); err != nil {
		return api.Member{}, toAPIError(err)
	}
	for _, m := range b.c.Peers() {
		if m.IsSelf {
			return toAPIMember(m), nil
		}
	}
	return api.Member{}, api.ErrUnavailable
}

// Join adds a member (see Cluster.AddPeer).
func (b apiBackend) Join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	ctx, cancel := context.WithTimeout(ctx, b.c.membershipTimeout())
	defer cancel()
	res, err := b.c.join(ctx, req)
	if err != nil {
		return api.JoinResult{}, toAPIError(err)
	}
	return res, nil
}

// RemovePeer removes a member (see Cluster.RemovePeer).
func (b apiBackend) RemovePeer(ctx context.Context, identifier string) error {
	ctx, cancel := context.WithTimeout(ctx, b.c.membershipTimeout()+b.c.transferTimeout(""))
	defer cancel()
	return toAPIError(b.c.RemovePeer(ctx, identifier))
}

// Leave leaves the cluster (see Cluster.Leave). The Cluster closes in the
// background, after the answer is written.
func (b apiBackend) Leave(ctx context.Context) error {
	c := b.c
	ctx, cancel := context.WithTimeout(ctx, c.membershipTimeout()+c.transferTimeout(""))
	defer cancel()
	if err := c.leaveCluster(ctx); err != nil {
		return toAPIError(err)
	}
	go c.closeAfterAnswer()
	return nil
}

// closeAfterAnswer closes the Cluster once the HTTP requests in flight
// (the leave request itself) are answered, or after a grace period
// (streams such as /v1/watch do not end by themselves).
func (c *Cluster) closeAfterAnswer() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if r := c.run.Load(); r != nil {
		_ = r.http.Shutdown(ctx)
	}
	c.Close()
}

// Events streams membership events (not leadership: /v1/watch has those
// from Watch).
func (b apiBackend) Events(ctx context.Context) <-chan api.MemberEvent {
	in := b.c.Events(ctx)
	out := make(chan api.MemberEvent)
	go func() {
		defer close(out)
		for ev := range in {
			if ev.Type == EventLeaderChanged {
				continue
			}
			select {
			case out <- api.MemberEvent{Type: ev.Type.String(), Member: toAPIMember(ev.Member), Time: ev.Time}:
			case <-ctx.Done():
				for range in {
				}
				return
			}
		}
	}()
	return out
}
