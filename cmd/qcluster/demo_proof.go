package main

import (
	"context"
	"fmt"

	"github.com/qcluster/qcluster/internal/proccluster"
)

// goneReportsMetric counts, on each peer, the proofs that the process of
// the leader it followed was gone that its election core took as evidence
// (docs/metrics.md); result="taken" is what lets the survivors elect at
// once.
const goneReportsMetric = "qcluster_leader_gone_reports_total"

// goneProofsTaken returns how many of peers have taken a proof that their
// leader's process was gone, by their /metrics, and the first error met
// reading one (the count then covers the others).
func goneProofsTaken(ctx context.Context, peers []*proccluster.Peer) (int, error) {
	n := 0
	var first error
	for _, p := range peers {
		v, err := p.Metric(ctx, goneReportsMetric, "result", "taken")
		if err != nil {
			if first == nil {
				first = fmt.Errorf("%s: %w", p.ID, err)
			}
			continue
		}
		if v > 0 {
			n++
		}
	}
	return n, first
}
