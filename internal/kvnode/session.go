package kvnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qcluster/qcluster/internal/consensus"
	store "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/internal/quiettimer"
	"github.com/qcluster/qcluster/kv"
)

// Sessions (see package kv). Grants, keep-alives and revocations go
// through the Raft log, like every write (one entry per session per
// TTL/3: a handful per second at most at the scale QCluster is for).
// Keeping them in the log keeps the state machine deterministic (it holds
// no clock) and lets any peer renew a session, a follower as well as the
// leader, with the same guarantees as a write. Expiry is the leader's: it
// notes, with its own clock, when it sees each session renewed (every
// peer notes it, so a new leader starts from what it saw as a follower)
// and, on gaining leadership, restarts every session's clock from now, as
// etcd does when it promotes a lessor: a session never expires because of
// a fail-over. When a session's TTL passed with no renewal seen, the
// leader proposes its revocation, fenced to its term and conditioned on
// the renewal it judged by (a keep-alive already in the log wins).

// MinSessionTTL returns the shortest session TTL this peer grants:
// kv.MinSessionTTL or two election timeouts, whichever is longer.
func (n *Node) MinSessionTTL() time.Duration {
	return max(kv.MinSessionTTL, 2*n.d.ElectionTimeout)
}

// checkTTL refuses a TTL out of bounds and rounds it up to whole
// milliseconds.
func (n *Node) checkTTL(ttl time.Duration) (time.Duration, error) {
	if lo := n.MinSessionTTL(); ttl < lo || ttl > kv.MaxSessionTTL {
		return 0, fmt.Errorf("%w: %v (from %v to %v)", kv.ErrInvalidTTL, ttl, lo, kv.MaxSessionTTL)
	}
	return ttl.Round(time.Millisecond), nil
}

// sessionWrite proposes a session op and maps its result.
func (n *Node) sessionWrite(ctx context.Context, op store.Op) (store.Result, error) {
	res, err := n.Propose(ctx, op, nil)
	if err != nil {
		return res, err
	}
	if res.Err != nil {
		return res, n.sessionError(res.Err, op.Session)
	}
	return res, nil
}

// sessionError maps the store's session errors.
func (n *Node) sessionError(err error, id uint64) error {
	if errors.Is(err, store.ErrSessionNotFound) {
		return fmt.Errorf("%w: %d", kv.ErrSessionNotFound, id)
	}
	return n.kvError(err)
}

// GrantSession creates a session owned by this member (see
// kv.KV.GrantSession).
func (n *Node) GrantSession(ctx context.Context, ttl time.Duration) (kv.SessionInfo, error) {
	if err := n.d.Ready(); err != nil {
		return kv.SessionInfo{}, err
	}
	ttl, err := n.checkTTL(ttl)
	if err != nil {
		return kv.SessionInfo{}, err
	}
	res, err := n.sessionWrite(ctx, store.Op{Type: store.OpGrant, Owner: n.d.SelfID, TTL: ttl})
	if err != nil {
		return kv.SessionInfo{}, err
	}
	return kv.SessionInfo{ID: res.Index, TTL: ttl, Owner: n.d.Identifier}, nil
}

// RenewSession renews session id (see kv.KV.RenewSession).
func (n *Node) RenewSession(ctx context.Context, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%w: 0", kv.ErrSessionNotFound)
	}
	_, err := n.sessionWrite(ctx, store.Op{Type: store.OpKeepAlive, Session: id})
	return err
}

// RevokeSession ends session id (see kv.KV.RevokeSession).
func (n *Node) RevokeSession(ctx context.Context, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%w: 0", kv.ErrSessionNotFound)
	}
	_, err := n.sessionWrite(ctx, store.Op{Type: store.OpRevoke, Session: id})
	return err
}

