package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/qcluster/qcluster/internal/kv"
)

// KV invariants, as they appear in a Violation.
const (
	// InvLinearizable: the clients' history (completed operations, and
	// writes of unknown outcome with no return) is linearizable for a
	// key-value register per key (porcupine).
	InvLinearizable = "KV operations are linearizable"
	// InvKVHistory: every peer's store produces the same events at the same
	// revisions (Store.Since), its state after a restore is the reference
	// state at its revision, its revision never goes back except by the
	// restore of a newer snapshot, and every (revision, value) a client was
	// shown is the put at that revision.
	InvKVHistory = "every peer's KV events agree"
	// InvKVOnce: a proposal (its ReqID) applies at one log index only.
	InvKVOnce = "a KV proposal applies once"
	// InvKVAcked: every acknowledged write is in the reference history at
	// its revision, and present (or superseded) on every live member at the
	// end.
	InvKVAcked = "acknowledged KV writes are never lost"
)

// kvCheckTimeout bounds porcupine's search of one history (wall time).
// Histories of a schedule's few clients over a few keys take milliseconds;
// a search cut short counts as Result.KVCheckUnknown.
const kvCheckTimeout = 20 * time.Second

// kvRef is the reference history: the events of each revision, as the
// first peer that applied it produced them; every other peer must produce
// the same.
type kvRef struct {
	revs [][]string   // canonical encodings, by revision
	evs  [][]kv.Event // the events, by revision
	by   []uint64     // the peer that produced them first
	obs  []kvObs
}

// kvObs is a (revision, value) of a key that a client was shown.
type kvObs struct {
	key   string
	rev   uint64
	value string
}

func (r *kvRef) observe(key string, rev uint64, value string) {
	r.obs = append(r.obs, kvObs{key, rev, value})
}

// encodeEvent is an event's canonical form, for comparisons.
func encodeEvent(ev kv.Event) string {
	b := make([]byte, 0, 64)
	b = append(b, byte(ev.Type))
	b = binary.AppendUvarint(b, ev.Revision)
	b = appendKV(b, &ev.KV)
	if ev.Prev == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendKV(b, ev.Prev)
	}
	return string(b)
}

