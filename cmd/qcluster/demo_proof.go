package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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
	hc := &http.Client{}
	for _, p := range peers {
		v, err := scrapeCounter(ctx, hc, p.Addr(), goneReportsMetric, "result", "taken")
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

// scrapeCounter reads the value of the counter name with label = value
// from GET http://addr/metrics (0 when the series is absent).
func scrapeCounter(ctx context.Context, hc *http.Client, addr, name, label, value string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue(), nil
			}
		}
	}
	return 0, nil
}
