package membership

import (
	"bytes"
	"compress/lzw"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// The encoders below build packets exactly as memberlist does (net.go and
// util.go: type byte + msgpack, compound framing, CRC, LZW compression,
// label header), with memberlist's own struct field names.

type mlAlive struct {
	Incarnation uint32
	Node        string
	Addr        []byte
	Port        uint16
	Meta        []byte
	Vsn         []uint8
}

type mlSuspect struct {
	Incarnation uint32
	Node        string
	From        string
}

type mlPing struct {
	SeqNo uint32
	Node  string
}

func mlEncode(t testing.TB, msgType byte, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteByte(msgType)
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mlCompound(msgs ...[]byte) []byte {
	var buf bytes.Buffer
	buf.WriteByte(wireCompound)
	buf.WriteByte(byte(len(msgs)))
	for _, m := range msgs {
		_ = binary.Write(&buf, binary.BigEndian, uint16(len(m)))
	}
	for _, m := range msgs {
		buf.Write(m)
	}
	return buf.Bytes()
}

func mlCRC(msg []byte) []byte {
	h := make([]byte, 5, 5+len(msg))
	h[0] = wireHasCRC
	binary.BigEndian.PutUint32(h[1:], crc32.ChecksumIEEE(msg))
	return append(h, msg...)
}

func mlCompress(t testing.TB, msg []byte) []byte {
	var z bytes.Buffer
	w := lzw.NewWriter(&z, lzw.LSB, 8)
	w.Write(msg)
	w.Close()
	return mlEncode(t, wireCompress, &wireCompressed{Algo: 0, Buf: z.Bytes()})
}

func decodeAll(t testing.TB, buf []byte, label string) ([]gossipMsg, error) {
	t.Helper()
	var out []gossipMsg
	err := decodeGossip(buf, label, func(m gossipMsg) { out = append(out, m) })
	return out, err
}

func TestDecodeGossip(t *testing.T) {
	alive := mlEncode(t, wireAlive, &mlAlive{Incarnation: 7, Node: "a", Addr: []byte{127, 0, 0, 1}, Port: 7001, Meta: []byte("qm"), Vsn: []uint8{1, 5, 2, 0, 0, 0}})
	suspect := mlEncode(t, wireSuspect, &mlSuspect{Incarnation: 3, Node: "b", From: "c"})
	dead := mlEncode(t, wireDead, &mlSuspect{Incarnation: 4, Node: "d", From: "d"})
	ping := mlEncode(t, 0, &mlPing{SeqNo: 1, Node: "x"})
	wantAll := []gossipMsg{
		{kind: gossipAlive, node: "a", addr: "127.0.0.1:7001", inc: 7},
		{kind: gossipSuspect, node: "b", from: "c", inc: 3},
		{kind: gossipDead, node: "d", from: "d", inc: 4},
	}
	labeled, err := memberlist.AddLabelHeaderToPacket(mlCompound(ping, alive, suspect, dead), "lbl")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		buf   []byte
		label string
		want  []gossipMsg
	}{
		{"alive", alive, "", wantAll[:1]},
		{"ping", ping, "", nil},
		{"compound", mlCompound(ping, alive, suspect, dead), "", wantAll},
		{"crc", mlCRC(mlCompound(alive, suspect, dead)), "", wantAll},
		{"compressed", mlCompress(t, mlCompound(alive, suspect, dead)), "", wantAll},
		{"crc+compressed", mlCRC(mlCompress(t, mlCompound(alive, suspect, dead))), "", wantAll},
		{"label", labeled, "lbl", wantAll},
	} {
		got, err := decodeAll(t, tc.buf, tc.label)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}

	// Packets of another cluster, or unlabeled packets when we have a
	// label, are ignored as memberlist ignores them.
	if got, err := decodeAll(t, labeled, "other"); err != errWireLabel || got != nil {
		t.Errorf("other label: %v, %v", got, err)
	}
	if got, err := decodeAll(t, alive, "lbl"); err != errWireLabel || got != nil {
		t.Errorf("missing label: %v, %v", got, err)
	}
	// A bad checksum is rejected, as memberlist rejects it.
	bad := mlCRC(alive)
	bad[len(bad)-1] ^= 1
	if got, err := decodeAll(t, bad, ""); err == nil || got != nil {
		t.Errorf("bad CRC: %v, %v", got, err)
	}
	// Truncation anywhere gives an error or a prefix, never a panic.
	full := mlCRC(mlCompound(alive, suspect, dead))
	for i := range full {
		decodeAll(t, full[:i], "")
	}
}

func FuzzDecodeGossip(f *testing.F) {
	alive := mlEncode(f, wireAlive, &mlAlive{Incarnation: 7, Node: "a", Meta: []byte("qm")})
	suspect := mlEncode(f, wireSuspect, &mlSuspect{Incarnation: 3, Node: "b", From: "c"})
	f.Add(alive)
	f.Add(mlCompound(alive, suspect))
	f.Add(mlCRC(mlCompound(alive, suspect)))
	f.Add(mlCompress(f, mlCompound(alive, suspect)))
	f.Add([]byte{wireCompound, 255, 0})
	f.Add([]byte{wireHasLabel, 3, 'a', 'b', 'c', wireAlive})
	f.Fuzz(func(t *testing.T, buf []byte) {
		_ = decodeGossip(buf, "", func(m gossipMsg) {
			if m.node == "" || m.kind < gossipAlive || m.kind > gossipDead {
				t.Fatalf("bad message %+v", m)
			}
		})
	})
}
