// Package testpeers starts in-process QCluster peers on loopback, for the
// tests of packages built on the SDK (the client, the CLI). Ports come from
// the OS; every peer is closed when the test ends.
package testpeers

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
)

// Peers is a running test cluster. Peers[i] is nil while peer i is stopped.
type Peers struct {
	t       testing.TB
	Configs []qcluster.Config
	Peers   []*qcluster.Cluster
}

// Start starts n peers named p0, p1, ... on OS-chosen loopback ports. Peer
// i has metadata {"server_port": 8000+i}, its own temporary data dir and a
// logger that discards; opts adjust every config before it starts.
func Start(t testing.TB, n int, opts ...func(*qcluster.Config)) *Peers {
	t.Helper()
	p := &Peers{t: t, Peers: make([]*qcluster.Cluster, n)}
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	port := func(i int) int { return lns[i].Addr().(*net.TCPAddr).Port }
	meta := func(i int) map[string]any { return map[string]any{"server_port": float64(8000 + i)} }
	for i := range n {
		cfg := qcluster.DefaultConfig()
		cfg.Identifier = fmt.Sprintf("p%d", i)
		cfg.ListenPort = port(i)
		cfg.Metadata = meta(i)
		cfg.DataDir = t.TempDir()
		cfg.Logger = slog.New(slog.DiscardHandler)
		for j := range n {
			if j != i {
				cfg.Peers = append(cfg.Peers, qcluster.PeerConfig{
					Host: "127.0.0.1", Port: port(j), Identifier: fmt.Sprintf("p%d", j), Metadata: meta(j)})
			}
		}
		for _, o := range opts {
			o(&cfg)
		}
		p.Configs = append(p.Configs, cfg)
	}
	t.Cleanup(func() {
		for i := range p.Peers {
			if p.Peers[i] != nil {
				p.Stop(i)
			}
		}
	})
	// Start the founders at the same time, as a real cluster's do: a new
	// peer asks its configured peers whether a cluster runs already.
	cs := make([]*qcluster.Cluster, n)
	for i := range n {
		cfg := p.Configs[i]
		cfg.Listener = lns[i]
		c, err := qcluster.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Start(context.Background())
		}()
	}
	wg.Wait()
	for i, c := range cs {
		if errs[i] != nil {
			for _, c := range cs {
				c.Close()
			}
			t.Fatalf("start p%d: %v", i, errs[i])
		}
		p.Peers[i] = c
	}
	return p
}

// StartPeer starts peer i on ln, or, when ln is nil, on its port again
// (retrying briefly while the kernel releases it).
func (p *Peers) StartPeer(i int, ln net.Listener) {
	p.t.Helper()
	cfg := p.Configs[i]
	if ln == nil {
		var err error
		deadline := time.Now().Add(5 * time.Second)
		for {
			if ln, err = net.Listen("tcp", cfg.Addr()); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			p.t.Fatalf("relisten %s: %v", cfg.Addr(), err)
		}
	}
	cfg.Listener = ln
	c, err := qcluster.New(cfg)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		p.t.Fatal(err)
	}
	p.Peers[i] = c
}

// Stop closes peer i.
func (p *Peers) Stop(i int) {
	p.t.Helper()
	if err := p.Peers[i].Close(); err != nil {
		p.t.Errorf("close p%d: %v", i, err)
	}
	p.Peers[i] = nil
}

// Addr returns peer i's host:port.
func (p *Peers) Addr(i int) string { return p.Configs[i].Addr() }

// WithToken sets the API token of every peer.
func WithToken(token string) func(*qcluster.Config) {
	return func(c *qcluster.Config) { c.APIToken = token }
}
