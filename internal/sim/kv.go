package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kv"
)

// The key-value store under the simulator's faults. Every peer runs a
// kv.Store beside its registry records: fed the committed entries (the
// Loop's Apply), packed into its snapshots (SnapshotData) and restored
// from them (a snapshot received, or the stored one on restart). An
// application may apply what raft committed on a goroutine of its own, a
// little after the Loop handed it over: Options.KVApplyLag delays each
// batch by up to that much (0: at once, as the root package does), so a
// linearizable read must wait until the store has applied the index
// LeaseRead gave it.
//
// Clients (Options.KVClients) issue operations during the fault phase on
// a peer they pick (the leader they believe in, or any peer; a follower's
// proposal is forwarded by raft): put, compare-and-swap on the mod
// revision, create-if-absent, delete (unconditional or compared), and
// linearizable get (LeaseRead on the peer, wait for its store to apply
// that index, read). A write completes when the peer it was proposed on
// applies its ReqID; when that peer crashes or the client's timeout passes
// first, its outcome is unknown: the history keeps it with no return.
// kvcheck.go checks the history and the stores.

// kvKind is what a client operation does.
type kvKind uint8

const (
	kvGet       kvKind = iota // linearizable read
	kvPut                     // unconditional put
	kvCAS                     // put if the key's mod revision is the one observed (0: create if absent)
	kvDelete                  // unconditional delete
	kvCASDelete               // delete if the key's mod revision is the one observed
)

func (k kvKind) String() string {
	return [...]string{"get", "put", "cas", "delete", "cas-delete"}[k]
}

// kvInput is an operation as the linearizability model sees it. A compare
// on a mod revision is expressed as a compare on the value the client saw
// with that revision: every put writes a value never written before, so
// the two are equivalent, which the checker verifies (every (revision,
// value) a client was shown is the put at that revision in the reference
// history).
type kvInput struct {
	kind  kvKind
	key   string
	value string // put, cas
	// expect, expectValue: a compare wants the key present with this
	// value (expect), or absent.
	expect      bool
	expectValue string
	modRev      uint64 // the revision compared (for the trace)
	owner       uint64 // a put bound to this member (locks: kvlock.go)
}

// kvOutput is what the client was told. For a write that succeeded,
// exists/value describe the key before it (Result.Prev); for a compare
// that failed, the key as it is (Result.KV); for a get, the key read.
type kvOutput struct {
	unknown bool // no answer: the write may or may not have happened
	ok      bool // a write succeeded (a delete found the key, a compare held)
	exists  bool
	value   string
}

// kvRec is one client operation and what became of it.
type kvRec struct {
	client int
	in     kvInput
	out    kvOutput
	call   int64 // history timestamps (kvState.clock)
	ret    int64 // 0: no return (yet)
	peer   uint64
	inc    uint64 // the peer's incarnation it was issued to
	reqID  uint64

	proposed bool           // the write reached Core.Propose, which took it
	dropped  bool           // Propose refused it at once: appended nowhere
	refused  bool           // a read without the lease
	done     bool           // the client stopped waiting (answered, or timed out)
	rev      uint64         // a write's revision (Result.Revision)
	index    uint64         // a write's log index
	role     consensus.Role // a read: the peer's role when LeaseRead ran
	seen     kvKnown        // what the answer showed of the key after the operation
	onDone   func(*kvRec)
}

// kvKnown is what a client last saw of a key.
type kvKnown struct {
	exists bool
	value  string
	modRev uint64
}

// kvClient is one simulated client: one operation at a time.
type kvClient struct {
	id    int
	n     int
	known map[string]kvKnown
}

// kvState is the Cluster's KV bookkeeping: the clients' history, the
// writes waiting for their result, and the reference history (kvcheck.go).
type kvState struct {
	rng     *rand.Rand
	lag     time.Duration
	timeout time.Duration
	keys    []string
	clock   int64
	nextReq uint64
	recs    []*kvRec
	waiting map[uint64]*kvRec // by ReqID
	// appliedAt: the index each ReqID was applied at (once).
	appliedAt map[uint64]uint64
	ref       kvRef
	// watchers, holders: the watch streams and lock holders (kvwatch.go,
	// kvlock.go); watchDone ends the watchers' polls.
	watchers  []*kvWatcher
	watchDone bool
	holders   []*kvHolder
}

