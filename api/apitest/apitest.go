// Package apitest provides a fake api.Backend for tests of code that talks
// to the HTTP API (the Go client, the CLI): one peer whose status and
// members the test sets, that records the changes asked of it and answers
// them with the error the test chooses. Serve it with api.NewHandler and
// net/http/httptest.
//
// It is an api.KVBackend too, over a small in-memory KV store: one
// revision counter, compare-and-swap on mod revisions, ephemeral keys
// bound to the status's identifier, a history of events for watches
// (Compact drops its beginning), and locks (LoseLock takes one away, as
// the removal of its holder's member does).
//
//	b := apitest.New(api.Status{Identifier: "server_b", Index: 40, ...}, members)
//	srv := httptest.NewServer(api.NewHandler(b))
//	b.Set(func(s *api.Status) { s.Leader = nil }) // publishes Index 41
package apitest

import (
	"context"
	"fmt"
	"sync"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/latest"
)

// Calls records what the changes of the API were asked with, in order.
type Calls struct {
	Joins    []api.JoinRequest
	Metadata []map[string]any // SetMetadata
	Health   []api.HealthReport
	Removed  []string
	Transfer []string // Transfer's targets ("" for a resignation)
	Leaves   int
}

// Backend is a fake api.Backend (and api.HealthSetter). Its methods are
// safe for concurrent use.
type Backend struct {
	mu          sync.Mutex
	st          api.Status
	peers       api.PeerList
	changed     chan struct{} // closed and replaced by every change
	stopped     bool
	err         error // the membership calls' answer
	transferErr error
	waiters     int
	watches     map[*latest.Slot[api.Status]]bool
	subs        map[chan api.MemberEvent]bool
	calls       Calls
	kvs         *kvStore // made on first use (see kv)
}

var (
	_ api.Backend      = (*Backend)(nil)
	_ api.HealthSetter = (*Backend)(nil)
)

// New returns a running Backend with status st and the members peers
// (membership index peersIndex).
func New(st api.Status, peers []api.Member, peersIndex uint64) *Backend {
	return &Backend{
		st:      st,
		peers:   api.PeerList{Index: peersIndex, Peers: peers},
		changed: make(chan struct{}),
		watches: map[*latest.Slot[api.Status]]bool{},
		subs:    map[chan api.MemberEvent]bool{},
	}
}

// changedLocked wakes the waiters; b.mu is held.
func (b *Backend) changedLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Set changes the status and publishes it with the next index, to Watch
// subscribers and blocking queries.
func (b *Backend) Set(change func(*api.Status)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	change(&b.st)
	b.st.Index++
	b.changedLocked()
	for s := range b.watches {
		s.Set(b.st)
	}
}

// SetPeers changes the members and publishes them with the next
// membership index.
func (b *Backend) SetPeers(change func([]api.Member) []api.Member) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.peers.Peers = change(b.peers.Peers)
	b.peers.Index++
	b.changedLocked()
}

// SetErr sets the error the membership calls (Join, RemovePeer, Leave,
// SetMetadata, SetHealth) answer with; nil: they succeed.
func (b *Backend) SetErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

// SetTransferErr sets the error Transfer answers with; nil: it succeeds
// when the status says this peer leads, else it answers api.ErrNotLeader.
func (b *Backend) SetTransferErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.transferErr = err
}

// Stop makes the peer stop: the streams end and blocking queries answer
// api.ErrUnavailable.
func (b *Backend) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	b.changedLocked()
	for s := range b.watches {
		delete(b.watches, s)
		s.Close()
	}
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
	if b.kvs != nil {
		b.kvChangedLocked() // the watches end
		for name, hl := range b.kvs.held {
			close(hl.lost) // a stopping peer loses its locks
			delete(b.kvs.held, name)
		}
	}
}

// Emit sends ev to every Events subscriber (each holds 16 events).
func (b *Backend) Emit(ev api.MemberEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		ch <- ev
	}
}

// Calls returns a copy of what the changes were asked with.
func (b *Backend) Calls() Calls {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.calls
	c.Joins = append([]api.JoinRequest(nil), c.Joins...)
	c.Metadata = append([]map[string]any(nil), c.Metadata...)
	c.Health = append([]api.HealthReport(nil), c.Health...)
	c.Removed = append([]string(nil), c.Removed...)
	c.Transfer = append([]string(nil), c.Transfer...)
	return c
}

// Watches returns how many Watch subscriptions are open.
func (b *Backend) Watches() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.watches)
}

