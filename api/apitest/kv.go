package apitest

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/qcluster/qcluster/api"
)

// lockPrefix is the internal key space of locks, as in the real store.
const lockPrefix = "\x00lock/"

var _ api.KVBackend = (*Backend)(nil)

// kvStore is the Backend's small in-memory KV store: one revision counter,
// the keys, and the history of events for watches. b.mu guards it.
type kvStore struct {
	rev     uint64
	keys    map[string]api.KeyValue
	history []api.KVEvent // events of revisions >= oldest, in order
	base    uint64        // the position of history[0] among all events ever
	oldest  uint64        // the oldest revision a watch can start from
	changed chan struct{} // closed and replaced by every change
	quota   int64         // bytes of keys and values; 0: none
	err     error         // what the KV calls answer; nil: they work
	wErr    error         // what KVWatch answers; nil: it works
	writes  int           // KVPut, KVDelete, Lock and Unlock calls
	held    map[string]heldLock
	watches int
	gen     uint64 // EndWatches ends the watches of older generations
}

// heldLock is a lock this peer holds.
type heldLock struct {
	token uint64
	lost  chan struct{}
}

// kv returns the store, making it on first use; b.mu is held.
func (b *Backend) kv() *kvStore {
	if b.kvs == nil {
		b.kvs = &kvStore{keys: map[string]api.KeyValue{}, changed: make(chan struct{}), oldest: 1, held: map[string]heldLock{}}
	}
	return b.kvs
}

// SetKVErr sets the error every KV and lock call answers with (such as
// api.ErrNoLeader); nil: they work.
func (b *Backend) SetKVErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kv().err = err
}

// SetKVWatchErr sets the error KVWatch answers with (such as
// api.ErrUnavailable, to keep a client from watching again for a while);
// nil: it works. The other KV calls are not affected.
func (b *Backend) SetKVWatchErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kv().wErr = err
}

// SetKVQuota sets the store's quota in bytes of keys and values (0: none);
// a put over it fails with api.ErrQuota.
func (b *Backend) SetKVQuota(bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kv().quota = bytes
}

// KVWrites counts the KV calls that change the store (KVPut, KVDelete,
// Lock, Unlock), whatever they returned.
func (b *Backend) KVWrites() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kv().writes
}

// KVRevision returns the store's revision.
func (b *Backend) KVRevision() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kv().rev
}

// KVWatches returns how many KVWatch subscriptions are open.
func (b *Backend) KVWatches() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kv().watches
}

// Compact drops the history before revision rev: a watch from an older
// revision gets a *api.CompactedError, and one that has not read that far
// ends.
func (b *Backend) Compact(rev uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.kv()
	for len(s.history) > 0 && s.history[0].Revision < rev {
		s.history = s.history[1:]
		s.base++
	}
	s.oldest = max(s.oldest, min(rev, s.rev+1))
	b.kvChangedLocked()
}

// EndWatches ends every KVWatch subscription open now (their channels are
// closed), as the store does for a reader that fell behind.
func (b *Backend) EndWatches() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kv().gen++
	b.kvChangedLocked()
}

