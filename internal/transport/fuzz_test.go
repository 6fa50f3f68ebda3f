package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzReadFrame feeds arbitrary bytes to the stream decoder: a hello frame
// followed by message frames and snapshot frames. It must never panic,
// never return a payload above the limit, and whatever hello it accepts
// must re-encode to the same bytes; every message that decodes must encode
// and decode again to an equal message, and none starts as a snapshot
// frame does. Snapshot frames go to a reassembly whose every decision
// (refused, taken, delivered) and reservation is checked against a model
// of the rules.
func FuzzReadFrame(f *testing.F) {
	const limit = 1 << 12
	valid := helloFrame(1, 2, "cluster")
	m := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 3, Index: 4,
		Entries: []raftpb.Entry{{Term: 3, Index: 5, Data: []byte("data")}}}
	p, err := m.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(append([]byte(nil), valid...), frame(p)...))
	f.Add(valid)
	f.Add(append(helloFrame(1, 2, ""), 0xff, 0xff, 0xff, 0xff))
	f.Add(append(helloFrame(1, 2, "x"), 0, 0, 0x10, 0x01))
	f.Add([]byte{0, 0, 0, 17, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{})
	// A snapshot in three frames with a message between them, and the
	// same frames out of order, repeated or past their size.
	head := raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 3,
		Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 9, Term: 3}}}
	hp, err := head.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	start := frame(binary.BigEndian.AppendUint64([]byte{snapFrameKind, 0, 0, 0, 0}, 10))
	start = frame(append(start[frameHeaderSize:], hp...))
	c1, c2 := frame([]byte{snapFrameKind, 0, 0, 0, 1, 'a', 'b', 'c', 'd'}), frame([]byte{snapFrameKind, 0, 0, 0, 2, 'e', 'f', 'g', 'h', 'i', 'j'})
	join := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{valid}, parts...), nil) }
	f.Add(join(start, c1, frame(p), c2))
	f.Add(join(start, c2, c1))
	f.Add(join(start, c1, c1))
	f.Add(join(start, c1, c2, c2))
	f.Add(join(start, start))
	f.Add(join(c1))
	f.Add(join(frame(binary.BigEndian.AppendUint64([]byte{snapFrameKind, 0, 0, 0, 0}, 1<<62))))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := readHello(r)
		if err != nil {
			return
		}
		enc := appendHelloFrame(nil, h)
		if !bytes.HasPrefix(data, enc) {
			t.Fatalf("hello %+v re-encodes to %x, input %x", h, enc, data[:len(enc)])
		}
		var budget atomic.Int64
		sr := snapReceiver{from: h.From, to: h.To, budget: &budget, limit: snapFuzzLimit, timeout: time.Hour}
		var model snapModel
		now := time.Now()
		var buf []byte
		for {
			p, err := readFrame(r, buf, limit)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(p) > limit {
				t.Fatalf("payload of %d bytes above limit", len(p))
			}
			if isSnapFrame(p) {
				// No message decodes from a snapshot frame: the first
				// byte tells them apart.
				var m raftpb.Message
				if m.Unmarshal(p) == nil {
					t.Fatalf("snapshot frame %x decodes as a message %+v", p, m)
				}
				want := model.step(p, h.From, h.To)
				got, done, err := sr.add(p, now)
				switch {
				case (err != nil) != (want == snapRefused):
					t.Fatalf("frame %x: error %v, model says %v", p, err, want)
				case done != (want == snapDelivered):
					t.Fatalf("frame %x: delivered %v, model says %v", p, done, want)
				case done && (!bytes.Equal(got.Snapshot.Data, model.data) || got.Type != raftpb.MsgSnap || got.From != h.From || got.To != h.To):
					t.Fatalf("delivered %+v with %d bytes, want %d bytes %x", got, len(got.Snapshot.Data), len(model.data), model.data)
				}
				if n := budget.Load(); n != model.reserved() || sr.busy() != model.active {
					t.Fatalf("after frame %x: %d bytes reserved, busy %v; model: %d, %v", p, n, sr.busy(), model.reserved(), model.active)
				}
				if err != nil {
					return // the stream is closed
				}
				buf = p[:0]
				continue
			}
			var m raftpb.Message
			if m.Unmarshal(p) == nil {
				// Round trip whatever decodes.
				q, err := m.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				var m2 raftpb.Message
				if err := m2.Unmarshal(q); err != nil {
					t.Fatal(err)
				}
				// The message decodes to what was sent, not merely to
				// something.
				if !reflect.DeepEqual(m, m2) {
					t.Fatalf("message %+v decodes again as %+v", m, m2)
				}
				if q2, err := m2.Marshal(); err != nil || !bytes.Equal(q, q2) {
					t.Fatalf("message re-encodes as %x, then %x (%v)", q, q2, err)
				}
			}
			buf = p[:0]
		}
	})
}