// peerKV is one peer's store and what the checker tracks of it.
type peerKV struct {
	store   *kv.Store
	queue   []kvBatch
	pending bool   // a drain is scheduled
	applied uint64 // the core's applied index the store has caught up with
	reads   []kvRead
	seen    uint64 // revision through which its events were checked
	lastRev uint64 // revision after the last batch (this incarnation)
}

// kvBatch is one Applied, waiting for the store.
type kvBatch struct {
	snap    *raftpb.Snapshot
	ents    []raftpb.Entry
	through uint64
}

// kvRead is a linearizable read waiting for the store to apply index.
type kvRead struct {
	rec   *kvRec
	index uint64
}

func (c *Cluster) kvInit() {
	c.kv = kvState{
		rng:       rand.New(rand.NewPCG(c.opts.Seed, 0x6b76)),
		lag:       c.opts.KVApplyLag,
		timeout:   4 * c.tm.et,
		waiting:   map[uint64]*kvRec{},
		appliedAt: map[uint64]uint64{},
	}
	nkeys := c.opts.KVKeys
	if nkeys <= 0 {
		nkeys = 4
	}
	for i := range nkeys {
		c.kv.keys = append(c.kv.keys, fmt.Sprintf("k%d", i))
	}
}

// acceptKV is the simulated peers' Config.AcceptProposal: a leader appends
// a forwarded proposal that is a KV operation which decodes, bound to no
// member or to the sender (as internal/raftguard's Guard).
func acceptKV(from uint64, data []byte) error {
	op, err := kv.DecodeOp(data)
	if err != nil {
		return err
	}
	if op.Owner != 0 && op.Owner != from {
		return fmt.Errorf("sim: node %d bound key %q to node %d", from, op.Key, op.Owner)
	}
	return nil
}

// kvStart gives a new incarnation its store: the stored snapshot's, then
// the log replays the rest.
func (p *peer) kvStart(snap raftpb.Snapshot) {
	c := p.c
	p.kv.store = kv.New(kv.Options{})
	p.kv.queue, p.kv.pending, p.kv.reads = nil, false, nil
	p.kv.applied = snap.Metadata.Index
	if data := decodeKV(snap.Data); len(data) > 0 {
		if err := p.kv.store.Restore(data); err != nil {
			c.fail(InvKVHistory, "p%d cannot restore its stored snapshot's store: %v", p.id, err)
			return
		}
	}
	// Its revision may be older than before the crash (the stored
	// snapshot, then the log replays), or newer (a snapshot received and
	// stored, not yet applied): it must be the reference state at its
	// revision.
	rev := p.kv.store.Revision()
	p.kv.seen, p.kv.lastRev = rev, rev
	c.chk.kvRestored(p, "stored snapshot")
}

// kvApply hands what the Loop applied to the store: at once, or after the
// schedule's apply lag.
func (p *peer) kvApply(a consensus.Applied) {
	c := p.c
	b := kvBatch{through: p.core.AppliedIndex()}
	if a.Snapshot != nil {
		s := *a.Snapshot
		b.snap = &s
	}
	lag, fixed := c.kv.lag, false
	if c.opts.kvLag != nil {
		lag, fixed = c.opts.kvLag(p.id), true
	}
	if lag == 0 {
		b.ents = a.Entries
		p.kv.queue = append(p.kv.queue, b)
		p.kvDrain()
		return
	}
	b.ents = slices.Clone(a.Entries)
	p.kv.queue = append(p.kv.queue, b)
	if p.kv.pending {
		return
	}
	p.kv.pending = true
	inc := p.inc
	var drain func()
	drain = func() {
		if p.inc != inc || c.err != nil {
			return
		}
		if p.paused {
			c.after(c.tm.tick, drain)
			return
		}
		p.kv.pending = false
		p.kvDrain()
	}
	if !fixed {
		lag = time.Duration(c.kv.rng.Int64N(int64(lag) + 1))
	}
	c.after(lag, drain)
}

