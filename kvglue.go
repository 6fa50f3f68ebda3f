package qcluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kv"
)

// The KV store of leader mode is the pure state machine of package
// internal/kv. This file is the glue: it feeds it what the node commits
// (on the node goroutine, in applyCommitted), hands each applied result to
// the proposal waiting for it, makes reads linearizable, and packs the
// store beside the registry in the raft snapshot.

// kvState is a peer's KV store and the proposals waiting for their
// results. It lives as long as the Cluster (restarts build a new Cluster).
type kvState struct {
	store *kv.Store

	mu      sync.Mutex
	waiters map[uint64]*kvWaiter // by ReqID

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

// barrierCall is one barrier that reads wait for.
type barrierCall struct {
	done chan struct{}
	err  error
}

// kvWaiter is one proposal waiting for its result.
type kvWaiter struct {
	ch chan kv.Result // capacity 1; only deliver sends, once
	// late, set once the caller gave up (its context ended), gets the
	// result instead, in a goroutine of its own.
	late func(kv.Result)
}

func newKVState() *kvState {
	return &kvState{store: kv.New(kv.Options{}), waiters: map[uint64]*kvWaiter{}}
}

// register adds a waiter under a new random ReqID. ReqIDs are random so
// that peers never pick the same one (every peer applies every result).
func (k *kvState) register() (uint64, *kvWaiter) {
	w := &kvWaiter{ch: make(chan kv.Result, 1)}
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		id := rand.Uint64()
		if _, taken := k.waiters[id]; id != 0 && !taken {
			k.waiters[id] = w
			return id, w
		}
	}
}

// forget drops a waiter whose proposal was certainly not appended.
func (k *kvState) forget(id uint64) {
	k.mu.Lock()
	delete(k.waiters, id)
	k.mu.Unlock()
}

// giveUp is called when the caller stops waiting for a proposal that may
// still be applied: late (when not nil) gets its result if it comes.
func (k *kvState) giveUp(id uint64, w *kvWaiter, late func(kv.Result)) {
	k.mu.Lock()
	if _, ok := k.waiters[id]; ok {
		if late != nil {
			w.late = late
		} else {
			delete(k.waiters, id)
		}
		k.mu.Unlock()
		return
	}
	k.mu.Unlock()
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
func (k *kvState) deliver(rs []kv.Result) {
	for _, r := range rs {
		// A duplicate (a proposal delivered twice, applied once) answers
		// nobody: the first result was this ReqID's.
		if r.ReqID == 0 || r.Duplicate {
			continue
		}
		k.mu.Lock()
		w, ok := k.waiters[r.ReqID]
		var late func(kv.Result)
		if ok {
			delete(k.waiters, r.ReqID)
			late = w.late
		}
		k.mu.Unlock()
		switch {
		case !ok:
		case late != nil:
			go late(r)
		default:
			w.ch <- r // capacity 1, the only send
		}
	}
}

// applyKV feeds the store what the core committed: the snapshot's KV part
// first (kvData; none in a snapshot written before the KV store existed:
// the store restarts empty), then the entries. It runs on the node
// goroutine, inside applyCommitted, so the store has applied every entry
// the core has once the node loop is idle (see kvLinearize).
func (c *Cluster) applyKV(a consensus.Applied, kvData []byte) {
	if a.Snapshot != nil && len(a.Snapshot.Data) > 0 {
		if kvData == nil {
			kvData = kv.New(kv.Options{}).Snapshot()
		}
		if err := c.kv.store.Restore(kvData); err != nil {
			c.log.Error("kv: cannot decode the snapshot's key-value store; keeping the current one", "err", err)
		}
	}
	for _, e := range a.Entries {
		c.kv.deliver(c.kv.store.Apply(e))
	}
}

// snapshotMagic starts a raft snapshot's data that holds the registry and
// the KV store. A snapshot without it (written before the KV store
// existed, or the founding one) holds the registry alone: its JSON starts
// with '{'.
const snapshotMagic = "QCS\x01"

// encodeSnapshot packs the registry and the KV store for a raft snapshot:
// the magic, then each part as a uvarint length and its bytes.
func encodeSnapshot(reg, kvData []byte) []byte {
	b := make([]byte, 0, len(snapshotMagic)+2*binary.MaxVarintLen64+len(reg)+len(kvData))
	b = append(b, snapshotMagic...)
	b = binary.AppendUvarint(b, uint64(len(reg)))
	b = append(b, reg...)
	b = binary.AppendUvarint(b, uint64(len(kvData)))
	return append(b, kvData...)
}

// errBadSnapshot: a raft snapshot's data does not unpack.
var errBadSnapshot = errors.New("malformed snapshot container")

// splitSnapshot unpacks what encodeSnapshot packed. Data without the magic
// is an older registry-only snapshot: kvData is nil.
func splitSnapshot(data []byte) (reg, kvData []byte, err error) {
	if !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		return data, nil, nil
	}
	rest := data[len(snapshotMagic):]
	part := func() []byte {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			err = errBadSnapshot
			return nil
		}
		p := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return p
	}
	reg = part()
	if err == nil {
		kvData = part()
	}
	if err == nil && len(rest) != 0 {
		err = errBadSnapshot
	}
	if err != nil {
		return nil, nil, err
	}
	if kvData == nil {
		kvData = []byte{}
	}
	return reg, kvData, nil
}

