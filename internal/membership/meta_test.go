package membership

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestEnvelope(t *testing.T) {
	for _, size := range []int{0, 1, 100, InlineMetaSize, InlineMetaSize + 1, 4096, MaxMetaSize} {
		data := bytes.Repeat([]byte{'x'}, size)
		env := encodeEnvelope(data, CheckNone)
		if len(env) > memberlist.MetaMaxSize {
			t.Fatalf("%d bytes: envelope is %d bytes, over memberlist's %d", size, len(env), memberlist.MetaMaxSize)
		}
		e, err := parseEnvelope(env)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		switch {
		case size <= InlineMetaSize:
			if !e.inline || !bytes.Equal(e.data, data) {
				t.Errorf("%d bytes: want inline data back, got %+v", size, e)
			}
		default:
			if e.inline || e.size != size || e.hash != sha256.Sum256(data) {
				t.Errorf("%d bytes: want a reference, got %+v", size, e)
			}
		}
	}
	for _, bad := range [][]byte{nil, {}, {'q'}, {'q', 1}, {'x', 1, 0}, {'q', 2, 0}, {'q', 1, 9},
		{'q', 1, 0xc0}, // check state out of range
		{'q', 1, 1, 5}, // reference to inline-sized data
		append([]byte{'q', 1, 1, 0x80, 0x80, 0x08}, make([]byte, 32)...), // 128 KiB: over the limit
		append([]byte{'q', 1, 1, 0x80, 0x10}, make([]byte, 31)...),       // short hash
	} {
		if _, err := parseEnvelope(bad); err == nil {
			t.Errorf("parseEnvelope(%x) succeeded", bad)
		}
	}
}

func TestMetaProtocol(t *testing.T) {
	var buf bytes.Buffer
	h := sha256.Sum256([]byte("data"))
	if err := writeMetaRequest(&buf, "cluster", "node", h); err != nil {
		t.Fatal(err)
	}
	req, status, err := readMetaRequest(&buf)
	if err != nil || status != metaStatusOK || req.cluster != "cluster" || req.name != "node" || req.hash != h {
		t.Fatalf("readMetaRequest = %+v, %d, %v", req, status, err)
	}

	buf.Reset()
	data := bytes.Repeat([]byte("d"), MaxMetaSize)
	writeMetaResponse(&buf, metaStatusOK, data)
	got, err := readMetaResponse(&buf)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("readMetaResponse: %d bytes, %v", len(got), err)
	}
	for _, st := range []byte{metaStatusBadRequest, metaStatusWrongGroup, metaStatusWrongMember, metaStatusBusy, 99} {
		buf.Reset()
		writeMetaResponse(&buf, st, data)
		if buf.Len() != 1 {
			t.Errorf("status %d: response of %d bytes, want just the status", st, buf.Len())
		}
		if _, err := readMetaResponse(&buf); err == nil {
			t.Errorf("status %d: no error", st)
		}
	}
	// Oversized responses are refused before allocating.
	if _, err := readMetaResponse(bytes.NewReader([]byte{0, 0xff, 0xff, 0xff, 0xff})); err == nil {
		t.Error("4 GiB response accepted")
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add(encodeEnvelope([]byte("small"), CheckNone))
	f.Add(encodeEnvelope(make([]byte, 1000), CheckFailing))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEnvelope(b)
		if err != nil {
			return
		}
		if e.inline && len(e.data) > InlineMetaSize || !e.inline && (e.size <= InlineMetaSize || e.size > MaxMetaSize) {
			t.Fatalf("accepted %+v", e)
		}
	})
}

func FuzzReadMetaRequest(f *testing.F) {
	var buf bytes.Buffer
	writeMetaRequest(&buf, "c", "n", [32]byte{1})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		req, status, err := readMetaRequest(bytes.NewReader(b))
		if err == nil && (status != metaStatusOK || len(req.cluster) > 255 || len(req.name) > 255) {
			t.Fatalf("accepted %+v, status %d", req, status)
		}
	})
}

func FuzzReadMetaResponse(f *testing.F) {
	var buf bytes.Buffer
	writeMetaResponse(&buf, metaStatusOK, []byte("data"))
	f.Add(buf.Bytes())
	f.Add([]byte{metaStatusBusy})
	f.Fuzz(func(t *testing.T, b []byte) {
		data, err := readMetaResponse(bytes.NewReader(b))
		if err == nil && len(data) > MaxMetaSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
	})
}
