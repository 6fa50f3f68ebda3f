// Package kvnode is the machinery behind a peer's key-value store (package
// kv): it feeds the pure state machine of internal/kv what the node
// commits, hands each applied result to the proposal waiting for it, makes
// reads linearizable, looks after the sessions' expiry and the quota, and
// adapts the store to the HTTP API. What it needs of the peer is given in
// Deps: it holds no pointer back to the peer.
package kvnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/qcluster/qcluster/internal/consensus"
	store "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/kv"
)

// Do runs fn on the node goroutine (consensus.Node.Do).
type Do func(ctx context.Context, fn func(*consensus.Core) error) error

// Deps is what the machinery needs of its peer.
type Deps struct {
	// Identifier and SelfID name this member.
	Identifier string
	SelfID     uint64
	Log        *slog.Logger
	// HeartbeatInterval and ElectionTimeout are the peer's timing.
	HeartbeatInterval, ElectionTimeout time.Duration
	// Quota is the quota this peer's config asks for (kv_quota_bytes; 0:
	// store.DefaultQuota).
	Quota int64

	// Ready returns why the store cannot be used now (masterless mode,
	// closed, not started), or nil.
	Ready func() error
	// Running returns the running peer's context (it ends when Close
	// begins) and its node's Do; ok is false before Start.
	Running func() (ctx context.Context, do Do, ok bool)
	// Done is closed when the peer has closed.
	Done <-chan struct{}
	// IsLeader and Term are the peer's view; WaitForLeader waits until a
	// leader is known.
	IsLeader      func() bool
	Term          func() uint64
	WaitForLeader func(ctx context.Context) error
	// Member returns the identifier of the member with node ID id as the
	// registry has it.
	Member func(id uint64) (string, bool)
	// Mono is a monotonic clock; ObserveApply records a write's latency
	// (proposal to applied).
	Mono         func() time.Duration
	ObserveApply func(time.Duration)

	// The peer's errors the machinery returns (wrapped): the peer closed,
	// no leader, the member was removed.
	ErrClosed, ErrNoLeader, ErrUnknownPeer error
}

// Node is a peer's KV store and the proposals waiting for their results.
// It lives as long as the peer. It implements kv.Backend.
type Node struct {
	d     Deps
	store *store.Store

	mu      sync.Mutex
	waiters map[uint64]*waiter // by ReqID

	// owners remembers the identifier of every member the registry named
	// (by node ID), so that the keys of a removed member still name it.
	owners sync.Map

	// Linearizable reads without the lease share barriers: barrierNext is
	// the barrier that starts once the running one (if any) is done.
	barrierMu      sync.Mutex
	barrierRunning bool
	barrierNext    *barrierCall

	// clocks: the sessions' expiry (session.go).
	clocks sessionClocks
	// quotaTerm and quotaAt: the term and time of the last proposal of
	// this leader's quota (checkQuota; only the upkeep goroutine uses
	// them).
	quotaTerm uint64
	quotaAt   time.Time
}

var _ kv.Backend = (*Node)(nil)

// barrierCall is one barrier that reads wait for.
type barrierCall struct {
	done chan struct{}
	err  error
}

// waiter is one proposal waiting for its result.
type waiter struct {
	ch chan store.Result // capacity 1; only deliver sends, once
	// late, set once the caller gave up (its context ended), gets the
	// result instead, in a goroutine of its own.
	late func(store.Result)
}

// New returns the machinery of an empty store.
func New(d Deps) *Node {
	return &Node{d: d, store: store.New(store.Options{}), waiters: map[uint64]*waiter{}}
}

// Store returns the state machine. Callers outside the node goroutine may
// only read it.
func (n *Node) Store() *store.Store { return n.store }

// register adds a waiter under a new random ReqID. ReqIDs are random so
// that peers never pick the same one (every peer applies every result).
func (n *Node) register() (uint64, *waiter) {
	w := &waiter{ch: make(chan store.Result, 1)}
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		id := rand.Uint64()
		if _, taken := n.waiters[id]; id != 0 && !taken {
			n.waiters[id] = w
			return id, w
		}
	}
}

// forget drops a waiter whose proposal was certainly not appended.
func (n *Node) forget(id uint64) {
	n.mu.Lock()
	delete(n.waiters, id)
	n.mu.Unlock()
}

