//go:build multihost && linux

package multihost

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The writer's pace and time-outs. One write at a time, at most one every
// writePace: enough keys to cover every instant of a fault, few enough to
// read each back from every peer in a second or two.
const (
	writePace    = 10 * time.Millisecond
	writeTimeout = time.Second // a PUT not answered by then has an unknown outcome
	readTimeout  = 2 * time.Second
)

// outcome is what became of one PUT.
type outcome int

const (
	acked   outcome = iota // 200: the write must be read back
	unknown                // sent, no answer (time-out, connection lost): either way
	refused                // an error answer, or the connection was refused
)

// write is one PUT of the writer: a key written once, with a value of its
// own.
type write struct {
	key, value string
	peer       int
	out        outcome
	why        string        // for a refused or unknown write: the answer or error
	took       time.Duration // from the request to the answer
}

// kvWriter PUTs prefix+"0", prefix+"1", ... with distinct values, one at a
// time, to the agents in turn (so a write that fails goes to another agent
// next, and writes reach the leader both directly and through followers).
// Every key is written once: a write whose outcome is unknown is not
// retried, so each key has one value that it may hold.
type kvWriter struct {
	c       *cluster
	prefix  string
	nonce   string
	clients []*http.Client
	stop    chan struct{}
	done    chan struct{}

	mu     sync.Mutex
	writes []write
}

// withWriter runs body with a writer PUTting keys under "w/<name>/" to
// the agents, then, once body has let the cluster settle, stops it and
// reads every acknowledged write back from every running agent
// (linearizable GETs): each must be there with its value.
func withWriter(name string, body func(*scen)) func(*scen) {
	return func(s *scen) {
		w := newKVWriter(s.c, "w/"+name+"/")
		defer w.close()
		go w.run()
		body(s)
		w.halt()
		s.stable()
		w.verify(s)
	}
}

func newKVWriter(c *cluster, prefix string) *kvWriter {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	w := &kvWriter{c: c, prefix: prefix, nonce: hex.EncodeToString(b), stop: make(chan struct{}), done: make(chan struct{})}
	for range c.agents {
		w.clients = append(w.clients, &http.Client{
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         c.dialer.DialContext,
				MaxIdleConnsPerHost: 4,
				IdleConnTimeout:     time.Minute,
				DisableCompression:  true,
			},
		})
	}
	return w
}

// url returns agent i's API URL for path.
func (w *kvWriter) url(i int, path string) string {
	return strings.TrimSuffix(w.c.mon.urls[i], "/v1/status") + path
}

func (w *kvWriter) run() {
	defer close(w.done)
	tick := time.NewTicker(writePace)
	defer tick.Stop()
	peer := 0
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		key := fmt.Sprintf("%s%d", w.prefix, n)
		wr := w.put(peer, key, fmt.Sprintf("%s #%d %s", key, n, w.nonce))
		w.mu.Lock()
		w.writes = append(w.writes, wr)
		w.mu.Unlock()
		peer = (peer + 1) % len(w.clients)
		select {
		case <-tick.C:
		case <-w.stop:
			return
		}
	}
}

// put sends PUT /v1/kv/key to agent i and classifies the outcome.
func (w *kvWriter) put(i int, key, value string) write {
	wr := write{key: key, value: value, peer: i}
	body, _ := json.Marshal(map[string]string{"value": base64.StdEncoding.EncodeToString([]byte(value))})
	req, err := http.NewRequest(http.MethodPut, w.url(i, "/v1/kv/"+key), bytes.NewReader(body))
	if err != nil {
		panic(err) // the URL is ours
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	hc := *w.clients[i]
	hc.Timeout = writeTimeout
	resp, err := hc.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if err == nil {
			wr.took = time.Since(start)
			if resp.StatusCode == http.StatusOK {
				wr.out = acked
				return wr
			}
			wr.out, wr.why = refused, fmt.Sprintf("%d %s", resp.StatusCode, errorCode(b))
			return wr
		}
	}
	wr.took = time.Since(start)
	w.clients[i].CloseIdleConnections()
	if errors.Is(err, syscall.ECONNREFUSED) {
		wr.out, wr.why = refused, "connection refused"
		return wr
	}
	wr.out, wr.why = unknown, failKind(err)
	return wr
}

// errorCode returns the code of an API error answer, or its start.
func errorCode(b []byte) string {
	var e struct {
		Code string `json:"code"`
	}
	if json.Unmarshal(b, &e) == nil && e.Code != "" {
		return e.Code
	}
	return string(b[:min(len(b), 80)])
}

