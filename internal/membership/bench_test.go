package membership

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkConvergence starts N members in this process (memberlist's
// "local" profile, each joining the first), waits until every one sees N
// alive, and reports the time that took after the last join and the memory
// (heap and goroutine stacks) each member costs. A member that misses the
// gossip about a join learns of it at the next push/pull (every 15 s in
// the local profile, scaled up beyond 32 members), so an occasional run
// takes that long. Run it with
//
//	go test -run '^$' -bench Convergence -benchtime 1x ./internal/membership/
//
// (it is not part of the default test run: 100 members take a while).
func BenchmarkConvergence(b *testing.B) {
	for _, n := range []int{20, 50, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			local := func(c *Config, _ *testNode) {
				*c = Config{Name: c.Name, Mux: c.Mux, ClusterName: c.ClusterName, Meta: c.Meta,
					Logger: c.Logger, Profile: ProfileLocal}
			}
			var conv, total time.Duration
			var perMember uint64
			var goroutines int
			baseline := runtime.NumGoroutine()
			for b.Loop() {
				// Let the previous iteration's goroutines finish first.
				for deadline := time.Now().Add(30 * time.Second); runtime.NumGoroutine() > baseline && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				before := memInUse()
				g0 := runtime.NumGoroutine()
				start := time.Now()
				nodes := startCluster(b, "c", n, local)
				joined := time.Now()
				want := names(nodes)
				for !converged(nodes, want) {
					if time.Since(joined) > 5*time.Minute {
						b.Fatal("no convergence within 5 minutes")
					}
					time.Sleep(5 * time.Millisecond)
				}
				conv += time.Since(joined)
				total += time.Since(start)
				perMember += (memInUse() - before) / uint64(n)
				goroutines += (runtime.NumGoroutine() - g0) / n
				for _, nd := range nodes {
					nd.Shutdown()
					nd.mux.Close()
				}
			}
			b.ReportMetric(float64(conv.Milliseconds())/float64(b.N), "ms-converge")
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-start+converge")
			b.ReportMetric(float64(perMember)/float64(b.N)/1024, "KiB/member")
			b.ReportMetric(float64(goroutines)/float64(b.N), "goroutines/member")
		})
	}
}

// BenchmarkFailureDetection measures, for 5 members with a profile's
// default timings, the time from killing one (Shutdown, no leave notice)
// until every survivor reports it suspect, and until every survivor
// reports it dead. Run it with
//
//	go test -run '^$' -bench FailureDetection -benchtime 1x ./internal/membership/
func BenchmarkFailureDetection(b *testing.B) {
	for _, profile := range []string{ProfileLocal, ProfileLAN} {
		b.Run("profile="+profile, func(b *testing.B) {
			cfg := func(c *Config, _ *testNode) {
				*c = Config{Name: c.Name, Mux: c.Mux, ClusterName: c.ClusterName, Meta: c.Meta,
					Events: c.Events, Logger: c.Logger, Profile: profile}
			}
			var suspect, dead time.Duration
			for b.Loop() {
				nodes := startCluster(b, "d", 5, cfg)
				for !converged(nodes, names(nodes)) {
					time.Sleep(5 * time.Millisecond)
				}
				victim, survivors := nodes[4], nodes[:4]
				killed := time.Now()
				victim.Shutdown()
				var lastSuspect, lastDead time.Time
				for _, s := range survivors {
					for {
						if _, ok := s.events.first(EventFailed, victim.name); ok {
							break
						}
						if time.Since(killed) > 2*time.Minute {
							b.Fatal("victim not declared dead within 2 minutes")
						}
						time.Sleep(5 * time.Millisecond)
					}
					if e, ok := s.events.first(EventSuspect, victim.name); ok && e.at.After(lastSuspect) {
						lastSuspect = e.at
					}
					if e, ok := s.events.first(EventFailed, victim.name); ok && e.at.After(lastDead) {
						lastDead = e.at
					}
				}
				suspect += lastSuspect.Sub(killed)
				dead += lastDead.Sub(killed)
				for _, nd := range nodes {
					nd.Shutdown()
					nd.mux.Close()
				}
			}
			b.ReportMetric(float64(suspect.Milliseconds())/float64(b.N), "ms-suspect-everywhere")
			b.ReportMetric(float64(dead.Milliseconds())/float64(b.N), "ms-dead-everywhere")
		})
	}
}
