// Command load is bench/kv's load generator: closed-loop clients that put
// or read keys on one system for a while, and a JSON summary of what they
// measured on stdout. It is its own module so that the main module does
// not depend on etcd's client: bench/kv builds and runs it, once per
// system and load, so both systems are driven by the same program through
// their native clients (etcd: go.etcd.io/etcd/client/v3 over gRPC;
// QCluster: its HTTP API, which is what its Go client speaks).
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Result is the summary printed on stdout (bench/kv parses it).
type Result struct {
	Ops       int     `json:"ops"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50us     int64   `json:"p50_us"`
	P99us     int64   `json:"p99_us"`
	MaxUs     int64   `json:"max_us"`
}

// op does client c's i-th operation: a put, or a linearizable read.
type op func(ctx context.Context, put bool, c, i int) error

func main() {
	system := flag.String("system", "", "qcluster or etcd")
	endpoint := flag.String("endpoint", "", "qcluster: the leader's API base URL (http://host:port); etcd: the leader's client URL")
	kind := flag.String("op", "put", "put, or get (linearizable reads of keys put first)")
	clients := flag.Int("clients", 1, "concurrent clients, each with its own connection")
	duration := flag.Duration("duration", 5*time.Second, "how long the clients run")
	warmup := flag.Duration("warmup", time.Second, "load before measuring (not counted)")
	size := flag.Int("value-size", 100, "value size in bytes")
	keys := flag.Int("keys", 1000, "distinct keys per client")
	flag.Parse()
	if err := run(*system, *endpoint, *kind, *clients, *duration, *warmup, *size, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(system, endpoint, kind string, clients int, duration, warmup time.Duration, size, keys int) error {
	if clients < 1 || size < 0 || keys < 1 {
		return errors.New("-clients and -keys must be at least 1, -value-size at least 0")
	}
	value := bytes.Repeat([]byte("v"), size)
	key := func(c, i int) string { return fmt.Sprintf("bench/%d/%d", c, i%keys) }
	var do op
	var closeAll func()
	switch system {
	case "etcd":
		cs := make([]*clientv3.Client, clients)
		for c := range cs {
			cl, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
			if err != nil {
				return err
			}
			cs[c] = cl
		}
		closeAll = func() {
			for _, cl := range cs {
				cl.Close()
			}
		}
		do = func(ctx context.Context, put bool, c, i int) error {
			if put {
				_, err := cs[c].Put(ctx, key(c, i), string(value))
				return err
			}
			r, err := cs[c].Get(ctx, key(c, i)) // linearizable by default
			if err == nil && len(r.Kvs) != 1 {
				err = fmt.Errorf("get %s: %d keys", key(c, i), len(r.Kvs))
			}
			return err
		}
	case "qcluster":
		base := strings.TrimRight(endpoint, "/")
		body, _ := json.Marshal(map[string]string{"value": base64.StdEncoding.EncodeToString(value)})
		cs := make([]*http.Client, clients)
		for c := range cs {
			cs[c] = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true}}
		}
		closeAll = func() {
			for _, cl := range cs {
				cl.CloseIdleConnections()
			}
		}
		do = func(ctx context.Context, put bool, c, i int) error {
			method, rd := http.MethodGet, io.Reader(nil)
			if put {
				method, rd = http.MethodPut, bytes.NewReader(body)
			}
			req, err := http.NewRequestWithContext(ctx, method, base+"/v1/kv/"+key(c, i), rd)
			if err != nil {
				return err
			}
			if rd != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := cs[c].Do(req)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s %s: %s: %s", method, key(c, i), resp.Status, bytes.TrimSpace(b))
			}
			return nil
		}
	default:
		return fmt.Errorf("-system %q: want qcluster or etcd", system)
	}
	defer closeAll()

	ctx := context.Background()
	put := kind == "put"
	switch kind {
	case "put":
	case "get":
		// Every key a reader reads exists.
		keys = min(keys, 100)
		for c := range clients {
			for i := range keys {
				if err := do(ctx, true, c, i); err != nil {
					return fmt.Errorf("preparing the keys: %w", err)
				}
			}
		}
	default:
		return fmt.Errorf("-op %q: want put or get", kind)
	}

	var (
		mu     sync.Mutex
		lats   []time.Duration
		errs   int
		first  string
		wg     sync.WaitGroup
		start  = time.Now()
		begin  = start.Add(warmup)
		end    = begin.Add(duration)
		counts = make([]int, clients)
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; ; i++ {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := do(rctx, put, c, i)
				cancel()
				d := time.Since(t0)
				if t0.Before(begin) {
					continue
				}
				if err != nil {
					mu.Lock()
					if errs++; first == "" {
						first = err.Error()
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lats = append(lats, mine...)
			counts[c] = len(mine)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lats)
	r := Result{Ops: len(lats), Errors: errs, FirstErr: first, Seconds: duration.Seconds()}
	r.OpsPerSec = float64(r.Ops) / r.Seconds
	if n := len(lats); n > 0 {
		r.P50us = pct(lats, 50).Microseconds()
		r.P99us = pct(lats, 99).Microseconds()
		r.MaxUs = lats[n-1].Microseconds()
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// pct is the p-th percentile of sorted ds (nearest rank).
func pct(ds []time.Duration, p float64) time.Duration {
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}
