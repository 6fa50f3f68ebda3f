package qcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/qcluster/qcluster/api"
)

// promScrape is one parsed GET /metrics answer.
type promScrape struct {
	peer string
	fams map[string]*dto.MetricFamily
}

// scrapeMetrics fetches GET /metrics from c and parses it with the
// Prometheus text parser.
func scrapeMetrics(t testing.TB, hc *http.Client, c *Cluster) promScrape {
	t.Helper()
	resp, err := hc.Get("http://" + c.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics on %s: %v", c.cfg.Identifier, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics on %s: %s %q: %s", c.cfg.Identifier, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics of %s: %v", c.cfg.Identifier, err)
	}
	return promScrape{peer: c.cfg.Identifier, fams: fams}
}

// value returns the value of the series of name whose labels include the
// given name/value pairs (the sample count for a histogram), and whether
// there is one.
func (s promScrape) value(name string, labels ...string) (float64, bool) {
	f := s.fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// get is value for a series that must exist (0 and a note otherwise).
func (s promScrape) get(problems *[]string, name string, labels ...string) float64 {
	v, ok := s.value(name, labels...)
	if !ok {
		*problems = append(*problems, fmt.Sprintf("%s: no %s%v", s.peer, name, labels))
	}
	return v
}

// sum adds every series of name (counters and gauges).
func (s promScrape) sum(name string) float64 {
	total := 0.0
	for _, m := range s.fams[name].GetMetric() {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

// waitMetrics scrapes every running peer of tc until check finds no
// problem, and fails with the last problems at the timeout. It returns the
// scrapes that passed, in peer order (nil for stopped peers).
func waitMetrics(t *testing.T, tc *testCluster, hc *http.Client, timeout time.Duration,
	check func(s []promScrape) []string) []promScrape {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		scrapes := make([]promScrape, len(tc.peers))
		for i, p := range tc.peers {
			if p != nil {
				scrapes[i] = scrapeMetrics(t, hc, p)
			}
		}
		problems := check(scrapes)
		if len(problems) == 0 {
			return scrapes
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics after %v:\n  %s", timeout, strings.Join(problems, "\n  "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newMetricsClient(t testing.TB) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// checkLeadership checks what an elected, settled cluster must show: one
// peer with is_leader 1 (the one named), one term, and the leader's view
// of the members and its lease.
func checkLeadership(scrapes []promScrape, leader int) []string {
	var problems []string
	var terms []float64
	for i, s := range scrapes {
		isLeader := s.get(&problems, "qcluster_is_leader")
		if want := map[bool]float64{true: 1}[i == leader]; isLeader != want {
			problems = append(problems, fmt.Sprintf("%s: is_leader %v, want %v", s.peer, isLeader, want))
		}
		if v := s.get(&problems, "qcluster_lease_valid"); v != isLeader {
			problems = append(problems, fmt.Sprintf("%s: lease_valid %v with is_leader %v", s.peer, v, isLeader))
		}
		if v := s.get(&problems, "qcluster_lease_remaining_seconds"); (v > 0) != (i == leader) {
			problems = append(problems, fmt.Sprintf("%s: lease_remaining_seconds %v", s.peer, v))
		}
		terms = append(terms, s.get(&problems, "qcluster_term"))
		if v := s.get(&problems, "qcluster_members_known"); v != float64(len(scrapes)) {
			problems = append(problems, fmt.Sprintf("%s: members_known %v, want %d", s.peer, v, len(scrapes)))
		}
		repl, ok := s.value("qcluster_raft_members_replicating")
		switch {
		case i == leader && repl != float64(len(scrapes)):
			problems = append(problems, fmt.Sprintf("%s (leader): raft_members_replicating %v, want %d", s.peer, repl, len(scrapes)))
		case i != leader && ok:
			problems = append(problems, fmt.Sprintf("%s (follower): raft_members_replicating %v, want none", s.peer, repl))
		}
		for _, name := range []string{"qcluster_members_alive", "qcluster_members_suspect", "qcluster_members_dead", "qcluster_members_left"} {
			if _, ok := s.value(name); !ok {
				problems = append(problems, fmt.Sprintf("%s: %s missing", s.peer, name))
			}
		}
		if v := s.get(&problems, "qcluster_leader_changes_total"); v < 1 {
			problems = append(problems, fmt.Sprintf("%s: leader_changes_total %v", s.peer, v))
		}
	}
	for _, term := range terms {
		if term != terms[0] || term < 2 {
			problems = append(problems, fmt.Sprintf("terms %v: want one term, above the bootstrap term 1", terms))
			break
		}
	}
	return problems
}

// TestMetricsAfterElectionAndTransfer scrapes real peers on loopback after
// an election and after a leadership transfer.
func TestMetricsAfterElectionAndTransfer(t *testing.T) {
	tc := newTestCluster(t, 3)
	hc := newMetricsClient(t)
	leader := tc.waitLeader(5 * time.Second)
	li := tc.index(leader)

	scrapes := waitMetrics(t, tc, hc, 5*time.Second, func(scrapes []promScrape) []string {
		problems := checkLeadership(scrapes, li)
		l := scrapes[li]
		won, started := l.get(&problems, "qcluster_elections_won_total"), l.get(&problems, "qcluster_elections_started_total")
		if won < 1 || started < won {
			problems = append(problems, fmt.Sprintf("leader: elections started %v, won %v", started, won))
		}
		for _, h := range []string{"qcluster_raft_heartbeat_round_trip_seconds", "qcluster_raft_commit_seconds"} {
			if n := l.get(&problems, h); n < 1 {
				problems = append(problems, fmt.Sprintf("leader: %s has %v samples", h, n))
			}
		}
		for _, s := range scrapes {
			if n := s.get(&problems, "qcluster_storage_fsync_seconds"); n < 1 {
				problems = append(problems, fmt.Sprintf("%s: no fsync observed", s.peer))
			}
			if n := s.sum("qcluster_raft_messages_sent_total"); n < 1 {
				problems = append(problems, fmt.Sprintf("%s: raft_messages_sent_total %v", s.peer, n))
			}
			if n := s.sum("qcluster_raft_messages_received_total"); n < 1 {
				problems = append(problems, fmt.Sprintf("%s: raft_messages_received_total %v", s.peer, n))
			}
			s.get(&problems, "qcluster_raft_inbox_dropped_total")
			s.get(&problems, "qcluster_stalls_total")
			// The fail-over proofs' counters, every label from the start.
			for _, l := range [][3]string{
				{"qcluster_raft_stream_ends_total", "how", "goodbye"}, {"qcluster_raft_stream_ends_total", "how", "reset"},
				{"qcluster_raft_stream_ends_total", "how", "eof"}, {"qcluster_raft_gone_probes_total", "result", "refused"},
				{"qcluster_raft_gone_probes_total", "result", "accepted"}, {"qcluster_raft_gone_probes_total", "result", "failed"},
				{"qcluster_leader_gone_reports_total", "result", "taken"}, {"qcluster_leader_gone_reports_total", "result", "ignored"},
			} {
				if _, ok := s.value(l[0], l[1], l[2]); !ok {
					problems = append(problems, fmt.Sprintf("%s: no %s{%s=%q}", s.peer, l[0], l[1], l[2]))
				}
			}
			s.get(&problems, "process_cpu_seconds_total") // the per-peer registry's runtime metrics
		}
		// The leader's heartbeats, by type.
		if n, _ := l.value("qcluster_raft_messages_sent_total", "type", "MsgHeartbeat"); n < 1 {
			problems = append(problems, fmt.Sprintf("leader: MsgHeartbeat sent %v", n))
		}
		if n, _ := scrapes[(li+1)%3].value("qcluster_raft_messages_received_total", "type", "MsgHeartbeat"); n < 1 {
			problems = append(problems, fmt.Sprintf("follower: MsgHeartbeat received %v", n))
		}
		return problems
	})
	// The earlier scrapes are counted by route and code.
	again := scrapeMetrics(t, hc, tc.peers[0])
	if n, _ := again.value("qcluster_api_requests_total", "route", "/metrics", "code", "200"); n < 1 {
		t.Errorf("api_requests_total{route=/metrics,code=200} = %v", n)
	}
	if n, _ := again.value("qcluster_api_request_duration_seconds", "route", "/metrics"); n < 1 {
		t.Errorf("api_request_duration_seconds{route=/metrics} has %v samples", n)
	}
	// Every type label is a raft message type name.
	for _, s := range scrapes {
		for _, m := range s.fams["qcluster_raft_messages_sent_total"].GetMetric() {
			if typ := m.GetLabel()[0].GetValue(); !strings.HasPrefix(typ, "Msg") {
				t.Errorf("%s: type label %q", s.peer, typ)
			}
		}
	}
	changesBefore := make([]float64, 3)
	for i, s := range scrapes {
		changesBefore[i], _ = s.value("qcluster_leader_changes_total")
	}
	termBefore, _ := scrapes[li].value("qcluster_term")

	// Transfer to the next peer; a busy machine may need another try.
	target := (li + 1) % 3
	waitFor(t, 20*time.Second, "the transfer to succeed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := leader.Transfer(ctx, tc.cfgs[target].Identifier)
		if err != nil && !errors.Is(err, ErrTransferFailed) {
			t.Fatalf("Transfer: %v", err)
		}
		return err == nil
	})
	if nl := tc.waitLeader(5 * time.Second); nl != tc.peers[target] {
		t.Fatalf("%s leads after the transfer to %s", nl.cfg.Identifier, tc.cfgs[target].Identifier)
	}
	waitMetrics(t, tc, hc, 5*time.Second, func(scrapes []promScrape) []string {
		problems := checkLeadership(scrapes, target)
		for i, s := range scrapes {
			if v := s.get(&problems, "qcluster_leader_changes_total"); v <= changesBefore[i] {
				problems = append(problems, fmt.Sprintf("%s: leader_changes_total %v, was %v", s.peer, v, changesBefore[i]))
			}
		}
		if term := scrapes[target].get(&problems, "qcluster_term"); term <= termBefore {
			problems = append(problems, fmt.Sprintf("term %v after the transfer, was %v", term, termBefore))
		}
		if v := scrapes[target].get(&problems, "qcluster_elections_won_total"); v < 1 {
			problems = append(problems, fmt.Sprintf("new leader: elections_won_total %v", v))
		}
		return problems
	})
}

// TestMetricsTwoClustersInOneProcess runs two clusters side by side: each
// peer has its own registry, so nothing collides and nothing lands in the
// global default registry.
func TestMetricsTwoClustersInOneProcess(t *testing.T) {
	a, b := newTestCluster(t, 3), newTestCluster(t, 3)
	hc := newMetricsClient(t)
	for _, tc := range []*testCluster{a, b} {
		leader := tc.waitLeader(5 * time.Second)
		waitMetrics(t, tc, hc, 5*time.Second, func(s []promScrape) []string { return checkLeadership(s, tc.index(leader)) })
	}
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "qcluster_") {
			t.Errorf("%s is in the global default registry", f.GetName())
		}
	}
}

// startSolo starts a cluster of one with the given Registerer.
func startSolo(t *testing.T, name string, reg prometheus.Registerer) (*Cluster, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Identifier = name
	cfg.Listener = ln
	cfg.DataDir = t.TempDir()
	cfg.Logger = testLogger(t)
	cfg.Registerer = reg
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		ln.Close()
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func TestMetricsOnCallersRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := startSolo(t, "solo", reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitForLeader(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	hc := newMetricsClient(t)
	waitMetrics(t, &testCluster{peers: []*Cluster{c}}, hc, 5*time.Second, func(s []promScrape) []string {
		problems := checkLeadership(s, 0)
		if _, ok := s[0].value("process_cpu_seconds_total"); ok {
			problems = append(problems, "runtime metrics added to the caller's registry")
		}
		return problems
	})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) == 0 || !strings.HasPrefix(fams[0].GetName(), "qcluster_") {
		t.Fatalf("caller's registry holds %d families", len(fams))
	}

	// A second peer on the same registry is refused with advice; once the
	// first is closed, its metrics are gone and the name is free again.
	_, err = startSolo(t, "solo2", reg)
	if err == nil || !strings.Contains(err.Error(), "WrapRegistererWith") {
		t.Fatalf("second peer on one registry: %v", err)
	}
	c.Close()
	if fams, _ := reg.Gather(); len(fams) != 0 {
		t.Errorf("%d families left after Close", len(fams))
	}
	if _, err := startSolo(t, "solo3", reg); err != nil {
		t.Fatalf("after Close: %v", err)
	}

	// A shared registry wrapped with a peer label takes several peers, but
	// is no Gatherer: /metrics says where the metrics are.
	shared := prometheus.NewRegistry()
	var peers []*Cluster
	for _, name := range []string{"x", "y"} {
		p, err := startSolo(t, name, prometheus.WrapRegistererWith(prometheus.Labels{"peer": name}, shared))
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
	}
	fams, err = shared.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "qcluster_term" && len(f.GetMetric()) != 2 {
			t.Fatalf("shared registry: qcluster_term has %d series, want one per peer: %v", len(f.GetMetric()), f)
		}
	}
	if !slices.ContainsFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == "qcluster_term" }) {
		t.Fatalf("shared registry without qcluster_term: %v", fams)
	}
	resp, err := hc.Get("http://" + peers[0].Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 404 || e.Code != api.CodeNotFound ||
		!strings.Contains(e.Error, "Registerer") {
		t.Errorf("GET /metrics without a Gatherer: %d %+v %v", resp.StatusCode, e, err)
	}
}
