package qcluster

import (
	"testing"

	"github.com/qcluster/qcluster/internal/registry"
)

// TestNodeIDIsTheRegistrys: the registry keys members by the node ID the
// config and the election use.
func TestNodeIDIsTheRegistrys(t *testing.T) {
	for _, ident := range []string{"", "a", "server_a", "node-0000000000000001", "\xff"} {
		if got, want := registry.NodeID(ident), NodeID(ident); got != want {
			t.Errorf("registry.NodeID(%q) = %x, NodeID = %x", ident, got, want)
		}
	}
}