// snapshotData is what a raft snapshot taken now holds. It runs on the
// node goroutine, where registry and store are at the applied index.
func (c *Cluster) snapshotData() []byte {
	return encodeSnapshot(c.reg.Load().Snapshot(), c.kv.store.Snapshot())
}

// kvReady returns why the KV store cannot be used now, or nil.
func (c *Cluster) kvReady() error {
	if c.cfg.Mode == ModeMasterless {
		return fmt.Errorf("%w: the key-value store and locks need leader mode", ErrMasterless)
	}
	if c.snap.Load().closed {
		return ErrClosed
	}
	if c.node() == nil {
		return ErrNotStarted
	}
	return nil
}

// kvPropose proposes op on this peer (a follower's proposal goes to the
// leader inside raft) and waits until this peer applies it.
//
// The op is fenced to the term it is proposed in (kv.Op.Term), which
// tells when it is lost: once this peer has applied an entry of a later
// term without seeing its result, it never applies. Then, and when raft
// drops it at once (no leader known, or it is handing over: once a leader
// is known) or it comes back refused for its term, it is proposed again,
// which is safe since it never applied. It is never proposed again
// otherwise: a compare-and-swap must not apply twice. When ctx ends first
// the outcome is unknown (ErrOutcomeUnknown; ErrNoLeader when it was never
// taken): late, when not nil, gets the result if it is applied later.
func (c *Cluster) kvPropose(ctx context.Context, op kv.Op, late func(kv.Result)) (kv.Result, error) {
	if err := c.kvReady(); err != nil {
		return kv.Result{}, err
	}
	if err := op.Check(); err != nil {
		return kv.Result{}, kvError(err)
	}
	r := c.running()
	for {
		id, w := c.kv.register()
		op.ReqID = id
		term, err := c.kvSubmit(ctx, r, op)
		switch {
		case errors.Is(err, raft.ErrProposalDropped):
			c.kv.forget(id)
			return kv.Result{}, fmt.Errorf("%w: the proposal was not taken: %w", ErrNoLeader, err)
		case errors.Is(err, consensus.ErrStopped):
			c.kv.giveUp(id, w, late)
			return kv.Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrClosed)
		case err != nil:
			c.kv.giveUp(id, w, late)
			return kv.Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		res, lost, err := c.kvAwait(ctx, r, id, w, term, late)
		switch {
		case err != nil:
			return kv.Result{}, err
		case lost, errors.Is(res.Err, kv.ErrStaleTerm):
			continue // it never applied and never will
		}
		return res, nil
	}
}

