package qcluster

import (
	"time"

	"github.com/qcluster/qcluster/internal/metrics"
)

// peerMetrics is this peer's Prometheus instrumentation (internal/metrics;
// docs/metrics.md lists every metric). It reads the Cluster through a
// metricsSource only.
type peerMetrics struct{ *metrics.Metrics }

// newPeerMetrics creates c's metrics (Start registers them).
func newPeerMetrics(c *Cluster) peerMetrics {
	return peerMetrics{metrics.New(c.cfg.Registerer, c.log, metricsSource{c})}
}

// observeKVApply records a KV write's latency, proposal to applied.
func (m peerMetrics) observeKVApply(d time.Duration) { m.ObserveKVApply(d) }

// leaseRemaining is how long this peer's leader lease still runs (0: none).
func (c *Cluster) leaseRemaining() time.Duration {
	s := c.snap.Load()
	if s.closed {
		return 0
	}
	return max(0, s.view.LeaseUntil-c.now())
}

// metricsSource is what the metrics read of a Cluster when Prometheus
// scrapes (metrics.Source).
type metricsSource struct{ c *Cluster }

func (s metricsSource) IsLeader() bool                  { return s.c.IsLeader() }
func (s metricsSource) Term() uint64                    { return s.c.Term() }
func (s metricsSource) LeaseRemaining() time.Duration   { return s.c.leaseRemaining() }
func (s metricsSource) Leading() bool                   { return s.c.leading() }
func (s metricsSource) CertNotAfter() (time.Time, bool) { return s.c.certNotAfter() }
func (s metricsSource) KVStats() (uint64, int, int64)   { return s.c.kv.Stats() }

func (s metricsSource) HealthPassing() bool {
	st, _ := s.c.Health()
	return st != CheckFailing
}

// Members counts the members Peers reports, by health and check.
func (s metricsSource) Members() metrics.Members {
	ms := metrics.Members{Check: map[string]int{CheckPassing: 0, CheckFailing: 0, CheckNone: 0}}
	for _, m := range s.c.Peers() {
		if m.Role == MemberNone {
			continue // not (or no longer) a member
		}
		ms.Known++
		if _, ok := ms.Check[m.Check]; ok {
			ms.Check[m.Check]++
		}
		switch m.Health {
		case HealthAlive:
			ms.Alive++
		case HealthSuspect:
			ms.Suspect++
		case HealthDead:
			ms.Dead++
		case HealthLeft:
			ms.Left++
		}
	}
	return ms
}

func (s metricsSource) Parts() metrics.Parts {
	r := s.c.running()
	if r == nil {
		return metrics.Parts{}
	}
	return metrics.Parts{Mux: r.Mux, Transport: r.Transport, Gossip: r.Gossip, Node: r.Node}
}