// Sessions lists the sessions (see kv.KV.Sessions).
func (n *Node) Sessions(ctx context.Context, stale bool) ([]kv.SessionInfo, error) {
	if err := n.d.Ready(); err != nil {
		return nil, err
	}
	if err := n.read(ctx, stale); err != nil {
		return nil, err
	}
	ss := n.store.Sessions()
	out := make([]kv.SessionInfo, len(ss))
	for i, se := range ss {
		out[i] = kv.SessionInfo{ID: se.ID, TTL: se.TTL, Owner: n.OwnerName(se.Owner)}
	}
	return out, nil
}

// SessionAlive reports whether this peer's store holds session id, and a
// channel closed at the next change to the sessions.
func (n *Node) SessionAlive(id uint64) (bool, <-chan struct{}) {
	changed := n.store.SessionsChanged()
	_, ok := n.store.Session(id)
	return ok, changed
}

// sessionInfo returns what this peer's store holds of session id.
func (n *Node) sessionInfo(id uint64) (kv.SessionInfo, bool) {
	se, ok := n.store.Session(id)
	if !ok {
		return kv.SessionInfo{ID: id}, false
	}
	return kv.SessionInfo{ID: se.ID, TTL: se.TTL, Owner: n.OwnerName(se.Owner)}, true
}

// sessionClocks is the expiry bookkeeping of a peer: when it last saw
// each session renewed, by its own monotonic clock (see the top of this
// file).
type sessionClocks struct {
	mu   sync.Mutex
	term uint64 // the term this peer leads in, reset at; 0: not leading
	seen map[uint64]*sessionSeen
}

type sessionSeen struct {
	renewed  uint64    // Session.Renewed when last seen changing
	at       time.Time // when this peer saw it change
	proposed time.Time // when a revocation was last proposed (zero: never)
}

// sessionTick is how often the leader looks at its sessions' clocks
// while it has sessions: a twentieth of the shortest TTL, within 10 to
// 100 ms.
func (n *Node) sessionTick() time.Duration {
	return min(max(n.MinSessionTTL()/20, 10*time.Millisecond), 100*time.Millisecond)
}

// upkeepIdle is how often the upkeep looks when it has nothing to watch:
// on a follower (a new leader restarts every session's clock, so a
// follower's clocks are never read), and on a leader without sessions whose
// quota is applied. A gained leadership is so seen within upkeepIdle: its
// sessions' clocks start then (later, never earlier, than at the gain).
const upkeepIdle = time.Second

// upkeepAfter is how long the upkeep sleeps: sessionTick while this peer
// leads and has a session or a quota to propose, else upkeepIdle.
func (n *Node) upkeepAfter() time.Duration {
	if n.d.IsLeader() && (n.store.SessionCount() > 0 || n.store.Quota() != n.quota()) {
		return n.sessionTick()
	}
	return upkeepIdle
}

// StartUpkeep starts the goroutine that looks after the store on a
// clock: the sessions' expiry (checkSessions) and the cluster's quota
// (checkQuota), every sessionTick while there is something to watch, else
// every upkeepIdle (see upkeepAfter), and at once when the set of sessions
// changes; until ctx (the running peer's) ends; wg counts it. It runs on
// every peer in leader mode for the life of the peer, so a peer's
// goroutines do not come and go with leadership.
func (n *Node) StartUpkeep(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		changed := n.store.SessionsChanged()
		// Every second on an idle peer: a quiettimer wakes it once, not
		// three times (package quiettimer).
		t := quiettimer.New()
		defer t.Close()
		t.Reset(n.upkeepAfter())
		for {
			var now time.Time
			select {
			case <-ctx.Done():
				return
			case now = <-t.C():
			case <-changed:
				now = time.Now()
			}
			changed = n.store.SessionsChanged()
			n.checkSessions(ctx, now)
			n.checkQuota(ctx, now)
			t.Reset(n.upkeepAfter())
		}
	}()
}

