package membership

import (
	"bytes"
	"context"
	"testing"
)

// TestSetCheckPropagates: the health-check state reaches every member,
// with inline and referenced metadata alike, and leaves the metadata as
// it was; the envelope keeps it through a round trip.
func TestSetCheckPropagates(t *testing.T) {
	for _, size := range []int{0, InlineMetaSize, InlineMetaSize + 1} {
		for _, check := range []Check{CheckNone, CheckPassing, CheckFailing} {
			e, err := parseEnvelope(encodeEnvelope(bytes.Repeat([]byte{'x'}, size), check))
			if err != nil || e.check != check {
				t.Fatalf("%d bytes, check %v: got %+v, %v", size, check, e, err)
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
	for _, check := range []Check{CheckFailing, CheckPassing, CheckFailing, CheckNone} {
		if err := a.SetCheck(ctx, check); err != nil {
			t.Fatalf("SetCheck(%v): %v", check, err)
		}
		if l := a.Local(); l.Check != check {
			t.Fatalf("Local().Check = %v, want %v", l.Check, check)
		}
		for _, n := range nodes[1:] {
			eventually(t, n.name+" to see the flag", func() bool {
				for _, m := range n.Members() {
					if m.Name == a.name {
						return m.Check == check && bytes.Equal(m.Meta, meta)
					}
				}
				return false
			})
		}
	}
}
