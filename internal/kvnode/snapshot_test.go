package kvnode

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// TestSnapshotContainer: the registry and the store round-trip; an older
// registry-only snapshot is the registry alone; malformed containers are
// errors.
func TestSnapshotContainer(t *testing.T) {
	reg, kvb := []byte(`{"members":[]}`), []byte("KVS\x01...")
	r, k, err := SplitSnapshot(EncodeSnapshot(reg, kvb))
	if err != nil || !bytes.Equal(r, reg) || !bytes.Equal(k, kvb) {
		t.Fatalf("round trip: %q %q %v", r, k, err)
	}
	if r, k, err := SplitSnapshot(EncodeSnapshot(reg, nil)); err != nil || !bytes.Equal(r, reg) || k == nil || len(k) != 0 {
		t.Fatalf("empty store: %q %v %v", r, k, err)
	}
	if r, k, err := SplitSnapshot(reg); err != nil || !bytes.Equal(r, reg) || k != nil {
		t.Fatalf("old snapshot: %q %q %v", r, k, err)
	}
	good := EncodeSnapshot(reg, kvb)
	for _, bad := range [][]byte{good[:len(good)-1], append(slices.Clone(good), 0), []byte(SnapshotMagic + "\xff"), []byte(SnapshotMagic + "\x05ab")} {
		if _, _, err := SplitSnapshot(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("SplitSnapshot(%q) = %v", bad, err)
		}
	}
}