// checkSessions notes the renewals seen since the last call and, on the
// leader, proposes the revocation of the sessions whose TTL passed with
// no renewal seen.
func (n *Node) checkSessions(rctx context.Context, now time.Time) {
	k := &n.clocks
	sessions := n.store.Sessions()
	leading := n.d.IsLeader()
	term := n.d.Term()
	k.mu.Lock()
	if k.seen == nil {
		k.seen = map[uint64]*sessionSeen{}
	}
	if !leading {
		k.term = 0
	} else if k.term != term {
		// Leadership gained: every session's clock starts now.
		k.term = term
		for _, st := range k.seen {
			st.at, st.proposed = now, time.Time{}
		}
	}
	live := make(map[uint64]bool, len(sessions))
	var expired []store.Session
	for _, se := range sessions {
		live[se.ID] = true
		st, ok := k.seen[se.ID]
		if !ok {
			st = &sessionSeen{renewed: se.Renewed, at: now}
			k.seen[se.ID] = st
		}
		if st.renewed != se.Renewed {
			st.renewed, st.at, st.proposed = se.Renewed, now, time.Time{}
		}
		retry := max(2*n.d.ElectionTimeout, se.TTL/4)
		if leading && now.Sub(st.at) >= se.TTL && now.Sub(st.proposed) >= retry {
			st.proposed = now
			expired = append(expired, se)
		}
	}
	for id := range k.seen {
		if !live[id] {
			delete(k.seen, id)
		}
	}
	k.mu.Unlock()
	for _, se := range expired {
		if !n.proposeExpiry(rctx, se, term) {
			// Not proposed (the node loop was busy, or leadership
			// moved): the next check tries again.
			k.mu.Lock()
			if st, ok := k.seen[se.ID]; ok {
				st.proposed = time.Time{}
			}
			k.mu.Unlock()
		}
	}
}

// proposeExpiry proposes the revocation of an expired session, fenced to
// term (still leading in it) and conditioned on the renewal it was judged
// by. Nobody waits for the result: a later check proposes it again if
// the session is still there. It reports whether it was proposed.
func (n *Node) proposeExpiry(rctx context.Context, se store.Session, term uint64) bool {
	op := store.Op{Type: store.OpRevoke, Session: se.ID, IfRenewed: se.Renewed, Term: term}
	data, err := store.EncodeOp(op)
	if err != nil {
		return false
	}
	_, do, ok := n.d.Running()
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(rctx, max(n.d.ElectionTimeout, time.Second))
	defer cancel()
	proposed := false
	err = do(ctx, func(core *consensus.Core) error {
		if v := core.View(); v.Role != consensus.Leader || v.Term != term {
			return nil
		}
		if err := core.Propose(data); err != nil {
			return err
		}
		proposed = true
		return nil
	})
	if err != nil || !proposed {
		return false
	}
	n.d.Log.Info("session expired: no renewal for its TTL; revoking it", "session", se.ID, "ttl", se.TTL)
	return true
}

// quota is the quota this peer's config asks for (kv_quota_bytes).
func (n *Node) quota() int64 {
	if q := n.d.Quota; q > 0 {
		return q
	}
	return store.DefaultQuota
}

// checkQuota makes the cluster's quota this leader's configured one: when
// the quota applied differs (at a gain of leadership, after a snapshot or
// an older leader's entry), it proposes an OpSetQuota, once per term and
// then at most once an election timeout. The quota is in the log, not a
// local setting: every peer refuses the same puts.
func (n *Node) checkQuota(rctx context.Context, now time.Time) {
	want, got := n.quota(), n.store.Quota()
	if got == want || !n.d.IsLeader() {
		return
	}
	et := n.d.ElectionTimeout
	term := n.d.Term()
	if term == n.quotaTerm && now.Sub(n.quotaAt) < et {
		return
	}
	n.quotaTerm, n.quotaAt = term, now
	ctx, cancel := context.WithTimeout(rctx, 2*et)
	defer cancel()
	if _, err := n.Propose(ctx, store.Op{Type: store.OpSetQuota, Quota: want}, nil); err != nil {
		n.d.Log.Debug("kv: proposing the configured quota", "quota", want, "err", err)
		return
	}
	n.d.Log.Info("kv: the cluster's quota is this leader's kv_quota_bytes", "quota", want, "was", got)
}