// giveUp is called when the caller stops waiting for a proposal that may
// still be applied: late (when not nil) gets its result if it comes.
func (n *Node) giveUp(id uint64, w *waiter, late func(store.Result)) {
	n.mu.Lock()
	if _, ok := n.waiters[id]; ok {
		if late != nil {
			w.late = late
		} else {
			delete(n.waiters, id)
		}
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	// Delivered meanwhile.
	select {
	case r := <-w.ch:
		if late != nil {
			go late(r)
		}
	default:
	}
}

// deliver hands applied results to their waiters. It runs on the node
// goroutine and never blocks.
func (n *Node) deliver(rs []store.Result) {
	for _, r := range rs {
		// A duplicate (a proposal delivered twice, applied once) answers
		// nobody: the first result was this ReqID's.
		if r.ReqID == 0 || r.Duplicate {
			continue
		}
		n.mu.Lock()
		w, ok := n.waiters[r.ReqID]
		var late func(store.Result)
		if ok {
			delete(n.waiters, r.ReqID)
			late = w.late
		}
		n.mu.Unlock()
		switch {
		case !ok:
		case late != nil:
			go late(r)
		default:
			w.ch <- r // capacity 1, the only send
		}
	}
}

// Apply feeds the store what the core committed: the snapshot's KV part
// first (kvData; none in a snapshot written before the KV store existed:
// the store restarts empty), then the entries. It runs on the node
// goroutine, inside the peer's apply, so the store has applied every
// entry the core has once the node loop is idle (see linearize).
func (n *Node) Apply(a consensus.Applied, kvData []byte) {
	if a.Snapshot != nil && len(a.Snapshot.Data) > 0 {
		if kvData == nil {
			kvData = store.New(store.Options{}).Snapshot()
		}
		if err := n.store.Restore(kvData); err != nil {
			n.d.Log.Error("kv: cannot decode the snapshot's key-value store; keeping the current one", "err", err)
		}
	}
	for _, e := range a.Entries {
		n.deliver(n.store.Apply(e))
	}
}

// Propose proposes op on this peer (a follower's proposal goes to the
// leader inside raft) and waits until this peer applies it.
//
// The op is fenced to the term it is proposed in (store.Op.Term), which
// tells when it is lost: once this peer has applied an entry of a later
// term without seeing its result, it never applies. Then, and when raft
// drops it at once (no leader known, or it is handing over: once a leader
// is known) or it comes back refused for its term, it is proposed again,
// which is safe since it never applied. It is never proposed again
// otherwise: a compare-and-swap must not apply twice. When ctx ends first
// the outcome is unknown (kv.ErrOutcomeUnknown; ErrNoLeader when it was
// never taken): late, when not nil, gets the result if it is applied
// later.
func (n *Node) Propose(ctx context.Context, op store.Op, late func(store.Result)) (store.Result, error) {
	if err := n.d.Ready(); err != nil {
		return store.Result{}, err
	}
	if err := op.Check(); err != nil {
		return store.Result{}, n.kvError(err)
	}
	rctx, do, ok := n.d.Running()
	if !ok {
		return store.Result{}, n.d.ErrClosed
	}
	for {
		id, w := n.register()
		op.ReqID = id
		term, err := n.submit(ctx, do, op)
		switch {
		case errors.Is(err, raft.ErrProposalDropped):
			n.forget(id)
			return store.Result{}, fmt.Errorf("%w: the proposal was not taken: %w", n.d.ErrNoLeader, err)
		case errors.Is(err, consensus.ErrStopped):
			n.giveUp(id, w, late)
			return store.Result{}, fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, n.d.ErrClosed)
		case err != nil:
			n.giveUp(id, w, late)
			return store.Result{}, fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, err)
		}
		res, lost, err := n.await(ctx, rctx, id, w, term, late)
		switch {
		case err != nil:
			return store.Result{}, err
		case lost, errors.Is(res.Err, store.ErrStaleTerm):
			continue // it never applied and never will
		}
		return res, nil
	}
}

