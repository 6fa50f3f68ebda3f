package membership

import (
	"bytes"
	"context"
	"testing"
)

// TestSetFailingPropagates: the health-check flag reaches every member,
// with inline and referenced metadata alike, and leaves the metadata as
// it was; the envelope keeps it through a round trip.
func TestSetFailingPropagates(t *testing.T) {
	for _, size := range []int{0, InlineMetaSize, InlineMetaSize + 1} {
		for _, failing := range []bool{false, true} {
			e, err := parseEnvelope(encodeEnvelope(bytes.Repeat([]byte{'x'}, size), failing))
			if err != nil || e.failing != failing {
				t.Fatalf("%d bytes, failing %v: got %+v, %v", size, failing, e, err)
			}
		}
	}
	nodes := startCluster(t, "f", 3, nil)
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	a := nodes[0]
	ctx := context.Background()
	meta := []byte(`{"server_port":8002}`)
	if err := a.SetMeta(ctx, meta); err != nil {
		t.Fatal(err)
	}
	for _, failing := range []bool{true, false, true} {
		if err := a.SetFailing(ctx, failing); err != nil {
			t.Fatalf("SetFailing(%v): %v", failing, err)
		}
		if l := a.Local(); l.Failing != failing {
			t.Fatalf("Local().Failing = %v, want %v", l.Failing, failing)
		}
		for _, n := range nodes[1:] {
			eventually(t, n.name+" to see the flag", func() bool {
				for _, m := range n.Members() {
					if m.Name == a.name {
						return m.Failing == failing && bytes.Equal(m.Meta, meta)
					}
				}
				return false
			})
		}
	}
}
