package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/qcluster/qcluster/internal/kv"
)

// Watch streams under the simulator's faults. A watcher follows the event
// history of the store of one peer from a revision, as the root package's
// Watch does (Store.Since, then every later event): it polls its peer's
// store, and when the peer crashes or leaves the configuration it resumes
// on another live peer from the revision after the last event it got. A
// store that no longer keeps the events asked for says so
// (kv.ErrCompacted, with the oldest revision it keeps): the watcher
// records the gap it was told about and resumes from that oldest
// revision.
//
// InvKVWatch, checked at the end of a run: the events each watcher got
// are exactly the reference history's events on its prefix, in revision
// order (and in the reference's order within a revision), from the
// revision it started at to the last one it got, without a gap or a
// duplicate, except for the revisions a store declared compacted to it
// (ErrCompacted: [asked, oldest)).

// InvKVWatch: see above.
const InvKVWatch = "watch streams are gap-free and in order"

// kvWatchPoll is how often a watcher polls its peer's store.
const kvWatchPoll = 10 * time.Millisecond

// kvWatcher is one simulated watcher.
type kvWatcher struct {
	id     int
	prefix string
	peer   uint64
	inc    uint64
	from   uint64     // the revision it started at
	next   uint64     // the next revision it wants
	got    []kv.Event // every event it got, in order
	gaps   [][2]uint64
	moves  int // resumptions on another peer or incarnation
}

// kvStartWatchers starts n watchers on random peers, each on a prefix of
// the clients' keys ("" for all of them).
func (c *Cluster) kvStartWatchers(r *rand.Rand, n int) {
	prefixes := []string{"", "", "k", "k1", kvLockPrefix}
	for i := range n {
		w := &kvWatcher{id: i, prefix: prefixes[r.IntN(len(prefixes))], from: 1 + uint64(r.IntN(3)), next: 0}
		w.next = w.from
		c.kv.watchers = append(c.kv.watchers, w)
		c.after(time.Duration(r.Int64N(int64(30*time.Millisecond))), func() { c.kvWatch(w, r) })
	}
}

// kvWatch is one poll of w, then the next one is scheduled (until the
// run's checks end it).
func (c *Cluster) kvWatch(w *kvWatcher, r *rand.Rand) {
	if c.err != nil || c.kv.watchDone {
		return
	}
	defer c.after(kvWatchPoll, func() { c.kvWatch(w, r) })
	var p *peer
	if w.peer != 0 {
		p = c.peer(w.peer)
	}
	if p == nil || p.crashed || p.inc != w.inc || !c.kvInConfig(p) {
		var live []*peer
		for _, q := range c.peers {
			if !q.crashed && c.kvInConfig(q) {
				live = append(live, q)
			}
		}
		if len(live) == 0 {
			return
		}
		if w.peer != 0 {
			w.moves++
			c.stats.KVWatchResumed++
		}
		p = live[r.IntN(len(live))]
		w.peer, w.inc = p.id, p.inc
	}
	c.kvWatchPoll(w, p)
}

// kvInConfig reports whether p is a member of its own latest
// configuration (a removed peer's store stops moving).
func (c *Cluster) kvInConfig(p *peer) bool {
	v := p.pub
	for _, id := range append(v.Voters, v.Learners...) {
		if id == p.id {
			return true
		}
	}
	return false
}

// kvWatchPoll takes the events of w's prefix from p's store, from w.next
// on.
func (c *Cluster) kvWatchPoll(w *kvWatcher, p *peer) {
	if p.kv.store == nil {
		return
	}
	evs, err := p.kv.store.Since(w.next, w.prefix)
	var ce *kv.CompactedError
	if errors.As(err, &ce) {
		if ce.Oldest <= w.next {
			c.fail(InvKVWatch, "watcher %d: p%d says revision %d is compacted, oldest %d", w.id, p.id, w.next, ce.Oldest)
			return
		}
		w.gaps = append(w.gaps, [2]uint64{w.next, ce.Oldest})
		w.next = ce.Oldest
		c.stats.KVWatchCompacted++
		evs, err = p.kv.store.Since(w.next, w.prefix)
	}
	if err != nil {
		c.fail(InvKVWatch, "watcher %d: p%d: events since %d: %v", w.id, p.id, w.next, err)
		return
	}
	for _, ev := range evs {
		w.got = append(w.got, ev)
		w.next = ev.Revision + 1
	}
	c.stats.KVWatchEvents += len(evs)
}

// kvCheckWatchers checks InvKVWatch for every watcher.
func (c *Cluster) kvCheckWatchers() {
	c.kv.watchDone = true
	for _, w := range c.kv.watchers {
		if msg := c.kv.ref.watchMatches(w); msg != "" {
			c.fail(InvKVWatch, "watcher %d (prefix %q, from revision %d, %d events, gaps %v): %s", w.id, w.prefix, w.from, len(w.got), w.gaps, msg)
			return
		}
	}
}

// watchMatches reports ("" if so) whether w got exactly the reference
// events of its prefix from w.from through w.next-1, less its declared
// gaps.
func (r *kvRef) watchMatches(w *kvWatcher) string {
	inGap := func(rev uint64) bool {
		for _, g := range w.gaps {
			if rev >= g[0] && rev < g[1] {
				return true
			}
		}
		return false
	}
	i := 0
	for rev := w.from; rev < w.next; rev++ {
		if inGap(rev) {
			continue
		}
		if rev >= uint64(len(r.revs)) || r.revs[rev] == nil {
			return fmt.Sprintf("no peer produced revision %d, which it passed", rev)
		}
		for j, ev := range r.evs[rev] {
			if !kvVisible(ev.KV.Key, w.prefix) {
				continue
			}
			if i >= len(w.got) {
				return fmt.Sprintf("it misses %s at revision %d (and everything after)", fmtEvents([]kv.Event{ev}), rev)
			}
			if got := w.got[i]; encodeEvent(got) != r.revs[rev][j] {
				return fmt.Sprintf("its event #%d is %s, the reference's next is %s", i, fmtEvents([]kv.Event{got}), fmtEvents([]kv.Event{ev}))
			}
			i++
		}
	}
	if i != len(w.got) {
		return fmt.Sprintf("it got %d events, the reference has %d: the extra one is %s", len(w.got), i, fmtEvents(w.got[i:i+1]))
	}
	return ""
}

// kvVisible reports whether a watch of prefix sees key (as Store.Since:
// internal keys only for a prefix that starts with kv.InternalPrefix).
func kvVisible(key, prefix string) bool {
	if len(key) < len(prefix) || key[:len(prefix)] != prefix {
		return false
	}
	return prefix != "" || len(key) == 0 || key[:1] != kv.InternalPrefix
}
