package kv

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sessions (etcd's leases, Consul's sessions): a session has a TTL and an
// owner member; keys may be bound to it (Op.Session), and revoking it
// deletes them, at one revision, with Delete events like any delete.
//
// The state machine knows no clock: a session never expires by itself
// here. It records the index of the entry that granted or last renewed it
// (Session.Renewed); the leader, which keeps the time, proposes an
// OpRevoke when it saw no renewal for the TTL, conditioned on Renewed
// (Op.IfRenewed) so that a keep-alive that got into the log first wins.
// A session also goes when a configuration change removes its owner (its
// keys are bound to the owner too, and go with it).

// Session operations (Op.Type). Their numbers leave room below for more
// key operations.
const (
	// OpGrant creates a session with Op.TTL owned by Op.Owner; its ID is
	// the index of the entry that grants it (Result.Index).
	OpGrant OpType = 0x10 + iota
	// OpKeepAlive renews session Op.Session (Session.Renewed becomes the
	// entry's index).
	OpKeepAlive
	// OpRevoke ends session Op.Session and deletes its keys; with
	// Op.IfRenewed not 0, only if the session's Renewed is that index
	// (the leader's expiry), else nothing changes (!Succeeded, no Err).
	OpRevoke
)

// Bounds of a session's TTL. The SDK asks for more (a floor tied to the
// election timeout).
const (
	MinSessionTTL = time.Millisecond
	MaxSessionTTL = 24 * time.Hour
	// MaxSessions bounds how many sessions the store holds; a grant
	// beyond it is refused with ErrQuota.
	MaxSessions = 1 << 16
)

// ErrSessionNotFound: a keep-alive, revoke or put names a session that
// does not exist (expired, revoked, never granted) (Result.Err).
var ErrSessionNotFound = errors.New("kv: session not found")

// Session is one session as the store holds it.
type Session struct {
	ID      uint64        // the index of the entry that granted it
	TTL     time.Duration // whole milliseconds
	Owner   uint64        // the node ID of the member that granted it
	Renewed uint64        // the index of the grant or of the last keep-alive
}

// isSession reports whether t is a session operation.
func (t OpType) isSession() bool { return t >= OpGrant && t <= OpRevoke }

func (t OpType) sessionString() string {
	switch t {
	case OpGrant:
		return "grant"
	case OpKeepAlive:
		return "keep-alive"
	case OpRevoke:
		return "revoke"
	}
	return ""
}

// checkSessionOp is Op.Check for session operations.
func (op Op) checkSessionOp() error {
	if op.Key != "" || len(op.Value) != 0 || op.Compare || op.ModRevision != 0 {
		return fmt.Errorf("%w: a session %s carries no key, value or compare", ErrMalformed, op.Type.sessionString())
	}
	switch op.Type {
	case OpGrant:
		if op.Owner == 0 || op.Session != 0 || op.IfRenewed != 0 {
			return fmt.Errorf("%w: a grant names an owner and nothing else", ErrMalformed)
		}
		if op.TTL < MinSessionTTL || op.TTL > MaxSessionTTL || op.TTL%time.Millisecond != 0 {
			return fmt.Errorf("%w: session TTL %v (whole milliseconds, %v to %v)", ErrMalformed, op.TTL, MinSessionTTL, MaxSessionTTL)
		}
	case OpKeepAlive, OpRevoke:
		if op.Session == 0 || op.Owner != 0 || op.TTL != 0 {
			return fmt.Errorf("%w: a session %s names a session and nothing else", ErrMalformed, op.Type.sessionString())
		}
		if op.Type == OpKeepAlive && op.IfRenewed != 0 {
			return fmt.Errorf("%w: a keep-alive is not conditional", ErrMalformed)
		}
	}
	return nil
}

// encodeSessionOp encodes a checked session op: Kind, the type, a zero
// flags byte, then ReqID, Term, Session, TTL (ms), Owner, IfRenewed as
// uvarints.
func encodeSessionOp(op Op) []byte {
	b := make([]byte, 0, 3+6*10)
	b = append(b, Kind, byte(op.Type), 0)
	return appendUvarints(b, op.ReqID, op.Term, op.Session, uint64(op.TTL/time.Millisecond), op.Owner, op.IfRenewed)
}