// submit proposes op, fenced to the current term, which it returns.
// While raft drops it at once (no leader known, or it is handing over) it
// waits for a leader and tries again, until ctx ends or the peer closes
// (then it returns raft.ErrProposalDropped wrapped with why).
func (n *Node) submit(ctx context.Context, do Do, op store.Op) (uint64, error) {
	for {
		// The call may still run after Do returned on ctx: it writes only
		// to a channel of its own, read once Do says it ran.
		terms := make(chan uint64, 1)
		err := do(ctx, func(core *consensus.Core) error {
			o := op
			o.Term = core.View().Term
			terms <- o.Term
			data, err := store.EncodeOp(o)
			if err != nil {
				return err
			}
			return core.Propose(data)
		})
		var term uint64
		select {
		case term = <-terms:
		default: // ctx ended first
		}
		if !errors.Is(err, raft.ErrProposalDropped) {
			return term, err
		}
		if werr := n.waitLeader(ctx); werr != nil {
			return term, fmt.Errorf("%w: %w", err, werr)
		}
	}
}

// await waits for the result of the op proposed under id in term. When a
// later term begins, it commits a barrier (an entry of that later term):
// once applied here, the op's result has come, or the op never applies
// (lost is true).
func (n *Node) await(ctx, rctx context.Context, id uint64, w *waiter, term uint64, late func(store.Result)) (res store.Result, lost bool, err error) {
	poll := time.NewTicker(max(n.d.ElectionTimeout, 10*time.Millisecond))
	defer poll.Stop()
	for {
		select {
		case res := <-w.ch:
			return res, false, nil
		case <-ctx.Done():
			n.giveUp(id, w, late)
			return store.Result{}, false, fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, ctx.Err())
		case <-rctx.Done():
			n.giveUp(id, w, late)
			return store.Result{}, false, fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, n.d.ErrClosed)
		case <-poll.C:
			if n.d.Term() <= term {
				continue
			}
			if err := n.barrier(ctx); err != nil {
				n.giveUp(id, w, late)
				return store.Result{}, false, fmt.Errorf("%w: %w", kv.ErrOutcomeUnknown, err)
			}
			// Results are delivered in log order: the op's came first.
			select {
			case res := <-w.ch:
				return res, false, nil
			default:
			}
			n.forget(id)
			return store.Result{}, true, nil
		}
	}
}

// waitLeader waits a moment (a tick: raft drops proposals while a leader
// hands over, too), then until a leader is known.
func (n *Node) waitLeader(ctx context.Context) error {
	if err := n.sleep(ctx, n.d.HeartbeatInterval); err != nil {
		return err
	}
	return n.d.WaitForLeader(ctx)
}

// sleep waits d, or until ctx ends or the peer closes.
func (n *Node) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.d.Done:
		return n.d.ErrClosed
	}
}

// linearize returns once this peer's store holds every write acknowledged
// before the call (anywhere in the cluster), so that a local read is
// linearizable. The leader holding its lease knows that its commit index
// covers them (Core.LeaseRead) and, between two calls, its node loop has
// applied everything committed, so it answers without a round trip. Any
// other peer (a follower, or a leader without its lease) commits a barrier
// through the log: an entry appended by the current leader after the call
// began, so every acknowledged write precedes it, and once it is applied
// here the store holds them.
func (n *Node) linearize(ctx context.Context) error {
	if err := n.d.Ready(); err != nil {
		return err
	}
	_, do, ok := n.d.Running()
	if !ok {
		return n.d.ErrClosed
	}
	for {
		var idx, applied uint64
		var leased bool
		err := do(ctx, func(core *consensus.Core) error {
			idx, leased = core.LeaseRead()
			applied = core.AppliedIndex()
			return nil
		})
		if errors.Is(err, consensus.ErrStopped) {
			return n.d.ErrClosed
		}
		if err != nil {
			return err
		}
		if !leased {
			return n.sharedBarrier(ctx)
		}
		if applied >= idx {
			return nil
		}
		// Not expected (the loop applies every committed entry before it
		// answers a call); the next call sees them applied.
	}
}

// sharedBarrier waits for a barrier that starts after the call: the next
// one, which every read arriving meanwhile shares (a barrier already under
// way may have been appended before the call, so it does not count). One
// barrier runs at a time; a busy follower commits one per round trip, not
// one per read.
func (n *Node) sharedBarrier(ctx context.Context) error {
	n.barrierMu.Lock()
	call := n.barrierNext
	if call == nil {
		call = &barrierCall{done: make(chan struct{})}
		n.barrierNext = call
		if !n.barrierRunning {
			rctx, _, ok := n.d.Running()
			if !ok {
				n.barrierNext = nil
				n.barrierMu.Unlock()
				return n.d.ErrClosed
			}
			n.startBarrierLocked(rctx)
		}
	}
	n.barrierMu.Unlock()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return fmt.Errorf("linearizable read: %w", ctx.Err())
	}
}

