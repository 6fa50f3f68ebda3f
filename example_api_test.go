package qcluster_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/qcluster/qcluster"
)

// Peers lists the configured members, this peer included, with their
// metadata: what GET /v1/peers and `qcluster peers` show.
func ExampleCluster_Peers() {
	dir, err := os.MkdirTemp("", "qcluster-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	cfg := qcluster.DefaultConfig()
	cfg.Identifier = "server_a"
	cfg.Listener = ln
	cfg.DataDir = dir
	cfg.Metadata = map[string]any{"server_port": 8001}
	cfg.Peers = []qcluster.PeerConfig{
		{Host: "localhost", Port: 7002, Identifier: "server_b", Metadata: map[string]any{"server_port": 8002}},
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := qcluster.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for _, p := range c.Peers() {
		fmt.Println(p.Identifier, p.Metadata["server_port"])
	}
	// Output:
	// server_a 8001
	// server_b 8002
}

// A leader that is about to stop hands leadership over first, so the
// others need not wait an election timeout for its lease to run out.
func ExampleCluster_Resign() {
	var c *qcluster.Cluster // started with New and Start
	shutdown := func() {
		if c.IsLeader() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := c.Resign(ctx); err != nil && !errors.Is(err, qcluster.ErrNotLeader) {
				log.Printf("could not hand leadership over: %v", err)
			}
		}
		c.Close()
	}
	_ = shutdown
}
