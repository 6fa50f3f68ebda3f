package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"runtime"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzReadFrame feeds arbitrary bytes to the stream decoder: a hello frame
// followed by message frames. It must never panic, never return a payload
// above the limit, and whatever hello it accepts must re-encode to the same
// bytes; every message that decodes must encode and decode again to an
// equal message.
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
