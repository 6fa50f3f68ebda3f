package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Snapshot frames. A MsgSnap whose encoding is larger than the chunk size
// (Config.SnapshotChunkSize) travels as a sequence of snapshot frames on
// the peer's stream, between its other message frames:
//
//	kind (1 byte, 0) | sequence number (4 bytes BE) | body
//
// Frame 0's body is the snapshot's data length (8 bytes BE, non-zero)
// followed by the MsgSnap's encoding without its Snapshot.Data; frames 1,
// 2, ... carry the data, in order, each non-empty, until the announced
// length is reached, which completes the snapshot. A message frame never
// starts with a zero byte (a protobuf field number is never 0), so the
// first byte tells the kinds apart.
const (
	snapFrameKind   = 0
	snapFrameHeader = 1 + 4 // kind, sequence number
	snapStartFixed  = 8     // frame 0: the data length, before the message
	// minSnapshotChunk is the least SnapshotChunkSize used.
	minSnapshotChunk = 1 << 10
)

// errBadSnapshot wraps every reason a snapshot's frames are refused.
var errBadSnapshot = errors.New("bad snapshot")

// isSnapFrame reports whether a frame's payload is a snapshot frame.
func isSnapFrame(p []byte) bool { return len(p) > 0 && p[0] == snapFrameKind }

// snapSend is a snapshot being sent in chunks.
type snapSend struct {
	m     raftpb.Message
	start []byte // frame 0's payload
	data  []byte // m.Snapshot.Data
	off   int    // data bytes written
	seq   uint32 // the next frame's sequence number
}

// newSnapSend prepares m's snapshot frames; it returns nil if frame 0
// would exceed maxFrame.
func newSnapSend(m raftpb.Message, maxFrame int) *snapSend {
	head := m
	snap := *m.Snapshot
	snap.Data = nil
	head.Snapshot = &snap
	n := snapFrameHeader + snapStartFixed + head.Size()
	if n > maxFrame {
		return nil
	}
	b := make([]byte, n)
	b[0] = snapFrameKind
	binary.BigEndian.PutUint32(b[1:], 0)
	binary.BigEndian.PutUint64(b[snapFrameHeader:], uint64(len(m.Snapshot.Data)))
	if _, err := head.MarshalToSizedBuffer(b[snapFrameHeader+snapStartFixed:]); err != nil {
		return nil
	}
	return &snapSend{m: m, start: b, data: m.Snapshot.Data}
}

// done reports whether every frame has been written.
func (s *snapSend) done() bool { return s.seq > 0 && s.off == len(s.data) }

// snapReceiver reassembles the snapshot frames of one inbound stream: at
// most one snapshot at a time, whose announced size is reserved in the
// Transport's budget (Config.MaxSnapshotSize over all streams) until it
// is delivered or abandoned.
type snapReceiver struct {
	from, to uint64        // the stream's sender and this node
	budget   *atomic.Int64 // bytes reserved by all streams' reassemblies
	limit    int64         // Config.MaxSnapshotSize
	timeout  time.Duration // how long the next frame of a snapshot may take to begin

	cur      *raftpb.Message // the snapshot under way; nil: none
	data     []byte          // its data so far (capacity: the announced length)
	seq      uint32          // the next frame's sequence number
	deadline time.Time       // when the next frame must have begun by
}

// busy reports whether a snapshot is being reassembled.
func (r *snapReceiver) busy() bool { return r.cur != nil }

// abort abandons the snapshot under way, if any, and frees its
// reservation.
func (r *snapReceiver) abort() {
	if r.cur != nil {
		r.budget.Add(-int64(cap(r.data)))
		r.cur, r.data = nil, nil
	}
}

// stalled is the error of a reassembly whose next frame is overdue.
func (r *snapReceiver) stalled() error {
	return fmt.Errorf("%w: stalled: frame %d did not begin within %v", errBadSnapshot, r.seq, r.timeout)
}

// add takes a snapshot frame's payload p (which it does not keep) and
// returns the snapshot once its last frame is in. Any error means the
// stream must be closed; the reassembly is abandoned.
func (r *snapReceiver) add(p []byte, now time.Time) (m raftpb.Message, done bool, err error) {
	defer func() {
		if err != nil {
			r.abort()
		}
	}()
	if len(p) < snapFrameHeader {
		return m, false, fmt.Errorf("%w: frame of %d bytes", errBadSnapshot, len(p))
	}
	seq := binary.BigEndian.Uint32(p[1:])
	body := p[snapFrameHeader:]
	if seq == 0 {
		return m, false, r.begin(body, now)
	}
	switch {
	case r.cur == nil:
		return m, false, fmt.Errorf("%w: frame %d with no snapshot under way", errBadSnapshot, seq)
	case seq != r.seq:
		return m, false, fmt.Errorf("%w: frame %d, expected %d", errBadSnapshot, seq, r.seq)
	case len(body) == 0:
		return m, false, fmt.Errorf("%w: empty frame %d", errBadSnapshot, seq)
	case len(body) > cap(r.data)-len(r.data):
		return m, false, fmt.Errorf("%w: frame %d brings %d bytes past the announced %d", errBadSnapshot, seq, len(r.data)+len(body)-cap(r.data), cap(r.data))
	}
	r.data = append(r.data, body...)
	r.seq++
	r.deadline = now.Add(r.timeout)
	if len(r.data) < cap(r.data) {
		return m, false, nil
	}
	m = *r.cur
	m.Snapshot.Data = r.data
	r.budget.Add(-int64(cap(r.data)))
	r.cur, r.data = nil, nil
	return m, true, nil
}

// begin starts a reassembly from frame 0's body.
func (r *snapReceiver) begin(body []byte, now time.Time) error {
	if r.cur != nil {
		return fmt.Errorf("%w: a new snapshot began at frame %d of the previous one", errBadSnapshot, r.seq)
	}
	if len(body) < snapStartFixed {
		return fmt.Errorf("%w: frame 0 of %d bytes", errBadSnapshot, len(body))
	}
	size := binary.BigEndian.Uint64(body)
	if size == 0 || size > uint64(r.limit) {
		return fmt.Errorf("%w: announces %d bytes, limit %d", errBadSnapshot, size, r.limit)
	}
	var m raftpb.Message
	if err := m.Unmarshal(body[snapStartFixed:]); err != nil {
		return fmt.Errorf("%w: frame 0: %w", errBadSnapshot, err)
	}
	switch {
	case m.Type != raftpb.MsgSnap:
		return fmt.Errorf("%w: frame 0 carries a %v", errBadSnapshot, m.Type)
	case m.From != r.from || m.To != r.to:
		return fmt.Errorf("%w: misaddressed: from %d to %d", errBadSnapshot, m.From, m.To)
	case m.Snapshot == nil || len(m.Snapshot.Data) != 0:
		return fmt.Errorf("%w: frame 0 without a snapshot or with its data", errBadSnapshot)
	}
	if !reserve(r.budget, int64(size), r.limit) {
		return fmt.Errorf("%w: announces %d bytes, and %d of the %d bytes for snapshots are taken", errBadSnapshot, size, r.budget.Load(), r.limit)
	}
	r.cur = &m
	r.data = make([]byte, 0, size)
	r.seq = 1
	r.deadline = now.Add(r.timeout)
	return nil
}

// reserve adds n to *budget unless that would take it above limit.
func reserve(budget *atomic.Int64, n, limit int64) bool {
	for {
		cur := budget.Load()
		if cur+n > limit {
			return false
		}
		if budget.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}