// kvSubmit proposes op, fenced to the current term, which it returns.
// While raft drops it at once (no leader known, or it is handing over) it
// waits for a leader and tries again, until ctx ends or the peer closes
// (then it returns raft.ErrProposalDropped wrapped with why).
func (c *Cluster) kvSubmit(ctx context.Context, r *running, op kv.Op) (uint64, error) {
	for {
		// The call may still run after Do returned on ctx: it writes only
		// to a channel of its own, read once Do says it ran.
		terms := make(chan uint64, 1)
		err := r.node.Do(ctx, func(core *consensus.Core) error {
			o := op
			o.Term = core.View().Term
			terms <- o.Term
			data, err := kv.EncodeOp(o)
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
		if werr := c.kvWaitLeader(ctx); werr != nil {
			return term, fmt.Errorf("%w: %w", err, werr)
		}
	}
}

// kvAwait waits for the result of the op proposed under id in term. When
// a later term begins, it commits a barrier (an entry of that later term):
// once applied here, the op's result has come, or the op never applies
// (lost is true).
func (c *Cluster) kvAwait(ctx context.Context, r *running, id uint64, w *kvWaiter, term uint64, late func(kv.Result)) (res kv.Result, lost bool, err error) {
	poll := time.NewTicker(max(time.Duration(c.cfg.ElectionTimeout), 10*time.Millisecond))
	defer poll.Stop()
	for {
		select {
		case res := <-w.ch:
			return res, false, nil
		case <-ctx.Done():
			c.kv.giveUp(id, w, late)
			return kv.Result{}, false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
		case <-r.ctx.Done():
			c.kv.giveUp(id, w, late)
			return kv.Result{}, false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrClosed)
		case <-poll.C:
			if c.Term() <= term {
				continue
			}
			if err := c.kvBarrier(ctx); err != nil {
				c.kv.giveUp(id, w, late)
				return kv.Result{}, false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			// Results are delivered in log order: the op's came first.
			select {
			case res := <-w.ch:
				return res, false, nil
			default:
			}
			c.kv.forget(id)
			return kv.Result{}, true, nil
		}
	}
}

// kvWaitLeader waits a moment (a tick: raft drops proposals while a
// leader hands over, too), then until a leader is known.
func (c *Cluster) kvWaitLeader(ctx context.Context) error {
	if err := c.sleep(ctx, time.Duration(c.cfg.HeartbeatInterval)); err != nil {
		return err
	}
	_, err := c.WaitForLeader(ctx)
	return err
}

// kvLinearize returns once this peer's store holds every write
// acknowledged before the call (anywhere in the cluster), so that a local
// read is linearizable. The leader holding its lease knows that its commit
// index covers them (Core.LeaseRead) and, between two calls, its node loop
// has applied everything committed, so it answers without a round trip.
// Any other peer (a follower, or a leader without its lease) commits a
// barrier through the log: an entry appended by the current leader after
// the call began, so every acknowledged write precedes it, and once it is
// applied here the store holds them.
func (c *Cluster) kvLinearize(ctx context.Context) error {
	if err := c.kvReady(); err != nil {
		return err
	}
	node := c.node()
	for {
		var idx, applied uint64
		var ok bool
		err := node.Do(ctx, func(core *consensus.Core) error {
			idx, ok = core.LeaseRead()
			applied = core.AppliedIndex()
			return nil
		})
		if errors.Is(err, consensus.ErrStopped) {
			return ErrClosed
		}
		if err != nil {
			return err
		}
		if !ok {
			return c.kvSharedBarrier(ctx)
		}
		if applied >= idx {
			return nil
		}
		// Not expected (the loop applies every committed entry before it
		// answers a call); the next call sees them applied.
	}
}

// kvSharedBarrier waits for a barrier that starts after the call: the
// next one, which every read arriving meanwhile shares (a barrier already
// under way may have been appended before the call, so it does not count).
// One barrier runs at a time; a busy follower commits one per round trip,
// not one per read.
func (c *Cluster) kvSharedBarrier(ctx context.Context) error {
	k := c.kv
	k.barrierMu.Lock()
	call := k.barrierNext
	if call == nil {
		call = &barrierCall{done: make(chan struct{})}
		k.barrierNext = call
		if !k.barrierRunning {
			c.startBarrierLocked(c.running())
		}
	}
	k.barrierMu.Unlock()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return fmt.Errorf("linearizable read: %w", ctx.Err())
	}
}

// startBarrierLocked runs the next barrier (callers hold barrierMu). It
// ends when the barrier applied, or at Close.
func (c *Cluster) startBarrierLocked(r *running) {
	k := c.kv
	call := k.barrierNext
	k.barrierNext, k.barrierRunning = nil, true
	go func() {
		err := c.kvBarrier(r.ctx)
		k.barrierMu.Lock()
		defer k.barrierMu.Unlock()
		call.err = err
		close(call.done)
		k.barrierRunning = false
		if k.barrierNext != nil {
			c.startBarrierLocked(r)
		}
	}()
}

// kvBarrierOp changes nothing: a delete of an internal key that is never
// written, on the condition that it is absent. Its result says only that
// it was applied.
var kvBarrierOp = kv.Op{Type: kv.OpDelete, Key: kv.InternalPrefix + "barrier", Compare: true}

// kvBarrier commits a barrier through the log and waits until this peer
// applied it. A barrier lost with a leader is proposed again (a barrier
// applied twice does nothing).
func (c *Cluster) kvBarrier(ctx context.Context) error {
	attempt := max(4*time.Duration(c.cfg.ElectionTimeout), time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		_, err := c.kvPropose(actx, kvBarrierOp, nil)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("linearizable read: %w", ctx.Err())
		case errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, ErrClosed), errors.Is(err, ErrNoLeader):
			continue // slow, or no leader yet: propose another
		default:
			return err
		}
	}
}