// startBarrierLocked runs the next barrier (callers hold barrierMu). It
// ends when the barrier applied, or at Close (rctx).
func (n *Node) startBarrierLocked(rctx context.Context) {
	call := n.barrierNext
	n.barrierNext, n.barrierRunning = nil, true
	go func() {
		err := n.barrier(rctx)
		n.barrierMu.Lock()
		defer n.barrierMu.Unlock()
		call.err = err
		close(call.done)
		n.barrierRunning = false
		if n.barrierNext != nil {
			n.startBarrierLocked(rctx)
		}
	}()
}

// barrierOp changes nothing: a delete of an internal key that is never
// written, on the condition that it is absent. Its result says only that
// it was applied.
var barrierOp = store.Op{Type: store.OpDelete, Key: store.InternalPrefix + "barrier", Compare: true}

// barrier commits a barrier through the log and waits until this peer
// applied it. A barrier lost with a leader is proposed again (a barrier
// applied twice does nothing).
func (n *Node) barrier(ctx context.Context) error {
	attempt := max(4*n.d.ElectionTimeout, time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		_, err := n.Propose(actx, barrierOp, nil)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("linearizable read: %w", ctx.Err())
		case errors.Is(err, kv.ErrOutcomeUnknown) && !errors.Is(err, n.d.ErrClosed), errors.Is(err, n.d.ErrNoLeader):
			continue // slow, or no leader yet: propose another
		default:
			return err
		}
	}
}

// read waits, unless stale, until a local read is linearizable.
func (n *Node) read(ctx context.Context, stale bool) error {
	if stale {
		return nil
	}
	return n.linearize(ctx)
}

// Get reads key (see kv.KV.Get).
func (n *Node) Get(ctx context.Context, key string, stale bool) (kv.KeyValue, bool, uint64, error) {
	if err := n.d.Ready(); err != nil {
		return kv.KeyValue{}, false, 0, err
	}
	if err := n.kvError(store.CheckKey(key)); err != nil {
		return kv.KeyValue{}, false, 0, err
	}
	if err := n.read(ctx, stale); err != nil {
		return kv.KeyValue{}, false, 0, err
	}
	v, ok, rev := n.store.Get(key)
	if !ok {
		return kv.KeyValue{}, false, rev, nil
	}
	return n.keyValue(&v), true, rev, nil
}

// List reads the keys under prefix (see kv.KV.List).
func (n *Node) List(ctx context.Context, prefix string, stale bool) ([]kv.KeyValue, uint64, error) {
	if err := n.d.Ready(); err != nil {
		return nil, 0, err
	}
	if err := n.read(ctx, stale); err != nil {
		return nil, 0, err
	}
	kvs, rev := n.store.List(prefix, 0)
	out := make([]kv.KeyValue, len(kvs))
	for i := range kvs {
		out[i] = n.keyValue(&kvs[i])
	}
	return out, rev, nil
}

// Put writes a key (see kv.KV.Put; the handle checked key and options).
func (n *Node) Put(ctx context.Context, key string, value []byte, w kv.Write) (kv.Result, error) {
	op := store.Op{Type: store.OpPut, Key: key, Value: value, Compare: w.Compare, ModRevision: w.ModRevision, Session: w.Session}
	if w.Ephemeral {
		op.Owner = n.d.SelfID
	}
	return n.write(ctx, op)
}

// Delete deletes a key (see kv.KV.Delete).
func (n *Node) Delete(ctx context.Context, key string, w kv.Write) (kv.Result, error) {
	return n.write(ctx, store.Op{Type: store.OpDelete, Key: key, Compare: w.Compare, ModRevision: w.ModRevision})
}

// write proposes op, waits for its result and maps it.
func (n *Node) write(ctx context.Context, op store.Op) (kv.Result, error) {
	if err := n.d.Ready(); err != nil {
		return kv.Result{}, err
	}
	if err := op.Check(); err != nil {
		return kv.Result{}, n.kvError(err)
	}
	start := n.d.Mono()
	res, err := n.Propose(ctx, op, nil)
	if err != nil {
		return kv.Result{}, err
	}
	n.d.ObserveApply(n.d.Mono() - start)
	out := kv.Result{Revision: res.Revision, KV: n.keyValuePtr(res.KV), Prev: n.keyValuePtr(res.Prev)}
	switch {
	case res.Succeeded:
		return out, nil
	case res.Err != nil:
		return out, n.kvError(res.Err)
	default:
		return out, fmt.Errorf("%w: %q", kv.ErrCompareFailed, op.Key)
	}
}