// Locks returns the names of the locks this peer holds, sorted.
func (b *Backend) Locks() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for name := range b.kv().held {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// LoseLock deletes the key of the lock name, as when its holder's member
// is removed: the holder's lost channel is closed. It reports whether the
// lock was held.
func (b *Backend) LoseLock(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.kv()
	if _, ok := s.keys[lockPrefix+name]; !ok {
		return false
	}
	b.kvApplyLocked([]string{lockPrefix + name}, nil)
	return true
}

// DropOwner deletes every ephemeral key bound to the member identifier, in
// one revision, as the store does when a member leaves. It returns how
// many keys went.
func (b *Backend) DropOwner(identifier string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.kv()
	var del []string
	for k, kv := range s.keys {
		if kv.Owner == identifier {
			del = append(del, k)
		}
	}
	slices.Sort(del)
	if len(del) > 0 {
		b.kvApplyLocked(del, nil)
	}
	return len(del)
}

// kvChangedLocked wakes the store's waiters; b.mu is held.
func (b *Backend) kvChangedLocked() {
	s := b.kv()
	close(s.changed)
	s.changed = make(chan struct{})
}

// kvApplyLocked deletes the keys del and then puts put (if not nil), all
// in one new revision, with their events; b.mu is held. It returns the
// new revision.
func (b *Backend) kvApplyLocked(del []string, put *api.KeyValue) uint64 {
	s := b.kv()
	s.rev++
	for _, k := range del {
		prev := s.keys[k]
		delete(s.keys, k)
		s.history = append(s.history, api.KVEvent{Type: api.KVEventDelete, Revision: s.rev, KV: api.KeyValue{Key: k, ModRevision: s.rev}, Prev: &prev})
		if name, ok := strings.CutPrefix(k, lockPrefix); ok {
			if hl, ok := s.held[name]; ok && hl.token == prev.ModRevision {
				close(hl.lost)
				delete(s.held, name)
			}
		}
	}
	if put != nil {
		kv := *put
		prev, existed := s.keys[kv.Key]
		kv.ModRevision = s.rev
		if existed {
			kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		} else {
			kv.CreateRevision, kv.Version = s.rev, 1
		}
		s.keys[kv.Key] = kv
		ev := api.KVEvent{Type: api.KVEventPut, Revision: s.rev, KV: kv}
		if existed {
			ev.Prev = &prev
		}
		s.history = append(s.history, ev)
	}
	b.kvChangedLocked()
	return s.rev
}

// kvCheck answers the error the test set, or api.ErrUnavailable after
// Stop; b.mu is held.
func (b *Backend) kvCheck() error {
	if b.stopped {
		return api.ErrUnavailable
	}
	return b.kv().err
}

// KVGet returns the key, or an empty list when it is absent.
func (b *Backend) KVGet(ctx context.Context, key string, stale bool) (api.KVList, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.kvCheck(); err != nil {
		return api.KVList{}, err
	}
	s := b.kv()
	list := api.KVList{Revision: s.rev, KVs: []api.KeyValue{}}
	if kv, ok := s.keys[key]; ok {
		list.KVs = append(list.KVs, kv)
	}
	return list, nil
}

// KVList returns the keys under prefix, sorted (internal keys never).
func (b *Backend) KVList(ctx context.Context, prefix string, stale bool) (api.KVList, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.kvCheck(); err != nil {
		return api.KVList{}, err
	}
	s := b.kv()
	list := api.KVList{Revision: s.rev, KVs: []api.KeyValue{}}
	for k, kv := range s.keys {
		if strings.HasPrefix(k, prefix) && !strings.HasPrefix(k, "\x00") {
			list.KVs = append(list.KVs, kv)
		}
	}
	slices.SortFunc(list.KVs, func(a, b api.KeyValue) int { return strings.Compare(a.Key, b.Key) })
	return list, nil
}

// compare checks opts against the key as it is; b.mu is held.
func compare(s *kvStore, key string, opts api.KVWriteOptions) (cur *api.KeyValue, ok bool) {
	kv, exists := s.keys[key]
	if exists {
		cur = &kv
	}
	if !opts.Compare {
		return cur, true
	}
	if !exists {
		return nil, opts.ModRevision == 0
	}
	return cur, kv.ModRevision == opts.ModRevision
}

// size is the bytes a key takes against the quota.
func size(kv api.KeyValue) int64 { return int64(len(kv.Key) + len(kv.Value)) }

// KVPut sets the key (bound to this peer's identifier with
// opts.Ephemeral), checking the compare, the limits and the quota.
func (b *Backend) KVPut(ctx context.Context, key string, value []byte, opts api.KVWriteOptions) (api.KVResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.kv()
	s.writes++
	if err := b.kvCheck(); err != nil {
		return api.KVResult{}, err
	}
	switch {
	case key == "" || strings.HasPrefix(key, "\x00"):
		return api.KVResult{}, fmt.Errorf("%w: the key %q", api.ErrInvalid, key)
	case len(key) > api.MaxKeySize || len(value) > api.MaxValueSize:
		return api.KVResult{}, fmt.Errorf("%w: a key of %d bytes, a value of %d", api.ErrTooLarge, len(key), len(value))
	}
	cur, ok := compare(s, key, opts)
	if !ok {
		return api.KVResult{Revision: s.rev, KV: cur}, fmt.Errorf("%w: %q", api.ErrCompareFailed, key)
	}
	kv := api.KeyValue{Key: key, Value: append([]byte(nil), value...)}
	if opts.Ephemeral {
		kv.Owner = b.st.Identifier
	}
	if s.quota > 0 {
		var total int64
		for _, x := range s.keys {
			total += size(x)
		}
		if cur != nil {
			total -= size(*cur)
		}
		if total+size(kv) > s.quota {
			return api.KVResult{Revision: s.rev}, fmt.Errorf("%w: %d bytes of %d", api.ErrQuota, total+size(kv), s.quota)
		}
	}
	rev := b.kvApplyLocked(nil, &kv)
	now := s.keys[key]
	return api.KVResult{Revision: rev, KV: &now, Prev: cur}, nil
}

// KVDelete deletes the key, checking the compare.
func (b *Backend) KVDelete(ctx context.Context, key string, opts api.KVWriteOptions) (api.KVResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.kv()
	s.writes++
	if err := b.kvCheck(); err != nil {
		return api.KVResult{}, err
	}
	cur, ok := compare(s, key, opts)
	if !ok {
		return api.KVResult{Revision: s.rev, KV: cur}, fmt.Errorf("%w: %q", api.ErrCompareFailed, key)
	}
	if cur == nil {
		return api.KVResult{Revision: s.rev}, fmt.Errorf("%w: %q", api.ErrKeyNotFound, key)
	}
	rev := b.kvApplyLocked([]string{key}, nil)
	return api.KVResult{Revision: rev, Prev: cur}, nil
}

// KVWatch sends the events of the keys under prefix from revision from,
// from the history, then as they happen, until ctx ends or the Backend
// stops; a reader that falls behind a Compact has its channel closed.
func (b *Backend) KVWatch(ctx context.Context, prefix string, from uint64) (<-chan api.KVEvent, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.kvCheck(); err != nil {
		return nil, 0, err
	}
	s := b.kv()
	if s.wErr != nil {
		return nil, 0, s.wErr
	}
	if from == 0 {
		from = s.rev + 1
	}
	if from < s.oldest {
		return nil, 0, &api.CompactedError{Oldest: s.oldest}
	}
	// pos: the position among all events of the next one to look at.
	pos := s.base
	for pos-s.base < uint64(len(s.history)) && s.history[pos-s.base].Revision < from {
		pos++
	}
	ch := make(chan api.KVEvent, 16)
	s.watches++
	go b.kvWatch(ctx, prefix, pos, s.gen, ch)
	return ch, from, nil
}

func (b *Backend) kvWatch(ctx context.Context, prefix string, pos, gen uint64, ch chan<- api.KVEvent) {
	defer func() {
		b.mu.Lock()
		b.kv().watches--
		b.mu.Unlock()
		close(ch)
	}()
	for {
		b.mu.Lock()
		s := b.kv()
		if pos < s.base || b.stopped || gen != s.gen {
			b.mu.Unlock()
			return // fell behind a Compact, EndWatches, or the peer stops
		}
		evs := slices.Clone(s.history[pos-s.base:])
		changed := s.changed
		b.mu.Unlock()
		for _, ev := range evs {
			pos++
			if !strings.HasPrefix(ev.KV.Key, prefix) || (strings.HasPrefix(ev.KV.Key, "\x00") && !strings.HasPrefix(prefix, "\x00")) {
				continue
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// Lock waits until the lock's key is absent, then takes it, bound to this
// peer: the token is the key's mod revision.
func (b *Backend) Lock(ctx context.Context, name string) (uint64, <-chan struct{}, error) {
	b.mu.Lock()
	b.kv().writes++
	b.mu.Unlock()
	key := lockPrefix + name
	for {
		b.mu.Lock()
		if err := b.kvCheck(); err != nil {
			b.mu.Unlock()
			return 0, nil, err
		}
		s := b.kv()
		if _, taken := s.keys[key]; !taken {
			rev := b.kvApplyLocked(nil, &api.KeyValue{Key: key, Owner: b.st.Identifier})
			hl := heldLock{token: rev, lost: make(chan struct{})}
			s.held[name] = hl
			b.mu.Unlock()
			return rev, hl.lost, nil
		}
		changed := s.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
}

// Unlock deletes the lock's key if it is still the one taken with token.
func (b *Backend) Unlock(ctx context.Context, name string, token uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.kv()
	s.writes++
	if err := b.kvCheck(); err != nil {
		return err
	}
	kv, ok := s.keys[lockPrefix+name]
	if !ok || kv.ModRevision != token {
		return nil
	}
	if hl, ok := s.held[name]; ok && hl.token == token {
		delete(s.held, name) // released, not lost
	}
	b.kvApplyLocked([]string{lockPrefix + name}, nil)
	return nil
}