// Subscribers returns how many Events subscriptions are open.
func (b *Backend) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Waiters returns how many WaitPeers calls are waiting.
func (b *Backend) Waiters() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiters
}

// Status returns the status.
func (b *Backend) Status() api.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

// Watch sends the status, then each one Set publishes, until ctx ends or
// the Backend stops.
func (b *Backend) Watch(ctx context.Context) <-chan api.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := latest.New[api.Status]()
	if b.stopped {
		s.Close()
		return s.C()
	}
	s.Set(b.st)
	b.watches[s] = true
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.watches[s] {
			delete(b.watches, s)
			s.Close()
		}
	})
	return s.C()
}

// Peers returns the members and the membership index.
func (b *Backend) Peers() api.PeerList {
	b.mu.Lock()
	defer b.mu.Unlock()
	return api.PeerList{Index: b.peers.Index, Peers: append([]api.Member(nil), b.peers.Peers...)}
}

// WaitPeers returns the members once their index differs from index.
func (b *Backend) WaitPeers(ctx context.Context, index uint64) (api.PeerList, error) {
	b.mu.Lock()
	b.waiters++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
	}()
	for {
		b.mu.Lock()
		ch, stopped := b.changed, b.stopped
		b.mu.Unlock()
		if stopped {
			return api.PeerList{}, api.ErrUnavailable
		}
		if pl := b.Peers(); pl.Index != index {
			return pl, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return api.PeerList{}, ctx.Err()
		}
	}
}

// Transfer records the target and answers as SetTransferErr says.
func (b *Backend) Transfer(ctx context.Context, identifier string) (api.TransferResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Transfer = append(b.calls.Transfer, identifier)
	switch {
	case b.transferErr != nil:
		return api.TransferResult{}, b.transferErr
	case !b.st.IsLeader:
		return api.TransferResult{}, api.ErrNotLeader
	}
	return api.TransferResult{From: b.st.Identifier, Term: b.st.Term + 1, Index: b.st.Index}, nil
}

// SetMetadata records md and, unless SetErr says otherwise, sets it on the
// member that IsSelf and returns that member.
func (b *Backend) SetMetadata(ctx context.Context, md map[string]any) (api.Member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Metadata = append(b.calls.Metadata, md)
	if b.err != nil {
		return api.Member{}, b.err
	}
	for i, m := range b.peers.Peers {
		if m.IsSelf {
			b.peers.Peers[i].Metadata = md
			return b.peers.Peers[i], nil
		}
	}
	return api.Member{Peer: api.Peer{Identifier: b.st.Identifier, Metadata: md}, IsSelf: true}, nil
}

// SetHealth records r and returns the status with its check.
func (b *Backend) SetHealth(ctx context.Context, r api.HealthReport) (api.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Health = append(b.calls.Health, r)
	if b.err != nil {
		return api.Status{}, b.err
	}
	st := b.st
	st.Check, st.CheckOutput = r.Status, r.Output
	return st, nil
}

// Join records req and, unless SetErr says otherwise, answers with the
// new member (a learner when req.Voter is false), the leader of the
// status, and the members with the new one.
func (b *Backend) Join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Joins = append(b.calls.Joins, req)
	if b.err != nil {
		return api.JoinResult{}, b.err
	}
	voter := req.Voter == nil || *req.Voter
	role := "follower"
	if !voter {
		role = "learner"
	}
	m := api.Member{Peer: api.Peer{Identifier: req.Identifier, Host: req.Host, Port: req.Port, Metadata: req.Metadata}, Voter: voter, Role: role, State: "unknown"}
	return api.JoinResult{Member: m, Leader: b.st.Leader, Peers: append(append([]api.Member(nil), b.peers.Peers...), m)}, nil
}

// RemovePeer records identifier and, unless SetErr says otherwise,
// answers api.ErrUnknownPeer when no member has it.
func (b *Backend) RemovePeer(ctx context.Context, identifier string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Removed = append(b.calls.Removed, identifier)
	if b.err != nil {
		return b.err
	}
	for _, m := range b.peers.Peers {
		if m.Identifier == identifier {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not a member", api.ErrUnknownPeer, identifier)
}

// Leave counts the call and answers as SetErr says.
func (b *Backend) Leave(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls.Leaves++
	return b.err
}

// Events subscribes to Emit until ctx ends or the Backend stops.
func (b *Backend) Events(ctx context.Context) <-chan api.MemberEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan api.MemberEvent, 16)
	if b.stopped {
		close(ch)
		return ch
	}
	b.subs[ch] = true
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.subs[ch] {
			delete(b.subs, ch)
			close(ch)
		}
	})
	return ch
}
