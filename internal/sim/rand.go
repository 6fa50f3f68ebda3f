package sim

import (
	cryptorand "crypto/rand"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
)

// etcd raft v3.6.0 draws every randomized election timeout from
// crypto/rand.Reader (raft.go: globalRand.Intn -> crypto/rand.Int(rand.Reader,
// n)) and offers no hook to replace it. EnableDeterministicElections swaps
// crypto/rand.Reader for a dispatcher: reads made on a goroutine that is
// running a Cluster come from that Cluster's seeded ChaCha8 stream, every
// other read goes to the original Reader. A Cluster runs on one goroutine and
// raft draws only inside calls the Cluster makes, so the election timeouts
// become a function of the seed.

var (
	installOnce sync.Once
	installed   atomic.Bool
	origReader  io.Reader

	streamsMu sync.RWMutex
	streams   = map[uint64]*rand.ChaCha8{} // goroutine id -> stream
	nstreams  atomic.Int32
)

// EnableDeterministicElections makes the election timeouts raft draws inside
// a Cluster a function of the Cluster's seed, so that a seed replays a
// schedule exactly. It replaces crypto/rand.Reader for the whole process with
// a reader that serves Cluster goroutines from their seeded streams and
// forwards every other read to the original Reader.
//
// Call it once from TestMain before any test or goroutine starts (writing
// crypto/rand.Reader later would race with its readers). Without it a
// Cluster still works, but raft's election timeouts come from the operating
// system: a seed then replays the fault schedule and the network's random
// choices, not necessarily every election.
func EnableDeterministicElections() {
	installOnce.Do(func() {
		origReader = cryptorand.Reader
		cryptorand.Reader = dispatchReader{}
		installed.Store(true)
	})
}

// DeterministicElections reports whether EnableDeterministicElections has
// been called.
func DeterministicElections() bool { return installed.Load() }

type dispatchReader struct{}

func (dispatchReader) Read(b []byte) (int, error) {
	if nstreams.Load() > 0 {
		id := goid()
		streamsMu.RLock()
		s := streams[id]
		streamsMu.RUnlock()
		if s != nil {
			return s.Read(b)
		}
	}
	return origReader.Read(b)
}

// registerStream routes the calling goroutine's crypto/rand reads to a
// stream seeded from seed; the returned func undoes it.
func registerStream(seed uint64) func() {
	if !installed.Load() {
		return func() {}
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:8], seed)
	copy(key[8:], "qcluster/sim raft timeouts")
	id := goid()
	streamsMu.Lock()
	streams[id] = rand.NewChaCha8(key)
	streamsMu.Unlock()
	nstreams.Add(1)
	return func() {
		streamsMu.Lock()
		delete(streams, id)
		streamsMu.Unlock()
		nstreams.Add(-1)
	}
}

// goid returns the current goroutine's id, parsed from "goroutine N [...".
func goid() uint64 {
	var buf [40]byte
	n := runtime.Stack(buf[:], false)
	const prefix = "goroutine "
	var id uint64
	for _, ch := range buf[len(prefix):n] {
		if ch < '0' || ch > '9' {
			break
		}
		id = id*10 + uint64(ch-'0')
	}
	return id
}
