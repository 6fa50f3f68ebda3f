package qcluster_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/qcluster/qcluster"
)

// In masterless mode peers split work without a leader: each works on the
// keys Owner gives it. Alone, a peer owns every key.
func ExampleCluster_Owner() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	cfg := qcluster.DefaultConfig()
	cfg.Identifier = "worker_a"
	cfg.Mode = qcluster.ModeMasterless
	cfg.Listener = ln
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := qcluster.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for _, key := range []string{"customer-1", "customer-2"} {
		if owner, ok := c.Owner(key); ok && owner.Identifier == c.Self().Identifier {
			fmt.Println("working on", key)
		}
	}
	_, hasLeader := c.Leader()
	fmt.Println("leader:", hasLeader, "is leader:", c.IsLeader())
	// Output:
	// working on customer-1
	// working on customer-2
	// leader: false is leader: false
}

// Events reports membership changes as they happen: members joining,
// changing metadata, failing, leaving, and leadership changes.
func ExampleCluster_Events() {
	var c *qcluster.Cluster // started with New and Start
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for ev := range c.Events(ctx) {
		switch ev.Type {
		case qcluster.EventJoined, qcluster.EventAlive:
			log.Printf("%s is up at %s (%v)", ev.Member.Identifier, ev.Member.Addr(), ev.Member.Metadata)
		case qcluster.EventFailed, qcluster.EventLeft, qcluster.EventRemoved:
			log.Printf("%s is gone (%s)", ev.Member.Identifier, ev.Type)
		case qcluster.EventLeaderChanged:
			log.Printf("leader: %v %s (term %d)", ev.State.HasLeader, ev.State.Leader.Identifier, ev.State.Term)
		}
	}
}

// SetMetadata changes what every peer sees about this one, e.g. a new
// service port, and Leave takes the peer out of the cluster for good.
func ExampleCluster_SetMetadata() {
	var c *qcluster.Cluster // started with New and Start
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.SetMetadata(ctx, map[string]any{"server_port": 8011, "version": "1.4.2"}); err != nil {
		log.Printf("metadata not committed yet: %v", err)
	}
	// ... later, when this instance is decommissioned:
	if err := c.Leave(ctx); err != nil {
		log.Printf("leave: %v", err)
	}
}
