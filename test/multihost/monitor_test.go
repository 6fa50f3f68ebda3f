//go:build multihost && linux

package multihost

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// status is the part of an agent's GET /v1/status answer the monitor reads
// (api.Status).
type status struct {
	Identifier string `json:"identifier"`
	Role       string `json:"role"`
	Term       uint64 `json:"term"`
	Leader     *struct {
		Identifier string `json:"identifier"`
	} `json:"leader"`
	IsLeader         bool     `json:"is_leader"`
	LeaseRemainingMS float64  `json:"lease_remaining_ms"`
	Index            uint64   `json:"index"`
	Voters           []string `json:"voters"`
}

// leader returns the identifier of the leader the peer names, or "".
func (s *status) leader() string {
	if s.Leader == nil {
		return ""
	}
	return s.Leader.Identifier
}

// sample is one GET /v1/status of one peer. The peer's answer was true at
// some instant between sent and recv (monitor times).
type sample struct {
	peer       int
	sent, recv time.Duration
	ok         bool   // the peer answered; st is its status
	fail       string // why not: "refused", "timeout" or another error
	st         status
}

// Time-out of one status request. Short, so that a request caught by a
// SIGSTOP is dropped rather than answered (and counted) long after.
const requestTimeout = 200 * time.Millisecond

// monitor samples every peer's status on its own schedule, one goroutine
// per peer, and keeps every sample. Times are monitor times: the monotonic
// time since the monitor started.
type monitor struct {
	base    time.Time
	period  time.Duration
	urls    []string
	clients []*http.Client
	stop    chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	samples [][]sample // per peer, in order
	latest  []sample   // per peer
	changed chan struct{}
}

// newMonitor starts sampling http://addrs[i]/v1/status every period, dialing
// with dial.
func newMonitor(dial func(context.Context, string, string) (net.Conn, error), addrs []string, period time.Duration) *monitor {
	m := &monitor{
		base:    time.Now(),
		period:  period,
		stop:    make(chan struct{}),
		samples: make([][]sample, len(addrs)),
		latest:  make([]sample, len(addrs)),
		changed: make(chan struct{}),
	}
	for i, a := range addrs {
		m.urls = append(m.urls, "http://"+a+"/v1/status")
		m.clients = append(m.clients, &http.Client{
			Timeout: requestTimeout,
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         dial,
				MaxIdleConns:        1,
				MaxIdleConnsPerHost: 1,
				MaxConnsPerHost:     1,
				IdleConnTimeout:     time.Minute,
				DisableCompression:  true,
			},
		})
		m.latest[i] = sample{peer: i}
	}
	for i := range addrs {
		m.wg.Add(1)
		go m.run(i)
	}
	return m
}

// now returns the monitor time.
func (m *monitor) now() time.Duration { return time.Since(m.base) }

func (m *monitor) run(i int) {
	defer m.wg.Done()
	tick := time.NewTicker(m.period)
	defer tick.Stop()
	for {
		s := m.sampleOnce(i)
		m.mu.Lock()
		m.samples[i] = append(m.samples[i], s)
		m.latest[i] = s
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
		select {
		case <-tick.C:
		case <-m.stop:
			return
		}
	}
}

func (m *monitor) sampleOnce(i int) sample {
	s := sample{peer: i}
	req, err := http.NewRequest(http.MethodGet, m.urls[i], nil)
	if err != nil {
		panic(err) // the URL is ours
	}
	s.sent = m.now()
	resp, err := m.clients[i].Do(req)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			err = json.Unmarshal(body, &s.st)
			s.ok = err == nil && s.st.Identifier != ""
		}
	}
	s.recv = m.now()
	if !s.ok {
		s.fail = failKind(err)
		s.st = status{}
		m.clients[i].CloseIdleConnections()
	}
	return s
}

// failKind names why a request got no status.
func failKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "bad answer"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}

// close stops sampling.
func (m *monitor) close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	m.wg.Wait()
	for _, c := range m.clients {
		c.CloseIdleConnections()
	}
}

// waitUntil waits until cond holds for the latest sample of every peer,
// re-checking at every new sample, or until the monitor time deadline. It
// returns the monitor time at which cond held. cond runs with the monitor
// locked and must not keep latest.
func (m *monitor) waitUntil(deadline time.Duration, cond func(latest []sample) bool) (time.Duration, bool) {
	return m.waitHeld(deadline, 0, cond)
}

// waitHeld is waitUntil for a condition that must hold without a break for
// at least hold; it returns the time at which it started to hold.
func (m *monitor) waitHeld(deadline, hold time.Duration, cond func(latest []sample) bool) (time.Duration, bool) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	since := time.Duration(-1)
	for {
		m.mu.Lock()
		ok := cond(m.latest)
		ch := m.changed
		m.mu.Unlock()
		now := m.now()
		switch {
		case !ok:
			since = -1
		case since < 0:
			since = now
		}
		if since >= 0 && now-since >= hold {
			return since, true
		}
		if now >= deadline {
			return 0, false
		}
		timer.Reset(deadline - now)
		select {
		case <-ch:
		case <-timer.C:
		}
	}
}

// firstTrue replays every sample in the order the answers arrived and
// returns the arrival time of the first sample, at or after from, after
// which cond held for the latest sample of every peer: the instant a state
// was first observed, whenever the test got round to look for it.
func (m *monitor) firstTrue(from time.Duration, cond func(latest []sample) bool) (time.Duration, bool) {
	m.mu.Lock()
	var all []sample
	for _, ps := range m.samples {
		all = append(all, ps...)
	}
	m.mu.Unlock()
	slices.SortStableFunc(all, func(a, b sample) int { return cmp.Compare(a.recv, b.recv) })
	latest := make([]sample, len(m.latest))
	for i := range latest {
		latest[i].peer = i
	}
	for _, s := range all {
		latest[s.peer] = s
		if s.recv >= from && cond(latest) {
			return s.recv, true
		}
	}
	return 0, false
}

// latestOf returns a copy of the latest sample of peer i.
func (m *monitor) latestOf(i int) sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.latest[i]
}

// window returns every sample sent in [from, to), all peers, in the order
// they were sent.
func (m *monitor) window(from, to time.Duration) []sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []sample
	for _, ps := range m.samples {
		for _, s := range ps {
			if s.sent >= from && s.sent < to {
				out = append(out, s)
			}
		}
	}
	sortBySent(out)
	return out
}

// transitions renders, per sample that differs from the peer's previous
// one, what the peer said: a readable trace of a window.
func transitions(ss []sample, names []string, origin time.Duration) string {
	var b strings.Builder
	prev := map[int]string{}
	for _, s := range ss {
		var desc string
		if !s.ok {
			desc = "no answer"
		} else {
			desc = fmt.Sprintf("%s term=%d leader=%q is_leader=%v", s.st.Role, s.st.Term, s.st.leader(), s.st.IsLeader)
			if s.st.IsLeader {
				desc += fmt.Sprintf(" lease=%.0fms", s.st.LeaseRemainingMS)
			}
		}
		key := desc
		if s.st.IsLeader {
			key = fmt.Sprintf("%s term=%d leader", s.st.Role, s.st.Term)
		}
		if prev[s.peer] == key {
			continue
		}
		prev[s.peer] = key
		fmt.Fprintf(&b, "    %+9.1fms .. %+9.1fms  %-4s %s\n", ms(s.sent-origin), ms(s.recv-origin), names[s.peer], desc)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