// snapFuzzLimit is FuzzReadFrame's MaxSnapshotSize.
const snapFuzzLimit = 1 << 14

// snapOutcome is what snapModel expects of a snapshot frame.
type snapOutcome int

const (
	snapTaken snapOutcome = iota
	snapRefused
	snapDelivered
)

func (o snapOutcome) String() string { return [...]string{"taken", "refused", "delivered"}[o] }

// snapModel is the rules of snapshot frames written out plainly, as the
// fuzz oracle: one snapshot at a time, frame 0 announcing 1 to
// snapFuzzLimit bytes with a MsgSnap from the stream's sender to its
// receiver and no data in it, then frames 1, 2, ... each non-empty, up to
// exactly the announced size.
type snapModel struct {
	active    bool
	next      uint32
	announced uint64
	data      []byte
}

func (s *snapModel) reserved() int64 {
	if !s.active {
		return 0
	}
	return int64(s.announced)
}

func (s *snapModel) step(p []byte, from, to uint64) snapOutcome {
	out := s.decide(p, from, to)
	if out != snapTaken {
		s.active = false
	}
	return out
}

func (s *snapModel) decide(p []byte, from, to uint64) snapOutcome {
	if len(p) < 5 {
		return snapRefused
	}
	seq, body := binary.BigEndian.Uint32(p[1:5]), p[5:]
	if seq == 0 {
		if s.active || len(body) < 8 {
			return snapRefused
		}
		n := binary.BigEndian.Uint64(body)
		var m raftpb.Message
		if n < 1 || n > snapFuzzLimit || m.Unmarshal(body[8:]) != nil || m.Type != raftpb.MsgSnap ||
			m.From != from || m.To != to || m.Snapshot == nil || len(m.Snapshot.Data) > 0 {
			return snapRefused
		}
		*s = snapModel{active: true, next: 1, announced: n}
		return snapTaken
	}
	if !s.active || seq != s.next || len(body) == 0 || uint64(len(s.data)+len(body)) > s.announced {
		return snapRefused
	}
	s.data = append(s.data, body...)
	s.next++
	if uint64(len(s.data)) == s.announced {
		s.active = false
		return snapDelivered
	}
	return snapTaken
}

func TestReadFrameDoesNotAllocateOversized(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, 1<<31)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := readFrame(bytes.NewReader(hdr), nil, 1<<20); !errors.Is(err, errFrameTooLarge) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("100 oversized frames allocated %d bytes", n)
	}
}

// FuzzMuxPreamble checks the preamble classifier against its definition and
// that the bytes peeked by the Mux are replayed intact.
func FuzzMuxPreamble(f *testing.F) {
	hs := []muxHandler{{preamble: []byte(RaftPreamble)}, {preamble: []byte("QCGOSSIP1\n")}}
	f.Add([]byte(RaftPreamble + "rest"))
	f.Add([]byte("QCGOSSIP1\n"))
	f.Add([]byte("QC"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		i, res := matchPreamble(hs, b)
		switch res {
		case matchFound:
			if !bytes.HasPrefix(b, hs[i].preamble) {
				t.Fatalf("%q matched %q", b, hs[i].preamble)
			}
		case matchMore:
			ok := false
			for _, h := range hs {
				ok = ok || (len(b) < len(h.preamble) && bytes.HasPrefix(h.preamble, b))
			}
			if !ok {
				t.Fatalf("%q: want more, but no preamble continues it", b)
			}
		case matchNone:
			for _, h := range hs {
				if bytes.HasPrefix(b, h.preamble) || bytes.HasPrefix(h.preamble, b) {
					t.Fatalf("%q: no match, but %q fits", b, h.preamble)
				}
			}
		}

		// replay returns b first, then the connection's own data.
		c1, c2 := net.Pipe()
		defer c1.Close()
		go func() {
			c2.Write([]byte("tail"))
			c2.Close()
		}()
		got, err := io.ReadAll(replay(c1, b))
		if err != nil || string(got) != string(b)+"tail" {
			t.Fatalf("replay read %q, %v", got, err)
		}
	})
}
