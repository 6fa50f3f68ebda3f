// Package metrics is one peer's Prometheus instrumentation; docs/metrics.md
// lists every metric. It reads the peer through a Source and holds nothing
// else of it.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/transport"
)

// Metrics is one peer's Prometheus instrumentation. Counters and
// histograms are updated where the event happens (the node goroutine, the
// storage write, the API request); gauges and the transport's per-type
// counters are read from the Source when Prometheus scrapes. IsLeader and
// Leader update nothing.
type Metrics struct {
	src      Source
	reg      prometheus.Registerer
	gatherer prometheus.Gatherer // what GET /metrics serves; nil: 404
	own      bool                // reg is this peer's own registry
	log      *slog.Logger

	collectors []prometheus.Collector // registered by Register
	registered []prometheus.Collector // the ones Register added

	leaderChanges    prometheus.Counter
	electionsStarted prometheus.Counter
	electionsWon     prometheus.Counter
	electionsLost    prometheus.Counter
	heartbeatRTT     prometheus.Histogram
	commit           prometheus.Histogram
	fsync            prometheus.Histogram
	apiRequests      *prometheus.CounterVec
	apiDuration      *prometheus.HistogramVec
	apiRefused       *prometheus.CounterVec
	kvApply          prometheus.Histogram

	// The leadership (leader, term) last counted by leaderChanges; only the
	// node goroutine (and Start, before it runs) touches them.
	lastLead, lastTerm uint64
}

// Source is what the metrics read when Prometheus scrapes: the peer's
// state, and the parts of the running peer that count.
type Source interface {
	IsLeader() bool
	// HealthPassing reports whether the application's health check
	// passes (true when there is none).
	HealthPassing() bool
	Term() uint64
	// LeaseRemaining is how long the leader lease still runs (0: none).
	LeaseRemaining() time.Duration
	// Leading reports whether raft makes this peer the leader.
	Leading() bool
	// CertNotAfter is when the TLS certificate expires (false: no TLS).
	CertNotAfter() (time.Time, bool)
	// KVStats is the KV store's revision, keys and bytes.
	KVStats() (rev uint64, keys int, bytes int64)
	// Members counts the members this peer knows of.
	Members() Members
	// Parts returns what Start built (the zero Parts before).
	Parts() Parts
}

// Members counts the known members (those the peer reports as members)
// by gossip health and by health-check state.
type Members struct {
	Known, Alive, Suspect, Dead, Left int
	// Check counts the members by their check's state (Member.Check); one
	// series per key.
	Check map[string]int
}

// Parts are the parts of a running peer whose counters are exported. Any
// may be nil (before Start; the raft transport and the node in masterless
// mode).
type Parts struct {
	Mux       *transport.Mux
	Transport *transport.Transport
	Gossip    *membership.Membership
	Node      *consensus.Node
}

