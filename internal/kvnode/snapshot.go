package kvnode

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// SnapshotMagic starts a raft snapshot's data that holds the registry and
// the KV store. A snapshot without it (written before the KV store
// existed, or the founding one) holds the registry alone: its JSON starts
// with '{'.
const SnapshotMagic = "QCS\x01"

// EncodeSnapshot packs the registry and the KV store for a raft snapshot:
// the magic, then each part as a uvarint length and its bytes.
func EncodeSnapshot(reg, kvData []byte) []byte {
	b := make([]byte, 0, len(SnapshotMagic)+2*binary.MaxVarintLen64+len(reg)+len(kvData))
	b = append(b, SnapshotMagic...)
	b = binary.AppendUvarint(b, uint64(len(reg)))
	b = append(b, reg...)
	b = binary.AppendUvarint(b, uint64(len(kvData)))
	return append(b, kvData...)
}

// ErrBadSnapshot: a raft snapshot's data does not unpack.
var ErrBadSnapshot = errors.New("malformed snapshot container")

// SplitSnapshot unpacks what EncodeSnapshot packed. Data without the magic
// is an older registry-only snapshot: kvData is nil.
func SplitSnapshot(data []byte) (reg, kvData []byte, err error) {
	if !bytes.HasPrefix(data, []byte(SnapshotMagic)) {
		return data, nil, nil
	}
	rest := data[len(SnapshotMagic):]
	part := func() []byte {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			err = ErrBadSnapshot
			return nil
		}
		p := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return p
	}
	reg = part()
	if err == nil {
		kvData = part()
	}
	if err == nil && len(rest) != 0 {
		err = ErrBadSnapshot
	}
	if err != nil {
		return nil, nil, err
	}
	if kvData == nil {
		kvData = []byte{}
	}
	return reg, kvData, nil
}