// kvDrain applies every waiting batch, answers the writes it completes
// and the reads it makes servable.
func (p *peer) kvDrain() {
	c := p.c
	for len(p.kv.queue) > 0 && c.err == nil {
		b := p.kv.queue[0]
		p.kv.queue = p.kv.queue[1:]
		if b.snap != nil {
			p.kvRestoreSnapshot(b.snap)
		}
		for _, e := range b.ents {
			var owned map[uint64]int
			if e.Type != raftpb.EntryNormal {
				owned = kvOwned(p)
			}
			for _, r := range p.kv.store.Apply(e) {
				c.kvResult(p, r)
			}
			if owned != nil {
				c.kvCheckEphemeral(p, e)
				c.kvCountEphemeral(p, owned)
			}
		}
		p.kv.applied = b.through
		c.chk.kvEvents(p)
	}
	p.kv.queue = nil
	p.kvServeReads()
}

// kvRestoreSnapshot replaces the store with a received snapshot's: it must
// be newer than what the store applied, and its revision not older.
func (p *peer) kvRestoreSnapshot(snap *raftpb.Snapshot) {
	c := p.c
	if snap.Metadata.Index <= p.kv.applied {
		c.fail(InvKVHistory, "p%d restores a snapshot at index %d, not newer than its applied %d", p.id, snap.Metadata.Index, p.kv.applied)
		return
	}
	st := kv.New(kv.Options{})
	if data := decodeKV(snap.Data); len(data) > 0 {
		if err := st.Restore(data); err != nil {
			c.fail(InvKVHistory, "p%d cannot restore a received snapshot's store: %v", p.id, err)
			return
		}
	}
	if rev := st.Revision(); rev < p.kv.lastRev {
		c.fail(InvKVHistory, "p%d restores a snapshot at revision %d after revision %d", p.id, rev, p.kv.lastRev)
		return
	}
	p.kv.store = st
	p.kv.seen, p.kv.lastRev = st.Revision(), st.Revision()
	c.chk.kvRestored(p, "received snapshot")
}

// kvServeReads answers the linearizable reads whose index the store has
// applied.
func (p *peer) kvServeReads() {
	c := p.c
	rest := p.kv.reads[:0]
	for _, r := range p.kv.reads {
		if p.kv.applied < r.index {
			rest = append(rest, r)
			continue
		}
		if r.rec.done {
			continue
		}
		kvv, ok, _ := p.kv.store.Get(r.rec.in.key)
		r.rec.out = kvOutput{ok: true, exists: ok}
		if ok {
			r.rec.out.value = string(kvv.Value)
			c.kv.ref.observe(r.rec.in.key, kvv.ModRevision, r.rec.out.value)
			r.rec.seen = kvKnown{exists: true, value: r.rec.out.value, modRev: kvv.ModRevision}
		}
		c.stats.KVReads++
		c.kvFinish(r.rec)
	}
	p.kv.reads = rest
}

