package membership

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/qcluster/qcluster/internal/backoff"
)

// Metadata fetch limits.
const (
	maxConcurrentFetches = 4
	fetchBackoffMin      = 100 * time.Millisecond
	fetchBackoffMax      = 10 * time.Second
)

// registry is this member's view of the cluster. memberlist's delegate
// callbacks (which run with memberlist's node lock held), the gossip
// observer and the metadata fetcher update it; the public calls read it.
// Nothing in it ever calls into memberlist, so the lock order is always
// memberlist's lock, then r.mu.
type registry struct {
	self   string
	now    func() time.Time
	events *eventQueue   // nil when nobody listens
	kick   chan struct{} // wakes the fetcher; capacity 1

	// live is the Owner snapshot: the live members, sorted by name.
	live atomic.Pointer[[]liveMember]

	mu        sync.Mutex
	closed    bool
	leaving   bool // this member is leaving gracefully
	members   map[string]*memberRec
	localMeta []byte // this member's metadata (immutable once stored)
	localHash [32]byte
	inflight  int // metadata fetches running
}

// memberRec is the registry's record of one member.
type memberRec struct {
	m        Member // public view; m.Meta is replaced, never modified
	nameHash uint64
	nodeMeta []byte // the last node meta memberlist reported

	// Large metadata: what the gossip announced and is being fetched, and
	// the last data fetched (which may be newer than the announcement).
	want         [32]byte
	fetched      []byte
	fetchedHash  [32]byte
	fetching     bool
	fetchDue     time.Time
	fetchBackoff *backoff.Backoff // nil: the next failure waits the minimum

	suspectInc uint32 // incarnation of the current suspicion
	leftHint   bool   // a leave notice from the member itself was seen
	leftInc    uint32
}

// liveMember is one entry of the Owner snapshot.
type liveMember struct {
	hash uint64
	m    *Member // shared and immutable
}

// fetchJob is a metadata fetch to run.
type fetchJob struct {
	name string
	addr string
	want [32]byte
}

func newRegistry(self string, eventBuffer int, withEvents bool) *registry {
	r := &registry{
		self:    self,
		now:     time.Now,
		members: make(map[string]*memberRec),
		kick:    make(chan struct{}, 1),
	}
	if withEvents {
		r.events = newEventQueue(eventBuffer)
	}
	return r
}

// eventQueue is a FIFO of at most max events that never blocks the
// producer: it drops (and counts) what does not fit. Its memory follows the
// backlog, not max.
type eventQueue struct {
	mu      sync.Mutex
	q       []Event
	max     int
	ready   chan struct{} // capacity 1: signalled when q becomes non-empty
	dropped atomic.Uint64
}

func newEventQueue(max int) *eventQueue {
	return &eventQueue{max: max, ready: make(chan struct{}, 1)}
}

// push appends ev, or drops it if the queue is full.
func (q *eventQueue) push(ev Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) >= q.max {
		q.dropped.Add(1)
		return
	}
	q.q = append(q.q, ev)
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop removes and returns the oldest event, if any.
func (q *eventQueue) pop() (Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return Event{}, false
	}
	ev := q.q[0]
	q.q[0] = Event{}
	q.q = q.q[1:]
	if len(q.q) == 0 {
		q.q = nil // let the backing array go
	} else {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return ev, true
}

// setLocalMeta records this member's metadata, before memberlist asks for
// the node meta that announces it.
func (r *registry) setLocalMeta(data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.localMeta = data
	r.localHash = sha256.Sum256(data)
}

// localMetaData returns this member's metadata (not to be modified).
func (r *registry) localMetaData() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.localMeta
}

// setLeaving marks this member as leaving, so that memberlist's NotifyLeave
// about itself means "left".
func (r *registry) setLeaving() {
	r.mu.Lock()
	r.leaving = true
	r.mu.Unlock()
}

// close stops events and fetch scheduling.
func (r *registry) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// record returns name's record, creating it.
func (r *registry) record(n *memberlist.Node) *memberRec {
	rec := r.members[n.Name]
	if rec == nil {
		rec = &memberRec{m: Member{Name: n.Name}, nameHash: nameHash(n.Name)}
		r.members[n.Name] = rec
	}
	rec.m.Host = n.Addr.String()
	rec.m.Port = int(n.Port)
	return rec
}

// join handles memberlist's NotifyJoin: n is new, or back from dead/left.
func (r *registry) join(n *memberlist.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joinLocked(n)
}

func (r *registry) joinLocked(n *memberlist.Node) {
	rec := r.record(n)
	rec.m.State = StateAlive
	rec.m.Since = r.now()
	rec.leftHint, rec.suspectInc = false, 0
	r.applyMeta(rec, n.Meta)
	r.emit(EventJoined, rec)
	r.rebuildLive()
}

