package sim

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
)

// Invariant names, as they appear in a Violation.
const (
	InvOneLeaderPerTerm = "one leader per term"
	InvOneLease         = "at most one IsLeader at a time"
	InvLeaseFirst       = "a lease ends before another leader is elected"
	InvTermMonotonic    = "terms never decrease"
	InvCommitted        = "committed records are never lost"
	InvOneVote          = "one vote per term"
	InvLiveness         = "liveness after heal"
)

// Violation is a broken invariant, with what is needed to replay it.
type Violation struct {
	// Schedule is true when Run found it: Seed then replays it.
	Schedule  bool
	Seed      uint64
	Peers     int
	Invariant string
	Detail    string
	At        time.Duration // virtual time
	Trace     string        // the last events, oldest first
}

func (v *Violation) Error() string {
	replay := ""
	if v.Schedule {
		replay = fmt.Sprintf("replay: go test ./internal/sim -run 'TestSimulation$' -sim.seed=%d -v\n", v.Seed)
	}
	return fmt.Sprintf("sim: seed %d (%d peers): invariant %q broken at %s: %s\n%slast events:\n%s",
		v.Seed, v.Peers, v.Invariant, fmtVT(v.At), v.Detail, replay, v.Trace)
}

// crec is what the checker knows about a committed log index.
type crec struct {
	ok   bool
	term uint64 // the entry's term
	data string
	by   uint64 // first peer seen applying it
	// cterm bounds the term in which the entry was committed from above:
	// the lowest term of a peer seen applying it. (An entry of term 4 may
	// be committed by the leader of term 6; a stale leader of term 5
	// elected later need not hold it.)
	cterm uint64
}

type checker struct {
	c          *Cluster
	leaders    map[uint64]uint64    // term -> the peer that led it
	votes      map[[2]uint64]uint64 // (voter, term) -> candidate granted
	committed  []crec               // by log index
	ncommitted int
	// snapApp caches the records of the stored snapshot logHas read last.
	snapApp struct {
		peer        *peer
		index, term uint64
		data        []byte
		app         []record
	}
}

func newChecker(c *Cluster) checker {
	return checker{c: c, leaders: map[uint64]uint64{}, votes: map[[2]uint64]uint64{}}
}