// kvResult handles one applied result on p: a ReqID applies at one index
// only; the write waiting for it on p completes.
func (c *Cluster) kvResult(p *peer, r kv.Result) {
	if r.ReqID == 0 {
		return
	}
	if r.Duplicate {
		// A proposal delivered twice: the store did not apply it again,
		// and names the index it applied at.
		if at, ok := c.kv.appliedAt[r.ReqID]; !ok || at != r.Index {
			c.fail(InvKVOnce, "p%d answered request %d as a duplicate of index %d, applied at index %d (%v)", p.id, r.ReqID, r.Index, at, ok)
			return
		}
		c.stats.KVDuplicates++
		return
	}
	if at, ok := c.kv.appliedAt[r.ReqID]; ok && at != r.Index {
		c.fail(InvKVOnce, "p%d applied request %d at index %d, already applied at index %d", p.id, r.ReqID, r.Index, at)
		return
	}
	c.kv.appliedAt[r.ReqID] = r.Index
	rec, ok := c.kv.waiting[r.ReqID]
	if !ok || rec.peer != p.id || rec.inc != p.inc || rec.done {
		return
	}
	if r.Err == kv.ErrOwnerRemoved && rec.in.owner != 0 {
		rec.out, rec.rev, rec.index = kvOutput{}, r.Revision, r.Index
		c.kvFinish(rec)
		return
	}
	if r.Err != nil && r.Err != kv.ErrNotFound {
		c.fail("sim", "p%d: request %d: unexpected error %v", p.id, r.ReqID, r.Err)
		return
	}
	key := rec.in.key
	out := kvOutput{ok: r.Succeeded}
	switch {
	case r.Succeeded && r.Prev != nil:
		out.exists, out.value = true, string(r.Prev.Value)
		c.kv.ref.observe(key, r.Prev.ModRevision, out.value)
	case !r.Succeeded && r.KV != nil:
		out.exists, out.value = true, string(r.KV.Value)
		c.kv.ref.observe(key, r.KV.ModRevision, out.value)
		rec.seen = kvKnown{exists: true, value: out.value, modRev: r.KV.ModRevision}
	}
	if r.Succeeded && (rec.in.kind == kvPut || rec.in.kind == kvCAS) {
		c.kv.ref.observe(key, r.Revision, rec.in.value)
		rec.seen = kvKnown{exists: true, value: rec.in.value, modRev: r.Revision}
	}
	if !r.Succeeded && (rec.in.kind == kvCAS || rec.in.kind == kvCASDelete) && rec.in.owner == 0 {
		c.stats.KVCompareFailed++
	}
	rec.out, rec.rev, rec.index = out, r.Revision, r.Index
	c.stats.KVWrites++
	c.kvFinish(rec)
}

// kvFinish returns an operation to its client.
func (c *Cluster) kvFinish(rec *kvRec) {
	c.kv.clock++
	rec.ret = c.kv.clock
	rec.done = true
	delete(c.kv.waiting, rec.reqID)
	if rec.onDone != nil {
		rec.onDone(rec)
	}
}

// kvWrite proposes a write on peer id; onDone runs when it completes, was
// refused at once, or timed out.
func (c *Cluster) kvWrite(id uint64, client int, in kvInput, onDone func(*kvRec)) *kvRec {
	p := c.peer(id)
	c.kv.clock++
	c.kv.nextReq++
	rec := &kvRec{client: client, in: in, call: c.kv.clock, peer: id, inc: p.inc, reqID: c.kv.nextReq, onDone: onDone}
	c.kv.recs = append(c.kv.recs, rec)
	op := kv.Op{Key: in.key, ReqID: rec.reqID}
	switch in.kind {
	case kvPut, kvCAS:
		op.Type, op.Value, op.Owner = kv.OpPut, []byte(in.value), in.owner
	default:
		op.Type = kv.OpDelete
	}
	if in.kind == kvCAS || in.kind == kvCASDelete {
		op.Compare, op.ModRevision = true, in.modRev
	}
	data, err := kv.EncodeOp(op)
	if err != nil {
		c.fail("sim", "encode %v: %v", in.kind, err)
		return rec
	}
	c.kv.waiting[rec.reqID] = rec
	c.Do(id, fmt.Sprintf("kv %s %s", in.kind, in.key), func(core *consensus.Core) error {
		if rec.inc != p.inc {
			return nil
		}
		rec.proposed = true
		err := core.Propose(data)
		if err != nil {
			rec.dropped = true // appended nowhere, even if the client gave up already
			if !rec.done {
				rec.done = true
				delete(c.kv.waiting, rec.reqID)
				if rec.onDone != nil {
					rec.onDone(rec)
				}
			}
		}
		return err
	})
	c.after(c.kv.timeout, func() {
		if !rec.done {
			rec.done = true
			delete(c.kv.waiting, rec.reqID)
			if rec.proposed {
				c.stats.KVUnknown++
			}
			if rec.onDone != nil {
				rec.onDone(rec)
			}
		}
	})
	return rec
}