// halt stops the writer and waits for its last write.
func (w *kvWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *kvWriter) close() {
	w.halt()
	for _, hc := range w.clients {
		hc.CloseIdleConnections()
	}
}

// kvGet is a GET /v1/kv/... answer.
type kvGet struct {
	Revision uint64 `json:"revision"`
	KVs      []struct {
		Key   string `json:"key"`
		Value []byte `json:"value"` // base64 in JSON
	} `json:"kvs"`
}

// get reads path from agent i (linearizable), retrying a 503 (no leader
// yet) until readTimeout. It returns the HTTP status and the answer.
func (w *kvWriter) get(i int, path string) (int, kvGet, error) {
	deadline := time.Now().Add(readTimeout)
	for {
		var g kvGet
		hc := *w.clients[i]
		hc.Timeout = readTimeout
		resp, err := hc.Get(w.url(i, path))
		if err != nil {
			return 0, g, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		switch {
		case err != nil:
			return 0, g, err
		case resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline):
			time.Sleep(20 * time.Millisecond) // retry pace, while a leader is confirmed
			continue
		case resp.StatusCode != http.StatusOK:
			return resp.StatusCode, g, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, errorCode(b))
		}
		return resp.StatusCode, g, json.Unmarshal(b, &g)
	}
}

// verify reads every acknowledged write back from every running agent and
// fails the scenario if one is missing or has another value; a key under
// the prefix with a value that no write gave it fails it too. It logs the
// counts and the write latency.
func (w *kvWriter) verify(s *scen) {
	c, t := s.c, s.t
	w.mu.Lock()
	writes := slices.Clone(w.writes)
	w.mu.Unlock()
	var lat []time.Duration
	count := map[outcome]int{}
	why := map[string]int{}
	byKey := map[string]write{}
	for _, wr := range writes {
		count[wr.out]++
		byKey[wr.key] = wr
		if wr.out == acked {
			lat = append(lat, wr.took)
		} else {
			why[wr.why]++
		}
	}
	if count[acked] == 0 {
		t.Errorf("writer: no write was acknowledged (%d sent: %v)", len(writes), why)
		return
	}
	start := time.Now()
	bad, landed := 0, map[string]bool{}
	for i := range c.agents {
		if !c.running(i) {
			continue
		}
		for _, wr := range writes {
			if wr.out != acked {
				continue
			}
			code, g, err := w.get(i, "/v1/kv/"+wr.key)
			switch {
			case code == http.StatusNotFound:
				t.Errorf("writer: %s acknowledged by %s is missing on %s", wr.key, c.names[wr.peer], c.names[i])
				bad++
			case err != nil:
				t.Errorf("writer: reading %s back from %s: %v", wr.key, c.names[i], err)
				bad++
			case len(g.KVs) != 1 || g.KVs[0].Key != wr.key || string(g.KVs[0].Value) != wr.value:
				t.Errorf("writer: %s acknowledged by %s with %q reads back from %s as %+v", wr.key, c.names[wr.peer], wr.value, c.names[i], g.KVs)
				bad++
			}
			if bad >= 10 {
				t.Fatalf("writer: giving up after %d bad read-backs", bad)
			}
		}
		// Every key under the prefix: written by the writer, with its
		// value (a write with an unknown outcome may or may not be there).
		_, g, err := w.get(i, "/v1/kv/"+w.prefix+"?prefix")
		if err != nil {
			t.Errorf("writer: listing %s on %s: %v", w.prefix, c.names[i], err)
			continue
		}
		for _, kv := range g.KVs {
			wr, ok := byKey[kv.Key]
			switch {
			case !ok:
				t.Errorf("writer: %s lists %s, which was never written", c.names[i], kv.Key)
			case string(kv.Value) != wr.value:
				t.Errorf("writer: %s lists %s = %q, written as %q", c.names[i], kv.Key, kv.Value, wr.value)
			case wr.out != acked:
				landed[kv.Key] = true
			}
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	s.r.note("writer: %d writes: %d acknowledged (all read back from every peer: %v), %d unknown (%d of them landed), %d refused; not acknowledged: %v; write latency p50 %v, p99 %v, max %v; read-back took %v",
		len(writes), count[acked], bad == 0, count[unknown], len(landed), count[refused], why,
		pct(0.50), pct(0.99), lat[len(lat)-1].Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