// Histogram buckets, in seconds.
var (
	// Round trips on a LAN or loopback are well under a millisecond; the
	// top buckets catch a slow network or a stalled peer.
	heartbeatBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	// A commit includes an fsync on the leader and on a quorum.
	commitBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// 0.25 ms to 8 s: SSDs, disks and a stalled disk.
	fsyncBuckets = prometheus.ExponentialBuckets(.00025, 2, 16)
	// Reads take well under a millisecond; a hand-over takes up to seconds.
	apiBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// A KV write is a commit plus, on a follower, the trip to the leader
	// and back.
	kvApplyBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// New creates the metrics of src (not yet registered: Register does
// that), for reg (nil: a registry of their own).
func New(reg prometheus.Registerer, log *slog.Logger, src Source) *Metrics {
	c := src
	m := &Metrics{src: src, reg: reg, log: log}
	if m.reg == nil {
		r := prometheus.NewRegistry()
		m.reg, m.gatherer, m.own = r, r, true
	} else if g, ok := m.reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "qcluster", Name: name, Help: help})
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "qcluster", Name: name, Help: help, Buckets: buckets})
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "qcluster", Name: name, Help: help}, f)
	}
	m.leaderChanges = counter("leader_changes_total",
		"Leaderships this peer has observed: each new (leader, term) it learns of, itself included.")
	m.electionsStarted = counter("elections_started_total",
		"Elections this peer started: it became a pre-candidate or candidate (or leader at once).")
	m.electionsWon = counter("elections_won_total", "Elections this peer started and won: it became leader.")
	m.electionsLost = counter("elections_lost_total", "Elections this peer started and lost: it went back to follower.")
	m.heartbeatRTT = histogram("raft_heartbeat_round_trip_seconds",
		"Leader only: time from sending a heartbeat (lease) round until a quorum acknowledged it.", heartbeatBuckets)
	m.commit = histogram("raft_commit_seconds",
		"Leader only: time from appending an entry (a proposal, a membership change, or the entry opening its term) until it was committed and applied.",
		commitBuckets)
	m.fsync = histogram("storage_fsync_seconds",
		"Duration of each durable write to data_dir (one bbolt transaction, fsynced).", fsyncBuckets)
	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "qcluster", Name: "api_requests_total",
		Help: "HTTP API requests answered, by route pattern and status code.",
	}, []string{"route", "code"})
	m.apiDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "qcluster", Name: "api_request_duration_seconds",
		Help:    "HTTP API request durations by route pattern, without blocking queries and /v1/watch streams (they last as long as they wait).",
		Buckets: apiBuckets,
	}, []string{"route"})
	m.apiRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "qcluster", Name: "api_requests_refused_total",
		Help: "HTTP API requests that would change the cluster, refused before acting, by reason: cross_origin (sent by a web page of another origin), content_type (not Content-Type: application/json).",
	}, []string{"reason"})
	m.kvApply = histogram("kv_apply_seconds",
		"KV writes proposed on this peer: time from the proposal until this peer applied it (the write's latency).", kvApplyBuckets)
	for _, reason := range api.RefusedReasons() {
		m.apiRefused.WithLabelValues(reason) // present from the start, at 0
	}

	m.collectors = []prometheus.Collector{
		gauge("is_leader", "1 while this peer is the leader and holds the leader lease (IsLeader), else 0.",
			func() float64 { return b2f(c.IsLeader()) }),
		gauge("health_check_passing", "This peer's application health check (health_check): 1 while it passes or there is none, 0 while it fails (the peer is then no candidate for leadership).",
			func() float64 { return b2f(c.HealthPassing()) }),
		gauge("term", "The current Raft term.", func() float64 { return float64(c.Term()) }),
		gauge("lease_valid", "1 while this peer holds a valid leader lease, else 0.",
			func() float64 { return b2f(c.LeaseRemaining() > 0) }),
		gauge("lease_remaining_seconds", "How long this peer's leader lease remains valid without renewal; 0 without a lease.",
			func() float64 { return c.LeaseRemaining().Seconds() }),
		m.leaderChanges, m.electionsStarted, m.electionsWon, m.electionsLost,
		gauge("kv_revision", "The key-value store's revision on this peer (raised by every write that changes it).",
			func() float64 { rev, _, _ := c.KVStats(); return float64(rev) }),
		gauge("kv_keys", "Keys in the key-value store on this peer, QCluster's own (locks) included.",
			func() float64 { _, keys, _ := c.KVStats(); return float64(keys) }),
		gauge("kv_bytes", "Bytes of keys plus values in the key-value store on this peer (what the quota counts).",
			func() float64 { _, _, b := c.KVStats(); return float64(b) }),
		m.heartbeatRTT, m.commit, m.fsync, m.apiRequests, m.apiDuration, m.apiRefused, m.kvApply,
		&scrapeCollector{m: m},
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Register adds the metrics to the Registerer. On failure it registers
// nothing and explains how to share a registry.
func (m *Metrics) Register(identifier string) error {
	cs := m.collectors
	if m.own {
		cs = append(cs[:len(cs):len(cs)], collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, col := range cs {
		if err := m.reg.Register(col); err != nil {
			m.Unregister()
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
				return fmt.Errorf("qcluster: registering metrics: %w; give each peer of a process its own Registerer, "+
					"or wrap a shared one: prometheus.WrapRegistererWith(prometheus.Labels{\"peer\": %q}, reg)", err, identifier)
			}
			return fmt.Errorf("qcluster: registering metrics: %w", err)
		}
		m.registered = append(m.registered, col)
	}
	return nil
}

// Unregister removes what Register added (so a later peer of the process
// can register in the same Registerer).
func (m *Metrics) Unregister() {
	for _, col := range m.registered {
		m.reg.Unregister(col)
	}
	m.registered = nil
}

// Handler serves GET /metrics.
func (m *Metrics) Handler() http.Handler {
	if m.gatherer == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			api.WriteError(w, http.StatusNotFound, api.CodeNotFound,
				"this peer registers its metrics with the application's Registerer (Config.Registerer), "+
					"which is not a prometheus.Gatherer; the application serves them")
		})
	}
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{
		ErrorLog:      promLogger{m.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// promLogger logs promhttp's errors (a collector failing) as warnings.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) { p.l.Warn(fmt.Sprint(v...), "component", "metrics") }

// Hooks are the consensus core's metric callbacks; they run on the node
// goroutine.
func (m *Metrics) Hooks() consensus.Hooks {
	return consensus.Hooks{
		RoleChanged: m.roleChanged,
		LeaseRound:  func(d time.Duration) { m.heartbeatRTT.Observe(d.Seconds()) },
		Committed:   func(d time.Duration) { m.commit.Observe(d.Seconds()) },
	}
}

// roleChanged counts elections: one starts when a peer leaves the follower
// role, and ends won (leader) or lost (follower). The core sees roles once
// per Ready, so a follower may appear to become leader at once.
func (m *Metrics) roleChanged(from, to consensus.Role) {
	campaigning := func(r consensus.Role) bool { return r == consensus.PreCandidate || r == consensus.Candidate }
	switch {
	case campaigning(to):
		if !campaigning(from) {
			m.electionsStarted.Inc()
		}
	case to == consensus.Leader:
		if !campaigning(from) {
			m.electionsStarted.Inc()
		}
		m.electionsWon.Inc()
	case to == consensus.Follower && campaigning(from):
		m.electionsLost.Inc()
	}
}

// ObserveView counts a new leadership: a leader and term this peer had not
// seen last. It runs on the node goroutine at every tick: two comparisons.
func (m *Metrics) ObserveView(v consensus.View) {
	if v.Lead != 0 && (v.Lead != m.lastLead || v.Term != m.lastTerm) {
		m.lastLead, m.lastTerm = v.Lead, v.Term
		m.leaderChanges.Inc()
	}
}

// ObserveKVApply records a KV write's latency, proposal to applied.
func (m *Metrics) ObserveKVApply(d time.Duration) { m.kvApply.Observe(d.Seconds()) }

// ObserveFsync records one durable write.
func (m *Metrics) ObserveFsync(d time.Duration) { m.fsync.Observe(d.Seconds()) }

// ObserveRequest records one API request.
func (m *Metrics) ObserveRequest(ri api.RequestInfo) {
	m.apiRequests.WithLabelValues(ri.Route, codeLabel(ri.Code)).Inc()
	if ri.Refused != "" {
		m.apiRefused.WithLabelValues(ri.Refused).Inc()
	}
	if !ri.Waited {
		m.apiDuration.WithLabelValues(ri.Route).Observe(ri.Duration.Seconds())
	}
}

// codeLabel formats an HTTP status code without allocating for the codes
// the API sends.
func codeLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 405:
		return "405"
	case 409:
		return "409"
	case 413:
		return "413"
	case 415:
		return "415"
	case 500:
		return "500"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.Itoa(code)
}

// scrapeCollector reads, at scrape time, what other packages count: raft
// messages by type (transport), messages dropped at the node's inbox, and
// the members the leader replicates to.
type scrapeCollector struct{ m *Metrics }

var (
	raftSentDesc = prometheus.NewDesc("qcluster_raft_messages_sent_total",
		"Raft messages written to peers' connections, by message type.", []string{"type"}, nil)
	raftReceivedDesc = prometheus.NewDesc("qcluster_raft_messages_received_total",
		"Raft messages received from peers, by message type.", []string{"type"}, nil)
	raftDroppedDesc = prometheus.NewDesc("qcluster_raft_messages_dropped_total",
		"Raft messages dropped by the transport (peer unreachable or unknown, queue full, failed write, oversized), by message type.",
		[]string{"type"}, nil)
	inboxDroppedDesc = prometheus.NewDesc("qcluster_raft_inbox_dropped_total",
		"Received raft messages dropped because the election core's inbox was full.", nil, nil)
	replicatingDesc = prometheus.NewDesc("qcluster_raft_members_replicating",
		"Leader only: members raft is replicating to, the leader included.", nil, nil)
	membersKnownDesc = prometheus.NewDesc("qcluster_members_known",
		"Members this peer knows of: leader mode, the members of the registry (voters and learners); masterless, every member gossip knows, including those that failed or left within the last hour.", nil, nil)
	membersAliveDesc = prometheus.NewDesc("qcluster_members_alive",
		"Known members that gossip reports alive (this peer included).", nil, nil)
	membersSuspectDesc = prometheus.NewDesc("qcluster_members_suspect",
		"Known members that gossip suspects (a probe failed; not yet declared dead).", nil, nil)
	membersCheckDesc = prometheus.NewDesc("qcluster_members_check",
		"Known members by the state of their application health check (health_check), as gossip carries it: passing, failing (no candidate for leadership), none (no check).",
		[]string{"check"}, nil)
	membersDeadDesc = prometheus.NewDesc("qcluster_members_dead",
		"Known members that gossip declared dead.", nil, nil)
	membersLeftDesc = prometheus.NewDesc("qcluster_members_left",
		"Known members that left gracefully (masterless: within the last hour).", nil, nil)
	muxConnsDesc = prometheus.NewDesc("qcluster_mux_connections_total",
		"TCP connections accepted on the peer's port.", nil, nil)
	muxRefusedDesc = prometheus.NewDesc("qcluster_mux_refused_total",
		"Connections the port closed before routing them, by reason: conn_limit (max_conns_per_ip), timeout (no TLS handshake or first bytes in time), plaintext (not TLS while TLS is on), handshake (TLS handshake failed: wrong CA, expired certificate...), unauthenticated (no client certificate).",
		[]string{"reason"}, nil)
	raftRefusedDesc = prometheus.NewDesc("qcluster_raft_streams_refused_total",
		"Raft streams refused or broken, by reason: bad_hello, wrong_node, wrong_cluster, unauthenticated, wrong_identity (the certificate names another peer than the hello claims), frame_too_large, bad_snapshot (a snapshot's frames out of sequence, past their announced size, over the snapshot memory limit, or stalled), stalled, bad_message, dial_failed.",
		[]string{"reason"}, nil)
	raftMsgRefusedDesc = prometheus.NewDesc("qcluster_raft_messages_refused_total",
		"Raft messages from peers that the election core refused, by reason: type (a type peers do not exchange: raft's local messages, MsgForgetLeader, MsgTransferLeader, MsgReadIndex...), non_member (sender outside this peer's configuration), proposal (a forwarded proposal that is not the sender's own metadata, or that reached a peer not leading), timeout_now (MsgTimeoutNow not from the current leader), panic (raft panicked on it; its stream is closed).",
		[]string{"reason"}, nil)
	gossipRejectedDesc = prometheus.NewDesc("qcluster_gossip_packets_rejected_total",
		"Gossip packets dropped: wrong cluster label, or not decryptable with the gossip keys.", nil, nil)
	gossipSecondaryDesc = prometheus.NewDesc("qcluster_gossip_secondary_key_packets_total",
		"Gossip packets that decrypted only with a key other than the primary one (a key rotation in progress).", nil, nil)
	gossipStreamsRefusedDesc = prometheus.NewDesc("qcluster_gossip_streams_refused_total",
		"Gossip and metadata streams refused (no valid certificate of this cluster, or over the limit).", nil, nil)
	streamEndsDesc = prometheus.NewDesc("qcluster_raft_stream_ends_total",
		"Inbound raft streams that ended, by how: goodbye (closed deliberately), reset, eof (a clean end without a goodbye, what a dead process's kernel sends).", []string{"how"}, nil)
	goneProbesDesc = prometheus.NewDesc("qcluster_raft_gone_probes_total",
		"Connects made after a stream ended without a goodbye, by result: refused (the peer's process is gone), accepted (its port is alive), failed.", []string{"result"}, nil)
	goneReportsDesc = prometheus.NewDesc("qcluster_leader_gone_reports_total",
		"Proofs that a peer's process is gone, by what the election core did: taken (evidence about its leader: a fail-over without waiting for the election timeout), ignored.", []string{"result"}, nil)
	stallsDesc = prometheus.NewDesc("qcluster_stalls_total",
		"Wakes of the election core taken for a stall: more than two ticks after they were due, the first of a run of late wakes; its process, or its machine, could not run. The time it could not run is not counted as anyone's silence (no election, no step-down for it).", nil, nil)
	certExpiryDesc = prometheus.NewDesc("qcluster_tls_cert_expiry_timestamp_seconds",
		"When this peer's TLS certificate expires (Unix time); absent without TLS.", nil, nil)
)

// membersAliveTimeout bounds how long a scrape waits for the node goroutine
// to count the members it replicates to.
const membersAliveTimeout = time.Second

// collectSecurity exports the refusal counters of the port, the raft
// transport and the gossip, how raft streams ended and the proofs of a
// peer's death they gave, and the certificate's expiry.
func (sc *scrapeCollector) collectSecurity(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	r := sc.m.src.Parts()
	if mux := r.Mux; mux != nil {
		st := mux.Stats()
		counter(muxConnsDesc, st.Accepted)
		counter(muxRefusedDesc, st.ConnLimited, "conn_limit")
		counter(muxRefusedDesc, st.Timeouts, "timeout")
		counter(muxRefusedDesc, st.PlainText, "plaintext")
		counter(muxRefusedDesc, st.HandshakeFailed, "handshake")
		counter(muxRefusedDesc, st.Unauthenticated, "unauthenticated")
	}
	if tr := r.Transport; tr != nil {
		r := tr.Refusals()
		for _, x := range []struct {
			reason string
			n      uint64
		}{
			{"bad_hello", r.BadHello}, {"wrong_node", r.WrongNode}, {"wrong_cluster", r.WrongCluster},
			{"unauthenticated", r.Unauthenticated}, {"wrong_identity", r.WrongIdentity},
			{"frame_too_large", r.FrameTooLarge}, {"bad_snapshot", r.BadSnapshot}, {"stalled", r.Stalled}, {"bad_message", r.BadMessage},
			{"dial_failed", r.DialFailed},
		} {
			counter(raftRefusedDesc, x.n, x.reason)
		}
		e := tr.StreamEnds()
		counter(streamEndsDesc, e.Goodbyes, "goodbye")
		counter(streamEndsDesc, e.Resets, "reset")
		counter(streamEndsDesc, e.EOFs, "eof")
		counter(goneProbesDesc, e.ProbesRefused, "refused")
		counter(goneProbesDesc, e.ProbesAccepted, "accepted")
		counter(goneProbesDesc, e.ProbesFailed, "failed")
	}
	if node := r.Node; node != nil {
		taken, ignored := node.GoneReports()
		counter(goneReportsDesc, taken, "taken")
		counter(goneReportsDesc, ignored, "ignored")
		counter(stallsDesc, node.Stalls())
	}
	if g := r.Gossip; g != nil {
		st := g.Stats()
		counter(gossipRejectedDesc, st.RejectedPackets)
		counter(gossipSecondaryDesc, st.SecondaryKeyPackets)
		counter(gossipStreamsRefusedDesc, st.RefusedStreams)
	}
	if t, ok := sc.m.src.CertNotAfter(); ok {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(t.Unix()))
	}
}

