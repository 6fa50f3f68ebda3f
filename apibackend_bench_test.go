package qcluster

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAPILeader64 is a small load generator (what wrk would do): 64
// keep-alive connections, each with one request in flight, send
// GET /v1/leader to a follower of a 3-peer cluster in this process. It
// reports requests per second and latency percentiles. The load generator
// shares the machine's CPUs with the peers, so the numbers are a floor.
//
//	go test -run '^$' -bench APILeader64 -benchtime 20000x .
func BenchmarkAPILeader64(b *testing.B) {
	const conns = 64
	tc := newTestCluster(b, 3)
	leader := tc.waitLeader(5 * time.Second)
	f := tc.peers[(tc.index(leader)+1)%3]
	url := "http://" + f.Addr() + "/v1/leader"

	clients := make([]*http.Client, conns)
	for i := range clients {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr}
	}
	get := func(hc *http.Client) error {
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET /v1/leader: %s", resp.Status)
		}
		return err
	}
	for _, hc := range clients { // open the connections
		if err := get(hc); err != nil {
			b.Fatal(err)
		}
	}

	var next atomic.Int64
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	start := time.Now()
	for i, hc := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := get(hc); err != nil {
					failed.Store(&err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(0.999), "p99.9-ms")
}
