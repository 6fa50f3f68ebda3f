package qcluster

import (
	"context"
	"slices"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/apibackend"
	"github.com/qcluster/qcluster/internal/kvnode"
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
	apibackend.Backend[State, Event] // the peer-facing methods (internal/apibackend)
	*kvnode.API                      // the KV store, sessions and locks
	c                                *Cluster
	base                             uint64
}

var (
	_ api.Backend      = apiBackend{}
	_ api.HealthSetter = apiBackend{}
)

func newAPIBackend(c *Cluster) apiBackend {
	b := apiBackend{c: c, base: apiIndexBase(c), API: c.kvAPI}
	b.Backend = apibackend.New(b.deps())
	return b
}

// deps is what the peer-facing methods need from the Cluster.
func (b apiBackend) deps() apibackend.Deps[State, Event] {
	c := b.c
	return apibackend.Deps[State, Event]{
		Base:       b.base,
		Identifier: c.cfg.Identifier,
		Status:     b.Status,
		Watch:      c.Watch,
		StatusOf: func(st State) (api.Status, bool) {
			st.Index += b.base
			snap := c.snap.Load()
			if snap.closed {
				// The State Close publishes (no leader) says the peer
				// stops, not that the cluster lost its leader.
				return api.Status{}, false
			}
			return b.status(st, snap), true
		},
		Peers:          b.Peers,
		WaitMembership: c.events.wait,
		Events:         c.Events,
		MemberEvent: func(ev Event) (api.MemberEvent, bool) {
			if ev.Type == EventLeaderChanged {
				return api.MemberEvent{}, false
			}
			return api.MemberEvent{Type: ev.Type.String(), Member: toAPIMember(ev.Member), Time: ev.Time}, true
		},
		Closed:   func() bool { return c.snap.Load().closed },
		IsLeader: c.IsLeader,
		Transfer: func(ctx context.Context, identifier string) error {
			if identifier == "" {
				return c.Resign(ctx)
			}
			return c.Transfer(ctx, identifier)
		},
		TransferTimeout:   c.transferTimeout,
		MembershipTimeout: c.membershipTimeout,
		SetHealth:         c.SetHealth,
		SetMetadata:       c.SetMetadata,
		Self: func() (api.Member, bool) {
			for _, m := range c.Peers() {
				if m.IsSelf {
					return toAPIMember(m), true
				}
			}
			return api.Member{}, false
		},
		Join:             c.join,
		RemovePeer:       c.RemovePeer,
		Leave:            c.leaveCluster,
		CloseAfterAnswer: c.closeAfterAnswer,
		APIError:         apibackend.ToAPIError,
	}
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

// membershipTimeout bounds a membership change requested through the API
// when the request has no shorter deadline: a few retries of the proposal.
func (c *Cluster) membershipTimeout() time.Duration { return 3*c.retryEvery() + 2*time.Second }

// closeAfterAnswer closes the Cluster once the HTTP requests in flight
// (the leave request itself) are answered, or after a grace period
// (streams such as /v1/watch do not end by themselves).
func (c *Cluster) closeAfterAnswer() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if r := c.run.Load(); r != nil {
		_ = r.HTTP.Shutdown(ctx)
	}
	c.Close()
}