func (sc *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- raftSentDesc
	ch <- raftReceivedDesc
	ch <- raftDroppedDesc
	ch <- inboxDroppedDesc
	ch <- replicatingDesc
	ch <- membersKnownDesc
	ch <- membersAliveDesc
	ch <- membersSuspectDesc
	ch <- membersDeadDesc
	ch <- membersCheckDesc
	ch <- membersLeftDesc
	ch <- muxConnsDesc
	ch <- muxRefusedDesc
	ch <- raftRefusedDesc
	ch <- raftMsgRefusedDesc
	ch <- streamEndsDesc
	ch <- goneProbesDesc
	ch <- goneReportsDesc
	ch <- stallsDesc
	ch <- gossipRejectedDesc
	ch <- gossipSecondaryDesc
	ch <- gossipStreamsRefusedDesc
	ch <- certExpiryDesc
}

func (sc *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	ms := sc.m.src.Members()
	for check, n := range ms.Check {
		ch <- prometheus.MustNewConstMetric(membersCheckDesc, prometheus.GaugeValue, float64(n), check)
	}
	ch <- prometheus.MustNewConstMetric(membersKnownDesc, prometheus.GaugeValue, float64(ms.Known))
	ch <- prometheus.MustNewConstMetric(membersAliveDesc, prometheus.GaugeValue, float64(ms.Alive))
	ch <- prometheus.MustNewConstMetric(membersSuspectDesc, prometheus.GaugeValue, float64(ms.Suspect))
	ch <- prometheus.MustNewConstMetric(membersDeadDesc, prometheus.GaugeValue, float64(ms.Dead))
	ch <- prometheus.MustNewConstMetric(membersLeftDesc, prometheus.GaugeValue, float64(ms.Left))
	sc.collectSecurity(ch)
	r := sc.m.src.Parts()
	if tr := r.Transport; tr != nil {
		tr.ForEachType(func(typ raftpb.MessageType, s transport.Stats) {
			name := "other"
			if typ != transport.OtherTypes {
				name = typ.String()
			}
			ch <- prometheus.MustNewConstMetric(raftSentDesc, prometheus.CounterValue, float64(s.Sent), name)
			ch <- prometheus.MustNewConstMetric(raftReceivedDesc, prometheus.CounterValue, float64(s.Received), name)
			ch <- prometheus.MustNewConstMetric(raftDroppedDesc, prometheus.CounterValue, float64(s.Dropped), name)
		})
	}
	node := r.Node
	if node == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(inboxDroppedDesc, prometheus.CounterValue, float64(node.Dropped()))
	for r := range consensus.NumRefusals {
		ch <- prometheus.MustNewConstMetric(raftMsgRefusedDesc, prometheus.CounterValue, float64(node.Refused(r)), r.String())
	}
	if !sc.m.src.Leading() {
		return // only a leader knows whom it replicates to
	}
	ctx, cancel := context.WithTimeout(context.Background(), membersAliveTimeout)
	defer cancel()
	alive := 0
	if err := node.Do(ctx, func(core *consensus.Core) error { alive = core.Replicating(); return nil }); err == nil && alive > 0 {
		ch <- prometheus.MustNewConstMetric(replicatingDesc, prometheus.GaugeValue, float64(alive))
	}
}