func appendKV(b []byte, kvv *kv.KeyValue) []byte {
	b = binary.AppendUvarint(b, uint64(len(kvv.Key)))
	b = append(b, kvv.Key...)
	b = binary.AppendUvarint(b, uint64(len(kvv.Value)))
	b = append(b, kvv.Value...)
	for _, v := range []uint64{kvv.CreateRevision, kvv.ModRevision, kvv.Version, kvv.Owner} {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

// kvEvents checks the events p's store produced since the last check:
// revisions contiguous, never backwards, identical to the reference.
func (k *checker) kvEvents(p *peer) {
	c := k.c
	st := p.kv.store
	rev := st.Revision()
	if rev < p.kv.lastRev {
		c.fail(InvKVHistory, "p%d's revision went from %d back to %d without a snapshot", p.id, p.kv.lastRev, rev)
		return
	}
	p.kv.lastRev = rev
	if rev == p.kv.seen {
		return
	}
	evs, err := st.Since(p.kv.seen+1, "")
	if err != nil {
		c.fail(InvKVHistory, "p%d: events since revision %d: %v", p.id, p.kv.seen+1, err)
		return
	}
	ref := &c.kv.ref
	for len(evs) > 0 {
		r := evs[0].Revision
		if r != p.kv.seen+1 {
			c.fail(InvKVHistory, "p%d's events jump from revision %d to %d", p.id, p.kv.seen, r)
			return
		}
		n := 1
		for n < len(evs) && evs[n].Revision == r {
			n++
		}
		enc := make([]string, n)
		for i := range n {
			enc[i] = encodeEvent(evs[i])
		}
		for uint64(len(ref.revs)) <= r {
			ref.revs, ref.evs, ref.by = append(ref.revs, nil), append(ref.evs, nil), append(ref.by, 0)
		}
		switch {
		case ref.revs[r] == nil:
			ref.revs[r], ref.evs[r], ref.by[r] = enc, slices.Clone(evs[:n]), p.id
		case !slices.Equal(ref.revs[r], enc):
			c.fail(InvKVHistory, "p%d's events at revision %d are %s, p%d's were %s",
				p.id, r, fmtEvents(evs[:n]), ref.by[r], fmtEvents(ref.evs[r]))
			return
		}
		p.kv.seen = r
		evs = evs[n:]
	}
	if p.kv.seen != rev {
		c.fail(InvKVHistory, "p%d is at revision %d but its events end at %d", p.id, rev, p.kv.seen)
	}
}

func fmtEvents(evs []kv.Event) string {
	var s []string
	for _, ev := range evs {
		x := fmt.Sprintf("%v %s=%q (mod %d, create %d, v%d)", ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.ModRevision, ev.KV.CreateRevision, ev.KV.Version)
		if ev.Prev != nil {
			x += fmt.Sprintf(" prev %q@%d", ev.Prev.Value, ev.Prev.ModRevision)
		}
		s = append(s, x)
	}
	return "[" + strings.Join(s, "; ") + "]"
}

// stateAt replays the reference history up to rev.
func (r *kvRef) stateAt(rev uint64) (map[string]kv.KeyValue, error) {
	m := map[string]kv.KeyValue{}
	for i := uint64(1); i <= rev; i++ {
		if i >= uint64(len(r.revs)) || r.revs[i] == nil {
			return nil, fmt.Errorf("no peer produced the events of revision %d", i)
		}
		for _, ev := range r.evs[i] {
			if ev.Type == kv.EventPut {
				m[ev.KV.Key] = ev.KV
			} else {
				delete(m, ev.KV.Key)
			}
		}
	}
	return m, nil
}

// kvMatchesRef reports ("" if so) whether p's store holds the reference
// state at its revision.
func (k *checker) kvMatchesRef(p *peer) string {
	kvs, rev := p.kv.store.List("", 0)
	want, err := k.c.kv.ref.stateAt(rev)
	if err != nil {
		return err.Error()
	}
	if len(kvs) != len(want) {
		return fmt.Sprintf("%d keys at revision %d, the reference has %d", len(kvs), rev, len(want))
	}
	for _, got := range kvs {
		w, ok := want[got.Key]
		if !ok || !bytes.Equal(got.Value, w.Value) || got.CreateRevision != w.CreateRevision ||
			got.ModRevision != w.ModRevision || got.Version != w.Version || got.Owner != w.Owner {
			return fmt.Sprintf("key %q is %q (mod %d, create %d, v%d) at revision %d, the reference has %q (mod %d, create %d, v%d)",
				got.Key, got.Value, got.ModRevision, got.CreateRevision, got.Version, rev, w.Value, w.ModRevision, w.CreateRevision, w.Version)
		}
	}
	return ""
}

// kvRestored checks a store restored from a snapshot (stored or received)
// against the reference state at its revision.
func (k *checker) kvRestored(p *peer, what string) {
	if msg := k.kvMatchesRef(p); msg != "" {
		k.c.fail(InvKVHistory, "p%d after restoring its %s: %s", p.id, what, msg)
	}
}

// ----- the end of a run -----

// kvCaughtUp reports whether every live member of the agreed leader's
// configuration that can follow it (the leader too) has applied to its
// store what the leader's loop has applied now: writes still in flight at
// the end of the fault phase (a peer's calls queued behind a stalled
// fsync) may commit late, so the index is the leader's at each check.
func (c *Cluster) kvCaughtUp() bool {
	l, ok := c.Agreed()
	if !ok {
		return false
	}
	index := c.peer(l).core.AppliedIndex()
	for _, p := range c.kvMembers(l) {
		if p.kv.applied < index {
			return false
		}
	}
	return true
}

// kvMembers are the live members of leader l's configuration (each can
// follow it: Vouch lets a member that missed its addition hear it).
func (c *Cluster) kvMembers(l uint64) []*peer {
	lv := c.peer(l).pub
	var out []*peer
	for _, p := range c.peers {
		if p.crashed || (!slices.Contains(lv.Voters, p.id) && !slices.Contains(lv.Learners, p.id)) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// kvFinal runs the KV checks of the end of a run: the history's
// linearizability, the clients' observations against the reference, and
// every acknowledged write on every live member (caught up: kvCaughtUp).
func (c *Cluster) kvFinal() {
	if c.err != nil || len(c.kv.recs) == 0 {
		return
	}
	ref := &c.kv.ref
	for _, o := range ref.obs {
		if !ref.hasPut(o.key, o.rev, o.value) {
			c.fail(InvKVHistory, "a client was shown %s=%q at mod revision %d, which is not that put in the history", o.key, o.value, o.rev)
			return
		}
	}
	var acked []*kvRec
	var maxAck uint64
	for _, rec := range c.kv.recs {
		if rec.ret == 0 || rec.in.kind == kvGet || !rec.out.ok {
			continue
		}
		acked = append(acked, rec)
		maxAck = max(maxAck, rec.rev)
		put := rec.in.kind == kvPut || rec.in.kind == kvCAS
		if put && !ref.hasPut(rec.in.key, rec.rev, rec.in.value) || !put && !ref.hasDelete(rec.in.key, rec.rev) {
			c.fail(InvKVAcked, "acknowledged %v %s (request %d, on p%d) at revision %d is not in the history", rec.in.kind, rec.in.key, rec.reqID, rec.peer, rec.rev)
			return
		}
	}
	if l, ok := c.Agreed(); ok {
		for _, p := range c.kvMembers(l) {
			_, rev := p.kv.store.List("", 0)
			if rev < maxAck {
				c.fail(InvKVAcked, "p%d ends at revision %d, before acknowledged writes up to %d", p.id, rev, maxAck)
				return
			}
			if msg := c.chk.kvMatchesRef(p); msg != "" {
				c.fail(InvKVAcked, "p%d at the end: %s", p.id, msg)
				return
			}
			if msg := ref.historyMatches(p.kv.store); msg != "" {
				c.fail(InvKVHistory, "p%d at the end: %s", p.id, msg)
				return
			}
			for _, rec := range acked {
				cur, ok, _ := p.kv.store.Get(rec.in.key)
				put := rec.in.kind == kvPut || rec.in.kind == kvCAS
				switch {
				case ok && cur.ModRevision < rec.rev,
					ok && cur.ModRevision == rec.rev && (!put || string(cur.Value) != rec.in.value),
					!ok && put && !ref.deletedAfter(rec.in.key, rec.rev, rev):
					c.fail(InvKVAcked, "p%d lost acknowledged %v %s=%q at revision %d (has %v %q at %d)",
						p.id, rec.in.kind, rec.in.key, rec.in.value, rec.rev, ok, cur.Value, cur.ModRevision)
					return
				}
			}
		}
	}
	c.kvCheckWatchers()
	c.kvCheckLocks()
	if c.err != nil {
		return
	}
	c.kvLinearizable()
}

// historyMatches reports ("" if so) whether the whole event history st
// keeps (Since its oldest revision) is the reference's.
func (r *kvRef) historyMatches(st *kv.Store) string {
	from := uint64(1)
	evs, err := st.Since(from, "")
	var ce *kv.CompactedError
	if errors.As(err, &ce) {
		from = ce.Oldest
		evs, err = st.Since(from, "")
	}
	if err != nil {
		return fmt.Sprintf("events since %d: %v", from, err)
	}
	next := map[uint64]int{} // events of each revision seen so far
	for _, ev := range evs {
		i := next[ev.Revision]
		next[ev.Revision]++
		if ev.Revision >= uint64(len(r.revs)) || i >= len(r.revs[ev.Revision]) || r.revs[ev.Revision][i] != encodeEvent(ev) {
			return fmt.Sprintf("its kept event %s differs from the reference history", fmtEvents([]kv.Event{ev}))
		}
	}
	for rev, n := range next {
		if n != len(r.revs[rev]) {
			return fmt.Sprintf("it kept %d events of revision %d, the reference has %d", n, rev, len(r.revs[rev]))
		}
	}
	return ""
}

func (r *kvRef) hasPut(key string, rev uint64, value string) bool {
	if rev >= uint64(len(r.evs)) {
		return false
	}
	for _, ev := range r.evs[rev] {
		if ev.Type == kv.EventPut && ev.KV.Key == key {
			return string(ev.KV.Value) == value
		}
	}
	return false
}

func (r *kvRef) hasDelete(key string, rev uint64) bool {
	if rev >= uint64(len(r.evs)) {
		return false
	}
	for _, ev := range r.evs[rev] {
		if ev.Type == kv.EventDelete && ev.KV.Key == key {
			return true
		}
	}
	return false
}

// deletedAfter reports whether key was deleted at a revision in (from, to].
func (r *kvRef) deletedAfter(key string, from, to uint64) bool {
	for i := from + 1; i <= to && i < uint64(len(r.evs)); i++ {
		if r.hasDelete(key, i) {
			return true
		}
	}
	return false
}

// kvHistory is the clients' history for porcupine: completed operations,
// and writes that were proposed with no answer (Return: never). Reads
// without an answer, and writes refused at once or never proposed, did
// nothing and are left out.
func (c *Cluster) kvHistory() []porcupine.Operation {
	var ops []porcupine.Operation
	for _, rec := range c.kv.recs {
		op := porcupine.Operation{ClientId: rec.client, Input: rec.in, Call: rec.call, Output: rec.out, Return: rec.ret}
		switch {
		case strings.HasPrefix(rec.in.key, kvLockPrefix):
			// Locks are checked by kvCheckLocks: their keys also go with
			// their member, which the register model does not know.
			continue
		case rec.ret != 0:
		case rec.in.kind == kvGet || rec.dropped || !rec.proposed:
			continue
		default:
			op.Output, op.Return = kvOutput{unknown: true}, math.MaxInt64
			c.stats.KVPending++
		}
		ops = append(ops, op)
	}
	return ops
}

// kvLinearizable checks the clients' history with porcupine.
func (c *Cluster) kvLinearizable() {
	ops := c.kvHistory()
	res, _ := porcupine.CheckOperationsVerbose(kvModel, ops, kvCheckTimeout)
	switch res {
	case porcupine.Ok:
		return
	case porcupine.Unknown:
		c.stats.KVCheckUnknown++
		c.event(-1, fmt.Sprintf("linearizability check of %d operations gave up after %v", len(ops), kvCheckTimeout))
		return
	}
	// Name the key whose history is not linearizable, and show it.
	for _, part := range kvModel.Partition(ops) {
		if porcupine.CheckOperationsTimeout(kvModel, part, kvCheckTimeout) != porcupine.Illegal {
			continue
		}
		slices.SortFunc(part, func(a, b porcupine.Operation) int {
			if a.Call != b.Call {
				return int(a.Call - b.Call)
			}
			return int(a.Return - b.Return)
		})
		var lines []string
		for _, op := range part {
			ret := "never"
			if op.Return != math.MaxInt64 {
				ret = fmt.Sprint(op.Return)
			}
			lines = append(lines, fmt.Sprintf("  [%d, %s] client %d: %s", op.Call, ret, op.ClientId, kvModel.DescribeOperation(op.Input, op.Output)))
		}
		if len(lines) > 60 {
			lines = append(lines[:30], append([]string{"  ..."}, lines[len(lines)-30:]...)...)
		}
		c.fail(InvLinearizable, "the history of key %s is not linearizable (%d operations):\n%s",
			part[0].Input.(kvInput).key, len(part), strings.Join(lines, "\n"))
		return
	}
	c.fail(InvLinearizable, "the history of %d operations is not linearizable", len(ops))
}

// kvModelState is one key in the model: absent, or present with a value.
type kvModelState struct {
	exists bool
	value  string
}

// kvModel is a key-value register per key (porcupine partitions the
// history by key).
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvModelState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(kvModelState), input.(kvInput), output.(kvOutput)
		// same: the answer describes the key as the model has it.
		same := out.exists == s.exists && (!s.exists || out.value == s.value)
		switch in.kind {
		case kvGet:
			return same, s
		case kvPut:
			next := kvModelState{exists: true, value: in.value}
			return out.unknown || (out.ok && same), next
		case kvDelete:
			if out.unknown {
				return true, kvModelState{}
			}
			if !s.exists {
				return !out.ok && !out.exists, s
			}
			return out.ok && same, kvModelState{}
		default: // kvCAS, kvCASDelete
			match := in.expect == s.exists && (!s.exists || in.expectValue == s.value)
			next := s
			if match {
				next = kvModelState{}
				if in.kind == kvCAS {
					next = kvModelState{exists: true, value: in.value}
				}
			}
			if out.unknown {
				return true, next
			}
			return out.ok == match && same, next
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		var b strings.Builder
		switch in.kind {
		case kvGet:
			fmt.Fprintf(&b, "get %s", in.key)
		case kvPut:
			fmt.Fprintf(&b, "put %s=%s", in.key, in.value)
		case kvDelete:
			fmt.Fprintf(&b, "delete %s", in.key)
		case kvCAS, kvCASDelete:
			what := "put " + in.key + "=" + in.value
			if in.kind == kvCASDelete {
				what = "delete " + in.key
			}
			if in.expect {
				fmt.Fprintf(&b, "%s if mod %d (%s)", what, in.modRev, in.expectValue)
			} else {
				fmt.Fprintf(&b, "%s if absent", what)
			}
		}
		desc := "absent"
		if out.exists {
			desc = out.value
		}
		switch {
		case out.unknown:
			b.WriteString(" -> unknown")
		case in.kind == kvGet:
			fmt.Fprintf(&b, " -> %s", desc)
		case out.ok:
			fmt.Fprintf(&b, " -> ok (was %s)", desc)
		default:
			fmt.Fprintf(&b, " -> failed (is %s)", desc)
		}
		return b.String()
	},
}