// decodeSessionOp decodes what encodeSessionOp wrote (data[1] is a
// session op type).
func decodeSessionOp(data []byte) (Op, error) {
	if data[2] != 0 {
		return Op{}, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, data[2])
	}
	op := Op{Type: OpType(data[1])}
	d := decoder{b: data[3:]}
	op.ReqID, op.Term, op.Session = d.uvarint(), d.uvarint(), d.uvarint()
	ms := d.uvarint()
	op.Owner, op.IfRenewed = d.uvarint(), d.uvarint()
	if d.err != nil {
		return Op{}, d.err
	}
	if len(d.b) != 0 {
		return Op{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	if ms > uint64(MaxSessionTTL/time.Millisecond) {
		return Op{}, fmt.Errorf("%w: session TTL of %d ms", ErrMalformed, ms)
	}
	op.TTL = time.Duration(ms) * time.Millisecond
	if err := op.checkSessionOp(); err != nil {
		return Op{}, err
	}
	return op, nil
}

// sessionTable is the store's sessions (guarded by Store.mu).
type sessionTable struct {
	byID    map[uint64]*Session
	changed chan struct{} // closed at the next change of the set
	dirty   bool
}

func (t *sessionTable) reset() {
	t.byID = map[uint64]*Session{}
	t.dirty = true
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
}

// notify closes changed when the set changed (callers hold mu).
func (t *sessionTable) notify() {
	if t.dirty {
		close(t.changed)
		t.changed = make(chan struct{})
		t.dirty = false
	}
}

// sessionOp applies a session operation at entry s.applied (callers hold
// mu).
func (s *Store) sessionOp(op Op) Result {
	t := &s.sess
	switch op.Type {
	case OpGrant:
		if _, gone := s.removed[op.Owner]; gone {
			return Result{Err: ErrOwnerRemoved}
		}
		if len(t.byID) >= MaxSessions {
			return Result{Err: fmt.Errorf("%w: %d sessions", ErrQuota, len(t.byID))}
		}
		t.byID[s.applied] = &Session{ID: s.applied, TTL: op.TTL, Owner: op.Owner, Renewed: s.applied}
		t.dirty = true
		return Result{Succeeded: true}
	case OpKeepAlive:
		se, ok := t.byID[op.Session]
		if !ok {
			return Result{Err: ErrSessionNotFound}
		}
		se.Renewed = s.applied
		return Result{Succeeded: true}
	default: // OpRevoke
		se, ok := t.byID[op.Session]
		if !ok {
			return Result{Err: ErrSessionNotFound}
		}
		if op.IfRenewed != 0 && op.IfRenewed != se.Renewed {
			return Result{} // renewed since the leader judged it expired
		}
		s.revokeSession(se.ID)
		return Result{Succeeded: true}
	}
}

// revokeSession drops a session and deletes its keys, all at one
// revision, in key order (callers hold mu).
func (s *Store) revokeSession(id uint64) {
	delete(s.sess.byID, id)
	s.sess.dirty = true
	var drop []*KeyValue
	s.keys.Ascend(func(kv *KeyValue) bool {
		if kv.Session == id {
			drop = append(drop, kv)
		}
		return true
	})
	if len(drop) == 0 {
		return
	}
	s.rev++
	for _, kv := range drop {
		s.remove(kv)
	}
}

// bindSession returns the owner a put bound to op.Session gets: the
// session's (callers hold mu).
func (s *Store) bindSession(op Op) (owner uint64, err error) {
	if op.Session == 0 {
		return op.Owner, nil
	}
	se, ok := s.sess.byID[op.Session]
	if !ok {
		return 0, ErrSessionNotFound
	}
	return se.Owner, nil
}

// dropSessionsOf forgets the sessions owned by the removed nodes (their
// keys, bound to the owner too, went with it) (callers hold mu).
func (s *Store) dropSessionsOf(gone map[uint64]bool) {
	for id, se := range s.sess.byID {
		if gone[se.Owner] {
			delete(s.sess.byID, id)
			s.sess.dirty = true
		}
	}
}

// Sessions returns the sessions, sorted by ID.
func (s *Store) Sessions() []Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Session, 0, len(s.sess.byID))
	for _, se := range s.sess.byID {
		out = append(out, *se)
	}
	slices.SortFunc(out, func(a, b Session) int { return cmpUint(a.ID, b.ID) })
	return out
}