// update handles memberlist's NotifyUpdate: n's node meta changed.
func (r *registry) update(n *memberlist.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.members[n.Name]
	if rec == nil || !rec.m.State.Live() {
		r.joinLocked(n)
		return
	}
	r.record(n)
	if rec.m.State == StateSuspect {
		// The alive message carrying the new meta also refuted the
		// suspicion.
		rec.m.State = StateAlive
		rec.m.Since = r.now()
		r.emit(EventRecovered, rec)
	}
	if r.applyMeta(rec, n.Meta) {
		r.emit(EventUpdated, rec)
	}
	r.rebuildLive()
}

// leave handles memberlist's NotifyLeave: n failed or left.
func (r *registry) leave(n *memberlist.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.record(n)
	left := rec.leftHint && rec.leftInc >= rec.m.Incarnation
	if n.Name == r.self {
		left = r.leaving
	}
	if left {
		rec.m.State = StateLeft
	} else {
		rec.m.State = StateDead
	}
	rec.m.Since = r.now()
	if left {
		r.emit(EventLeft, rec)
	} else {
		r.emit(EventFailed, rec)
	}
	r.rebuildLive()
}

// observe applies one state message seen on the wire; see wire.go for what
// each direction means.
func (r *registry) observe(inbound bool, msg gossipMsg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.members[msg.node]
	if rec == nil {
		return
	}
	changed := false
	bumpInc := func() {
		if msg.inc > rec.m.Incarnation {
			rec.m.Incarnation = msg.inc
			changed = true
		}
	}
	switch msg.kind {
	case gossipAlive:
		if inbound && msg.addr != rec.m.Addr() {
			return // a conflicting member; memberlist will refuse it
		}
		if !rec.m.State.Live() {
			return // memberlist reports the return with NotifyJoin
		}
		bumpInc()
		if rec.m.State == StateSuspect && msg.inc > rec.suspectInc {
			rec.m.State = StateAlive
			rec.m.Since = r.now()
			r.emit(EventRecovered, rec)
			changed = true
		}
	case gossipSuspect:
		if msg.node == r.self {
			return
		}
		switch {
		case rec.m.State == StateAlive && msg.inc >= rec.m.Incarnation:
			rec.m.State = StateSuspect
			rec.m.Since = r.now()
			rec.suspectInc = msg.inc
			bumpInc()
			r.emit(EventSuspect, rec)
			changed = true
		case rec.m.State == StateSuspect && msg.inc > rec.suspectInc:
			rec.suspectInc = msg.inc
			bumpInc()
		}
	case gossipDead:
		if msg.node == r.self {
			break
		}
		if msg.from != msg.node {
			if !inbound && rec.m.State.Live() {
				bumpInc()
			}
			break
		}
		if inbound {
			// A leave notice, seen before memberlist acts on it.
			if rec.m.State.Live() && msg.inc >= rec.m.Incarnation {
				rec.leftHint = true
				rec.leftInc = max(rec.leftInc, msg.inc)
			}
			return
		}
		// memberlist applied a leave notice and re-gossips it.
		if rec.m.State == StateDead && msg.inc >= rec.m.Incarnation {
			rec.m.State = StateLeft
			rec.m.Since = r.now()
			r.emit(EventLeft, rec)
			changed = true
		}
		bumpInc()
	}
	if changed {
		r.rebuildLive()
	}
}

// staleSuspects returns the members suspected since before cutoff.
func (r *registry) staleSuspects(cutoff time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for name, rec := range r.members {
		if rec.m.State == StateSuspect && rec.m.Since.Before(cutoff) {
			out = append(out, name)
		}
	}
	return out
}

// clearSuspect marks name alive if it is still suspected since before
// cutoff (the caller checked that memberlist still lists it).
func (r *registry) clearSuspect(name string, cutoff time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.members[name]
	if rec == nil || rec.m.State != StateSuspect || !rec.m.Since.Before(cutoff) {
		return
	}
	rec.m.State = StateAlive
	rec.m.Since = r.now()
	r.emit(EventRecovered, rec)
	r.rebuildLive()
}