// kvGet issues a linearizable read of key on peer id: LeaseRead on its
// loop, then the value once its store applied that index.
func (c *Cluster) kvGet(id uint64, client int, key string, onDone func(*kvRec)) *kvRec {
	p := c.peer(id)
	c.kv.clock++
	rec := &kvRec{client: client, in: kvInput{kind: kvGet, key: key}, call: c.kv.clock, peer: id, inc: p.inc, onDone: onDone}
	c.kv.recs = append(c.kv.recs, rec)
	c.Do(id, "kv get "+key, func(core *consensus.Core) error {
		if rec.inc != p.inc || rec.done {
			return nil
		}
		rec.role = core.View().Role
		idx, ok := core.LeaseRead()
		if !ok {
			rec.refused, rec.done = true, true
			c.stats.KVReadsRefused++
			if rec.onDone != nil {
				rec.onDone(rec)
			}
			return nil
		}
		p.kv.reads = append(p.kv.reads, kvRead{rec: rec, index: idx})
		p.kvServeReads()
		return nil
	})
	c.after(c.kv.timeout, func() {
		if !rec.done {
			rec.done, rec.refused = true, true
			c.stats.KVReadsRefused++
			if rec.onDone != nil {
				rec.onDone(rec)
			}
		}
	})
	return rec
}

// kvRunClient runs one client until the fault phase ends: an operation,
// a pause, the next.
func (c *Cluster) kvRunClient(cl *kvClient) {
	if c.healed || c.err != nil {
		return
	}
	r := c.kv.rng
	next := func(*kvRec) {
		c.after(time.Duration(r.Int64N(int64(40*time.Millisecond))), func() { c.kvRunClient(cl) })
	}
	target := c.kvTarget(r)
	if target == nil {
		next(nil)
		return
	}
	key := c.kv.keys[r.IntN(len(c.kv.keys))]
	done := func(rec *kvRec) {
		if rec.ret != 0 {
			cl.known[key] = rec.seen
		}
		next(rec)
	}
	cl.n++
	value := fmt.Sprintf("c%d.%d", cl.id, cl.n)
	k := cl.known[key]
	switch x := r.IntN(20); {
	case x < 7:
		c.kvGet(target.id, cl.id, key, done)
	case x < 10:
		c.kvWrite(target.id, cl.id, kvInput{kind: kvPut, key: key, value: value}, done)
	case x < 16:
		// Compare with what the client saw (absent: create).
		in := kvInput{kind: kvCAS, key: key, value: value, expect: k.exists, expectValue: k.value, modRev: k.modRev}
		c.kvWrite(target.id, cl.id, in, done)
	case x < 18 || !k.exists:
		c.kvWrite(target.id, cl.id, kvInput{kind: kvDelete, key: key}, done)
	default:
		in := kvInput{kind: kvCASDelete, key: key, expect: true, expectValue: k.value, modRev: k.modRev}
		c.kvWrite(target.id, cl.id, in, done)
	}
}

// kvTarget picks the peer a client talks to: the leader of the highest
// term, any peer that believes it leads (perhaps deposed without knowing
// it yet), or any live peer.
func (c *Cluster) kvTarget(r *rand.Rand) *peer {
	var leaders, live []*peer
	for _, p := range c.peers {
		if p.crashed {
			continue
		}
		live = append(live, p)
		if p.core.View().Role == consensus.Leader {
			leaders = append(leaders, p)
		}
	}
	switch x := r.IntN(4); {
	case x < 2 && len(leaders) > 0:
		if l := c.coreLeader(); l != nil && x == 0 {
			return l
		}
		return leaders[r.IntN(len(leaders))]
	case len(live) > 0:
		return live[r.IntN(len(live))]
	}
	return nil
}