// SessionCount returns how many sessions there are.
func (s *Store) SessionCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sess.byID)
}

// Session returns session id and whether it exists.
func (s *Store) Session(id uint64) (Session, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	se, ok := s.sess.byID[id]
	if !ok {
		return Session{}, false
	}
	return *se, true
}

// SessionsChanged returns a channel closed at the next change of the set
// of sessions (a grant, a revoke, an owner removed, a Restore); not at a
// keep-alive. Take it before reading the sessions to miss nothing.
func (s *Store) SessionsChanged() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sess.changed
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sessionSection tags the snapshot's trailing section of sessions,
// written only when there is a session (a snapshot without sessions is
// the same bytes as before they existed).
const sessionSection = 'S'

// appendSessions appends the sessions section: the tag, the count, then
// per session (by ID) ID, TTL (ms), Owner, Renewed, and its keys in order
// (count, then each key) (callers hold mu).
func (s *Store) appendSessions(b []byte) []byte {
	if len(s.sess.byID) == 0 {
		return b
	}
	ids := make([]uint64, 0, len(s.sess.byID))
	for id := range s.sess.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	keys := map[uint64][]string{}
	s.keys.Ascend(func(kv *KeyValue) bool {
		if kv.Session != 0 {
			keys[kv.Session] = append(keys[kv.Session], kv.Key)
		}
		return true
	})
	b = append(b, sessionSection)
	b = appendUvarints(b, uint64(len(ids)))
	for _, id := range ids {
		se := s.sess.byID[id]
		b = appendUvarints(b, se.ID, uint64(se.TTL/time.Millisecond), se.Owner, se.Renewed, uint64(len(keys[id])))
		for _, k := range keys[id] {
			b = appendBytes(b, []byte(k))
		}
	}
	return b
}

// restoreSessions reads the sessions section, if any, binding the keys it
// names in keys (decoded before it). It checks it whole: sessions in ID
// order, not beyond the applied index, with valid TTLs, owners not
// removed; each key exists, is owned by its session's owner, and is bound
// once.
func restoreSessions(d *decoder, applied uint64, removed map[uint64]struct{}, keys interface {
	Get(*KeyValue) (*KeyValue, bool)
}) (map[uint64]*Session, error) {
	out := map[uint64]*Session{}
	if d.err != nil || len(d.b) == 0 || d.b[0] != sessionSection {
		return out, nil
	}
	d.b = d.b[1:]
	n := d.uvarint()
	if n == 0 || n > MaxSessions {
		return nil, fmt.Errorf("%w: snapshot: %d sessions", ErrMalformed, n)
	}
	var last uint64
	for i := uint64(0); i < n && d.err == nil; i++ {
		se := &Session{ID: d.uvarint()}
		ms := d.uvarint()
		se.Owner, se.Renewed = d.uvarint(), d.uvarint()
		nk := d.uvarint()
		if d.err != nil {
			break
		}
		if se.ID <= last || se.ID > applied || se.Renewed < se.ID || se.Renewed > applied {
			return nil, fmt.Errorf("%w: snapshot: session %d out of order or beyond the applied index", ErrMalformed, se.ID)
		}
		if ms == 0 || ms > uint64(MaxSessionTTL/time.Millisecond) || se.Owner == 0 {
			return nil, fmt.Errorf("%w: snapshot: session %d has a bad TTL or owner", ErrMalformed, se.ID)
		}
		if _, gone := removed[se.Owner]; gone {
			return nil, fmt.Errorf("%w: snapshot: session %d owned by a removed node", ErrMalformed, se.ID)
		}
		se.TTL = time.Duration(ms) * time.Millisecond
		last = se.ID
		prev := ""
		for j := uint64(0); j < nk && d.err == nil; j++ {
			k := string(d.bytes(MaxKeySize))
			if d.err != nil {
				break
			}
			kv, ok := keys.Get(&KeyValue{Key: k})
			if !ok || kv.Session != 0 || kv.Owner != se.Owner || (j > 0 && k <= prev) {
				return nil, fmt.Errorf("%w: snapshot: session %d names key %q wrongly", ErrMalformed, se.ID, k)
			}
			kv.Session, prev = se.ID, k
		}
		out[se.ID] = se
	}
	return out, nil
}
