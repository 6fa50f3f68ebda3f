package storage

import "go.etcd.io/raft/v3"

// Memory is an in-memory Storage with the same semantics as Bolt, for
// simulations and tests. Everything Saved counts as durable: Clone returns
// what would survive a crash.
type Memory struct {
	core
}

var _ Storage = (*Memory)(nil)

// NewMemory returns an empty in-memory Storage.
func NewMemory() *Memory {
	return &Memory{core{ms: raft.NewMemoryStorage(), persist: noPersist}}
}

// Clone returns an independent deep copy of the stored state (what survives a
// crash: everything Saved). The copy is open even if m is closed.
func (m *Memory) Clone() *Memory {
	m.mu.Lock()
	img := m.image().deepCopy()
	m.mu.Unlock()
	ms, err := build(img)
	if err != nil {
		panic("storage: cloning a consistent state failed: " + err.Error()) // unreachable: writes are validated
	}
	return &Memory{core{ms: ms, persist: noPersist}}
}

// Close marks m closed: later writes fail with ErrClosed. Reads still work.
func (m *Memory) Close() error { return m.close(nil) }

// noPersist is Memory's disk: the cache itself is what survives.
func noPersist(change) error { return nil }