// numLive returns the number of live members.
func (r *registry) numLive() int {
	if p := r.live.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// applyMeta takes n's node meta. It reports whether rec.m.Meta changed now;
// metadata announced by reference and not at hand is scheduled for fetching
// instead (rec.m.MetaPending).
func (r *registry) applyMeta(rec *memberRec, raw []byte) bool {
	if rec.nodeMeta != nil && bytes.Equal(raw, rec.nodeMeta) {
		return false
	}
	rec.nodeMeta = bytes.Clone(raw)
	if rec.nodeMeta == nil {
		rec.nodeMeta = []byte{}
	}
	env, err := parseEnvelope(raw)
	flagChanged := rec.m.Check != env.check // zero when err != nil
	rec.m.Check = env.check
	switch {
	case err != nil:
		// Not ours: the AliveDelegate refuses such members, so this
		// only happens for ourselves before New finished.
		rec.m.Meta, rec.m.MetaPending = nil, false
	case env.inline:
		rec.m.Meta, rec.m.MetaPending = nilIfEmpty(env.data), false
	case rec.m.Name == r.self && env.hash == r.localHash:
		rec.m.Meta, rec.m.MetaPending = r.localMeta, false
	case rec.fetched != nil && env.hash == rec.fetchedHash:
		rec.m.Meta, rec.m.MetaPending = rec.fetched, false
	default:
		rec.want = env.hash
		rec.m.MetaPending = true
		rec.fetchDue = r.now()
		rec.fetchBackoff = nil
		r.wakeFetcher()
		return flagChanged
	}
	return true
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func (r *registry) wakeFetcher() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// dueFetches marks and returns the metadata fetches to start now, and
// when the next one will be due (zero if none is waiting).
func (r *registry) dueFetches() ([]fetchJob, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, time.Time{}
	}
	now := r.now()
	var jobs []fetchJob
	var next time.Time
	for _, rec := range r.members {
		if !rec.m.MetaPending || rec.fetching || !rec.m.State.Live() {
			continue
		}
		if rec.fetchDue.After(now) || r.inflight >= maxConcurrentFetches {
			if next.IsZero() || rec.fetchDue.Before(next) {
				next = rec.fetchDue
			}
			continue
		}
		rec.fetching = true
		r.inflight++
		jobs = append(jobs, fetchJob{name: rec.m.Name, addr: rec.m.Addr(), want: rec.want})
	}
	return jobs, next
}

// fetchDone records the outcome of a metadata fetch.
func (r *registry) fetchDone(job fetchJob, data []byte, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight--
	defer r.wakeFetcher()
	rec := r.members[job.name]
	if rec == nil {
		return
	}
	rec.fetching = false
	if err == nil {
		rec.fetched, rec.fetchedHash = data, sha256.Sum256(data)
		if rec.m.MetaPending && rec.fetchedHash == rec.want {
			rec.m.Meta, rec.m.MetaPending = data, false
			rec.fetchBackoff = nil
			r.emit(EventUpdated, rec)
			r.rebuildLive()
			return
		}
		// The owner already has newer metadata than the gossip told us
		// about: its announcement is on its way, and applyMeta will find
		// the data in rec.fetched. Retry later in case it is not.
	}
	if rec.m.MetaPending {
		if rec.fetchBackoff == nil {
			rec.fetchBackoff = backoff.New(fetchBackoffMin, fetchBackoffMax)
		}
		rec.fetchDue = r.now().Add(rec.fetchBackoff.Next())
	}
}

// emit queues an event about rec, unless it is about this member. It never
// blocks: when the queue is full the event is dropped and counted.
func (r *registry) emit(t EventType, rec *memberRec) {
	if r.events == nil || r.closed || rec.m.Name == r.self {
		return
	}
	r.events.push(Event{Type: t, Member: rec.m.clone()})
}

// rebuildLive refreshes the Owner snapshot.
func (r *registry) rebuildLive() {
	live := make([]liveMember, 0, len(r.members))
	for _, rec := range r.members {
		if rec.m.State.Live() {
			m := rec.m
			live = append(live, liveMember{hash: rec.nameHash, m: &m})
		}
	}
	slices.SortFunc(live, func(a, b liveMember) int { return strings.Compare(a.m.Name, b.m.Name) })
	r.live.Store(&live)
}

// list returns copies of every member, sorted by name.
func (r *registry) list() []Member {
	r.mu.Lock()
	out := make([]Member, 0, len(r.members))
	for _, rec := range r.members {
		out = append(out, rec.m.clone())
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// get returns a copy of name's record.
func (r *registry) get(name string) (Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.members[name]
	if rec == nil {
		return Member{}, false
	}
	return rec.m.clone(), true
}

// setSelfState records this member's own state (memberlist does not
// report it once shut down).
func (r *registry) setSelfState(s State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec := r.members[r.self]; rec != nil && rec.m.State != s {
		rec.m.State = s
		rec.m.Since = r.now()
		r.rebuildLive()
	}
}

// reap forgets members that have been dead or gone for longer than
// retention.
func (r *registry) reap(retention time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	removed := false
	for name, rec := range r.members {
		if name != r.self && !rec.m.State.Live() && now.Sub(rec.m.Since) > retention {
			delete(r.members, name)
			removed = true
		}
	}
	if removed {
		r.rebuildLive()
	}
}

// liveAddrs returns the addresses of the live members.
func (r *registry) liveAddrs() map[string]bool {
	p := r.live.Load()
	if p == nil {
		return nil
	}
	out := make(map[string]bool, len(*p))
	for _, lm := range *p {
		out[lm.m.Addr()] = true
	}
	return out
}
