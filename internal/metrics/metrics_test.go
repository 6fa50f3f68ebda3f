package metrics

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/qcluster/qcluster/internal/consensus"
)

func TestElectionCounting(t *testing.T) {
	m := New(nil, slog.New(slog.DiscardHandler), nil)
	const (
		F = consensus.Follower
		P = consensus.PreCandidate
		C = consensus.Candidate
		L = consensus.Leader
	)
	// A pre-vote that fails, one that wins, a step-down, a win seen in one
	// step (roles passed through within one Ready), and a lost election
	// with a second round.
	for _, step := range [][2]consensus.Role{{F, P}, {P, F}, {F, P}, {P, C}, {C, L}, {L, F}, {F, L}, {L, F}, {F, C}, {C, P}, {P, F}} {
		m.roleChanged(step[0], step[1])
	}
	got := []float64{counterValue(m.electionsStarted), counterValue(m.electionsWon), counterValue(m.electionsLost)}
	if want := []float64{4, 2, 2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("started, won, lost = %v, want %v", got, want)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