// Watch streams the changes under prefix (see kv.KV.Watch).
func (n *Node) Watch(ctx context.Context, prefix string, fromRevision uint64) (<-chan kv.Event, error) {
	if err := n.d.Ready(); err != nil {
		return nil, err
	}
	rctx, _, ok := n.d.Running()
	if !ok {
		return nil, n.d.ErrClosed
	}
	st := n.store
	next := fromRevision
	if next == 0 {
		next = st.Revision() + 1
	}
	if _, err := st.Since(next, prefix); err != nil {
		return nil, compacted(err)
	}
	ch := make(chan kv.Event, 64)
	go func() {
		defer close(ch)
		for {
			changed := st.Changed()
			rev := st.Revision()
			evs, err := st.Since(next, prefix)
			if err != nil {
				return
			}
			for _, ev := range evs {
				select {
				case ch <- n.event(ev):
				case <-ctx.Done():
					return
				case <-rctx.Done():
					return
				}
				next = ev.Revision + 1
			}
			// Every event up to rev was in evs (or not on prefix).
			next = max(next, rev+1)
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-rctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// Context ends when Close begins (context.Background's before Start:
// nothing runs then).
func (n *Node) Context() context.Context {
	if ctx, _, ok := n.d.Running(); ok {
		return ctx
	}
	return context.Background()
}

// compacted maps the store's *store.CompactedError to kv's.
func compacted(err error) error {
	var ce *store.CompactedError
	if errors.As(err, &ce) {
		return &kv.CompactedError{Oldest: ce.Oldest}
	}
	return err
}

// keyValue converts a store key (copying its value).
func (n *Node) keyValue(v *store.KeyValue) kv.KeyValue {
	return kv.KeyValue{
		Key: v.Key, Value: bytes.Clone(v.Value),
		CreateRevision: v.CreateRevision, ModRevision: v.ModRevision, Version: v.Version,
		Owner: n.OwnerName(v.Owner), Session: v.Session,
	}
}

func (n *Node) keyValuePtr(v *store.KeyValue) *kv.KeyValue {
	if v == nil {
		return nil
	}
	out := n.keyValue(v)
	return &out
}

func (n *Node) event(ev store.Event) kv.Event {
	out := kv.Event{Type: kv.EventPut, Revision: ev.Revision, KV: n.keyValue(&ev.KV), Prev: n.keyValuePtr(ev.Prev)}
	if ev.Type == store.EventDelete {
		out.Type = kv.EventDelete
	}
	return out
}

// OwnerName returns the identifier of the member with node ID id ("" for
// 0): from the registry, or remembered from it once the member left.
func (n *Node) OwnerName(id uint64) string {
	if id == 0 {
		return ""
	}
	if name, ok := n.d.Member(id); ok {
		return name
	}
	if name, ok := n.owners.Load(id); ok {
		return name.(string)
	}
	return fmt.Sprintf("node-%016x", id)
}

// RememberOwner records a member's identifier for OwnerName.
func (n *Node) RememberOwner(id uint64, identifier string) {
	n.owners.Store(id, identifier)
}

// Stats is what the KV metrics read: the revision, keys and bytes.
func (n *Node) Stats() (rev uint64, keys int, bytes int64) {
	keys, bytes = n.store.Stats()
	return n.store.Revision(), keys, bytes
}

// kvError maps the store's errors to kv's.
func (n *Node) kvError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrInvalidKey), errors.Is(err, store.ErrMalformed):
		return fmt.Errorf("%w: %w", kv.ErrInvalidKey, err)
	case errors.Is(err, store.ErrTooLarge):
		return fmt.Errorf("%w: %w", kv.ErrTooLarge, err)
	case errors.Is(err, store.ErrQuota):
		return fmt.Errorf("%w: %w", kv.ErrQuota, err)
	case errors.Is(err, store.ErrNotFound):
		return kv.ErrKeyNotFound
	case errors.Is(err, store.ErrSessionNotFound):
		return fmt.Errorf("%w: %w", kv.ErrSessionNotFound, err)
	case errors.Is(err, store.ErrOwnerRemoved):
		return fmt.Errorf("%w: this member was removed from the cluster", n.d.ErrUnknownPeer)
	}
	return err
}