// ownerName returns the identifier of the member with node ID id ("" for
// 0): from the registry, or remembered from it once the member left.
func (c *Cluster) ownerName(id uint64) string {
	if id == 0 {
		return ""
	}
	if m, ok := c.reg.Load().Get(id); ok {
		return m.Identifier
	}
	if name, ok := c.kv.owners.Load(id); ok {
		return name.(string)
	}
	return fmt.Sprintf("node-%016x", id)
}

// rememberOwner records a member's identifier for ownerName.
func (c *Cluster) rememberOwner(id uint64, identifier string) {
	c.kv.owners.Store(id, identifier)
}

// kvStats is what the KV metrics read: the revision, keys and bytes.
func (c *Cluster) kvStats() (rev uint64, keys int, bytes int64) {
	keys, bytes = c.kv.store.Stats()
	return c.kv.store.Revision(), keys, bytes
}

// kvQuota is the quota this peer's config asks for (kv_quota_bytes).
func (c *Cluster) kvQuota() int64 {
	if q := c.cfg.KVQuotaBytes; q > 0 {
		return q
	}
	return kv.DefaultQuota
}

// startKVUpkeep starts the goroutine that looks after the store on a
// clock, every sessionTick: the sessions' expiry (checkSessions) and the
// cluster's quota (checkQuota). It runs on every peer in leader mode for
// the life of the peer (its work is a leader's; a follower only keeps the
// sessions' clocks), so a peer's goroutines do not come and go with
// leadership.
func (c *Cluster) startKVUpkeep(r *running) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.sessionTick())
		defer t.Stop()
		for {
			select {
			case <-r.ctx.Done():
				return
			case now := <-t.C:
				c.checkSessions(r, now)
				c.checkQuota(r, now)
			}
		}
	}()
}

// checkQuota makes the cluster's quota this leader's configured one: when
// the quota applied differs (at a gain of leadership, after a snapshot or
// an older leader's entry), it proposes an OpSetQuota, once per term and
// then at most once an election timeout. The quota is in the log, not a
// local setting: every peer refuses the same puts.
func (c *Cluster) checkQuota(r *running, now time.Time) {
	want, got := c.kvQuota(), c.kv.store.Quota()
	if got == want || !c.IsLeader() {
		return
	}
	et := time.Duration(c.cfg.ElectionTimeout)
	term := c.Term()
	if term == c.kv.quotaTerm && now.Sub(c.kv.quotaAt) < et {
		return
	}
	c.kv.quotaTerm, c.kv.quotaAt = term, now
	ctx, cancel := context.WithTimeout(r.ctx, 2*et)
	defer cancel()
	if _, err := c.kvPropose(ctx, kv.Op{Type: kv.OpSetQuota, Quota: want}, nil); err != nil {
		c.log.Debug("kv: proposing the configured quota", "quota", want, "err", err)
		return
	}
	c.log.Info("kv: the cluster's quota is this leader's kv_quota_bytes", "quota", want, "was", got)
}

// kvError maps the store's errors to the SDK's.
func kvError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kv.ErrInvalidKey), errors.Is(err, kv.ErrMalformed):
		return fmt.Errorf("%w: %w", ErrInvalidKey, err)
	case errors.Is(err, kv.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, kv.ErrQuota):
		return fmt.Errorf("%w: %w", ErrQuota, err)
	case errors.Is(err, kv.ErrNotFound):
		return ErrKeyNotFound
	case errors.Is(err, kv.ErrSessionNotFound):
		return fmt.Errorf("%w: %w", ErrSessionNotFound, err)
	case errors.Is(err, kv.ErrOwnerRemoved):
		return fmt.Errorf("%w: this member was removed from the cluster", ErrUnknownPeer)
	}
	return err
}