// lease: at most one peer whose published view holds the lease on its own
// clock, now. Leases start only when a view is published and end with
// time, so checking after every event checks every instant.
func (k *checker) lease() {
	c := k.c
	first := -1
	for i, p := range c.peers {
		if p.crashed || !p.pub.IsLeaderAt(p.clock(c.now)) {
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		a, b := c.peers[first], p
		c.fail(InvOneLease, "p%d (term %d, lease until %s) and p%d (term %d, lease until %s) both hold the lease",
			a.id, a.pub.Term, fmtVT(a.virtualAt(a.pub.LeaseUntil)), b.id, b.pub.Term, fmtVT(b.virtualAt(b.pub.LeaseUntil)))
		return
	}
}

// coreView checks a peer's core after a loop iteration.
func (k *checker) coreView(p *peer, v consensus.View) {
	if v.Role != consensus.Leader {
		return
	}
	l, ok := k.leaders[v.Term]
	if ok {
		if l != p.id {
			k.c.fail(InvOneLeaderPerTerm, "p%d and p%d both led term %d", l, p.id, v.Term)
		}
		return
	}
	k.leaders[v.Term] = p.id
	k.c.event(-1, fmt.Sprintf("p%d elected leader of term %d", p.id, v.Term))
	if t, ok := k.c.transferTo[p.id]; ok && v.Term > t {
		delete(k.c.transferTo, p.id)
		k.c.stats.Transfers++
	}
	// The lease argument: followers refuse votes while a lease they
	// granted may run, so no other peer holds a lease when a leader is
	// elected (transfers drop the lease before they start).
	for _, q := range k.c.peers {
		// A leader of an older term than the lease holder's (elected by
		// delayed votes) cannot commit, so it can never hold a lease.
		if q != p && !q.crashed && q.pub.Term < v.Term && q.pub.IsLeaderAt(q.clock(k.c.now)) {
			k.c.fail(InvLeaseFirst, "p%d elected leader of term %d while p%d (term %d) holds the lease until %s",
				p.id, v.Term, q.id, q.pub.Term, fmtVT(q.virtualAt(q.pub.LeaseUntil)))
			return
		}
	}
	// Leader completeness: it holds every record committed in an earlier
	// term.
	for i := range k.committed {
		if r := k.committed[i]; r.ok && r.cterm < v.Term {
			if err := k.logHas(p, uint64(i), r); err != "" {
				k.c.fail(InvCommitted, "p%d leads term %d without committed record %d (term %d, applied by p%d): %s",
					p.id, v.Term, i, r.term, r.by, err)
				return
			}
		}
	}
}

func (k *checker) published(p *peer, v consensus.View) {
	if v.Term < p.maxPubTerm {
		k.c.fail(InvTermMonotonic, "p%d published term %d after term %d", p.id, v.Term, p.maxPubTerm)
		return
	}
	p.maxPubTerm = v.Term
}

func (k *checker) sent(from *peer, m raftpb.Message) {
	if m.Type != raftpb.MsgVoteResp || m.Reject {
		return
	}
	key := [2]uint64{from.id, m.Term}
	if cand, ok := k.votes[key]; ok && cand != m.To {
		k.c.fail(InvOneVote, "p%d voted for p%d and then p%d in term %d", from.id, cand, m.To, m.Term)
		return
	}
	k.votes[key] = m.To
}

// applied checks one entry a peer applied: in order, nothing committed
// skipped, the same record at the same index everywhere.
func (k *checker) applied(p *peer, e raftpb.Entry) {
	c := k.c
	if e.Index <= p.lastApplied {
		c.fail(InvCommitted, "p%d applied index %d after %d", p.id, e.Index, p.lastApplied)
		return
	}
	for i := p.lastApplied + 1; i < e.Index && i < uint64(len(k.committed)); i++ {
		if k.committed[i].ok {
			c.fail(InvCommitted, "p%d skipped committed record %d (applied %d after %d)", p.id, i, e.Index, p.lastApplied)
			return
		}
	}
	if e.Type != raftpb.EntryNormal {
		return
	}
	k.agree(p, e.Index, e.Term, string(e.Data))
}

// agree records that p applied data (of term term) at index, or checks it
// against what was applied there before.
func (k *checker) agree(p *peer, index, term uint64, data string) {
	for uint64(len(k.committed)) <= index {
		k.committed = append(k.committed, crec{})
	}
	cterm := p.core.View().Term
	r := &k.committed[index]
	if !r.ok {
		*r = crec{ok: true, term: term, data: data, by: p.id, cterm: cterm}
		k.ncommitted++
		return
	}
	r.cterm = min(r.cterm, cterm)
	if r.term != term || r.data != data {
		k.c.fail(InvCommitted, "p%d applied %x (term %d) at index %d, where p%d applied %x (term %d)",
			p.id, short(data), term, index, r.by, short(r.data), r.term)
	}
}

// snapshotApplied checks that a snapshot's records are exactly the
// committed ones up to its index.
func (k *checker) snapshotApplied(p *peer, snap *raftpb.Snapshot) {
	k.snapshotMatches(p, snap.Metadata.Index, p.app, "snapshot applied")
}

func (k *checker) snapshotMatches(p *peer, idx uint64, app []record, what string) {
	j := 0
	for i := uint64(0); i <= idx && i < uint64(len(k.committed)); i++ {
		r := k.committed[i]
		for j < len(app) && app[j].index < i {
			k.agree(p, app[j].index, app[j].term, app[j].data)
			j++
		}
		if r.ok && (j >= len(app) || app[j].index != i) {
			k.c.fail(InvCommitted, "p%d: %s at %d lacks committed record %d", p.id, what, idx, i)
			return
		}
	}
	for ; j < len(app); j++ {
		if app[j].index > idx {
			k.c.fail(InvCommitted, "p%d: %s at %d holds record %d", p.id, what, idx, app[j].index)
			return
		}
		k.agree(p, app[j].index, app[j].term, app[j].data)
	}
}

// restarted checks what a (re)started peer found on its disk: the
// snapshot's records, and every committed record up to its durable commit
// index.
func (k *checker) restarted(p *peer, snap raftpb.Snapshot) {
	k.snapshotMatches(p, snap.Metadata.Index, p.app, "stored snapshot")
	k.durableLog(p, "after restart")
}

// durableLog checks that p's storage holds every committed record up to its
// durable commit index.
func (k *checker) durableLog(p *peer, when string) {
	hs, _, err := p.mem.InitialState()
	if err != nil {
		k.c.fail("storage", "p%d: %v", p.id, err)
		return
	}
	for i := uint64(0); i <= hs.Commit && i < uint64(len(k.committed)); i++ {
		if r := k.committed[i]; r.ok {
			if err := k.logHas(p, i, r); err != "" {
				k.c.fail(InvCommitted, "p%d %s: durable commit index %d but record %d: %s", p.id, when, hs.Commit, i, err)
				return
			}
		}
	}
}

// logHas reports ("" if so) whether p's storage holds record r at index i,
// in its log or in its snapshot.
func (k *checker) logHas(p *peer, i uint64, r crec) string {
	snap, _ := p.mem.Snapshot()
	if i <= snap.Metadata.Index {
		// Decoded once per stored snapshot: callers ask for every index.
		if k.snapApp.peer != p || k.snapApp.index != snap.Metadata.Index || k.snapApp.term != snap.Metadata.Term || len(k.snapApp.data) != len(snap.Data) {
			k.snapApp.peer, k.snapApp.index, k.snapApp.term = p, snap.Metadata.Index, snap.Metadata.Term
			k.snapApp.data, k.snapApp.app = snap.Data, decodeApp(snap.Data)
		}
		for _, a := range k.snapApp.app {
			if a.index == i {
				if a.data != r.data {
					return fmt.Sprintf("snapshot has %x", short(a.data))
				}
				return ""
			}
		}
		return fmt.Sprintf("missing from the snapshot at %d", snap.Metadata.Index)
	}
	ents, err := p.mem.Entries(i, i+1, math.MaxUint64)
	if err != nil || len(ents) != 1 {
		last, _ := p.mem.LastIndex()
		return fmt.Sprintf("not in the log (last index %d, %v)", last, err)
	}
	if ents[0].Term != r.term || string(ents[0].Data) != r.data {
		return fmt.Sprintf("log has %x (term %d)", short(string(ents[0].Data)), ents[0].Term)
	}
	return ""
}

// final checks every live peer's storage at the end of a run.
func (k *checker) final() {
	for _, p := range k.c.peers {
		if k.c.err != nil {
			return
		}
		if !p.crashed {
			k.durableLog(p, "at the end")
		}
	}
}

func short(s string) string { return s[:min(len(s), 6)] }

// encodeApp is the application's snapshot data: its records, then the KV
// store's snapshot (decodeKV).
func encodeApp(app []record, kvData []byte) []byte {
	b := encodeRecords(app)
	b = binary.AppendUvarint(b, uint64(len(kvData)))
	return append(b, kvData...)
}

// decodeKV returns the KV store's part of the snapshot data (nil: none,
// as in the snapshot that founds the cluster).
func decodeKV(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	n, k := binary.Uvarint(b)
	b = b[k:]
	for range n {
		for range 2 {
			_, k = binary.Uvarint(b)
			b = b[k:]
		}
		l, k := binary.Uvarint(b)
		b = b[k+int(l):]
	}
	if len(b) == 0 {
		return nil
	}
	l, k := binary.Uvarint(b)
	return b[k : k+int(l)]
}

func encodeRecords(app []record) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(app)))
	for _, r := range app {
		b = binary.AppendUvarint(b, r.index)
		b = binary.AppendUvarint(b, r.term)
		b = binary.AppendUvarint(b, uint64(len(r.data)))
		b = append(b, r.data...)
	}
	return b
}

func decodeApp(b []byte) []record {
	if len(b) == 0 {
		return nil
	}
	n, k := binary.Uvarint(b)
	b = b[k:]
	app := make([]record, 0, n)
	for range n {
		var r record
		var l uint64
		r.index, k = binary.Uvarint(b)
		b = b[k:]
		r.term, k = binary.Uvarint(b)
		b = b[k:]
		l, k = binary.Uvarint(b)
		b = b[k:]
		r.data = string(b[:l])
		b = b[l:]
		app = append(app, r)
	}
	return app
}
