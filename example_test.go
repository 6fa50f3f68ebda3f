package qcluster_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/qcluster/qcluster"
)

// startSinglePeer starts a cluster of one on a free loopback port, for the
// examples. A real deployment loads a config file with LoadConfig.
func startSinglePeer() (*qcluster.Cluster, func()) {
	c, done := newSinglePeer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.WaitForLeader(ctx); err != nil {
		log.Fatal(err)
	}
	return c, done
}

// newSinglePeer starts a cluster of one without waiting for its election.
func newSinglePeer() (*qcluster.Cluster, func()) {
	dir, err := os.MkdirTemp("", "qcluster-example")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	cfg := qcluster.DefaultConfig()
	cfg.Identifier = "server_a"
	cfg.Listener = ln
	cfg.DataDir = dir
	cfg.Metadata = map[string]any{"server_port": 8001}
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := qcluster.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	return c, func() { c.Close(); os.RemoveAll(dir) }
}

// The seed's work loop: the leader works, the others wait.
func ExampleCluster_IsLeader() {
	c, done := startSinglePeer()
	defer done()
	if c.IsLeader() {
		fmt.Println("I am the leader")
	} else {
		fmt.Println("I am a follower")
	}
	// Output: I am the leader
}

// Leader tells followers where the leader is and what metadata it has.
func ExampleCluster_Leader() {
	c, done := startSinglePeer()
	defer done()
	leader, ok := c.Leader()
	if !ok {
		fmt.Println("no leader elected")
		return
	}
	fmt.Println("Leader has an identifier of:", leader.Identifier)
	fmt.Println("Leader has custom metadata of:", leader.Metadata)
	// Output:
	// Leader has an identifier of: server_a
	// Leader has custom metadata of: map[server_port:8001]
}

// Watch reports every leadership change, and always ends on the latest.
func ExampleCluster_Watch() {
	c, done := newSinglePeer()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for st := range c.Watch(ctx) {
		if st.IsLeader {
			fmt.Printf("%s leads (term > 1: %v)\n", st.Identifier, st.Term > 1)
			break
		}
	}
	// Output: server_a leads (term > 1: true)
}

// LoadConfig reads the seed's JSON format; errors name the field.
func ExampleLoadConfig() {
	_, err := qcluster.ParseConfig([]byte(`{"identifier": "server_a", "listen_host": "localhost", "listen_prot": 7001}`))
	fmt.Println(err != nil)
	// Output: true
}
