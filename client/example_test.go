package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/qcluster/qcluster"
	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/client"
)

// startPeer starts a cluster of one on a free loopback port and returns its
// API address, for the example.
func startPeer() (addr string, stop func()) {
	dir, err := os.MkdirTemp("", "qcluster-client-example")
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.WaitForLeader(ctx); err != nil {
		log.Fatal(err)
	}
	return c.Addr(), func() { c.Close(); os.RemoveAll(dir) }
}

func ExampleClient_Leader() {
	addr, stop := startPeer()
	defer stop()

	// Several addresses may be given: a call moves on when one is down.
	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leader, err := c.Leader(ctx)
	switch {
	case errors.Is(err, client.ErrNoLeader):
		fmt.Println("no leader right now")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("leader:", leader.Identifier, "server_port:", leader.Metadata["server_port"])
	}
	// Output: leader: server_a server_port: 8001
}

// WatchLeader follows the leader with blocking queries until ctx ends.
func ExampleClient_WatchLeader() {
	c, err := client.New("localhost:7001", "localhost:7002", "localhost:7003")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background() // cancel it to stop watching
	changes, err := c.WatchLeader(ctx)
	if err != nil {
		log.Fatal(err) // no peer answered
	}
	for st := range changes {
		switch {
		case st.Err != nil:
			log.Printf("no peer answers (%v); still trying", st.Err)
		case st.Leader == nil:
			log.Printf("no leader")
		default:
			log.Printf("leader: %s at %s:%d", st.Leader.Identifier, st.Leader.Host, st.Leader.Port)
		}
	}
}

// WatchEvents follows leadership and membership changes over one event
// stream, keeping a membership view: Peers once the stream is open and
// after each break, then the member events.
func ExampleClient_WatchEvents() {
	c, err := client.New("localhost:7001", "localhost:7002", "localhost:7003")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background() // cancel it to stop watching
	events, err := c.WatchEvents(ctx)
	if err != nil {
		log.Fatal(err) // no peer answered
	}
	members := map[string]api.Member{}
	resync := func() {
		peers, err := c.Peers(ctx)
		if err != nil {
			log.Printf("resync: %v", err)
			return
		}
		clear(members)
		for _, m := range peers {
			members[m.Identifier] = m
		}
	}
	resync()
	broken := false
	for ev := range events {
		switch {
		case ev.Err != nil:
			log.Printf("stream broke (%v); reconnecting", ev.Err)
			broken = true
		case ev.Status != nil:
			if broken { // the first event of a new connection
				resync()
				broken = false
			}
			log.Printf("leader: %v (term %d)", ev.Status.Leader, ev.Status.Term)
		case ev.Member != nil:
			switch ev.Member.Type {
			case "left", "removed":
				delete(members, ev.Member.Member.Identifier)
			default:
				members[ev.Member.Member.Identifier] = ev.Member.Member
			}
			log.Printf("%s %s: %d members", ev.Member.Member.Identifier, ev.Member.Type, len(members))
		}
	}
}

// Join adds a member to a running cluster through any of its peers.
func ExampleClient_Join() {
	c, err := client.NewWithOptions(client.Options{Token: os.Getenv("QCLUSTER_TOKEN")}, "localhost:7001", "localhost:7002")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Join(ctx, api.JoinRequest{Identifier: "server_d", Host: "10.0.0.4", Port: 7001, Metadata: map[string]any{"server_port": 8004}})
	switch {
	case errors.Is(err, client.ErrConflict):
		log.Fatalf("another member has that identifier or address: %v", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("%s joined; %d members\n", res.Member.Identifier, len(res.Peers))
}

// A cluster secured with TLS ("cluster_key" or "tls" in the peers'
// configs) serves the API over HTTPS only, to clients with a certificate
// signed by the cluster CA. This client uses the files that
//
//	qcluster tls issue --cluster-key "$KEY" --identifier admin --out certs
//
// writes (or, for a cluster with certificate files, 'qcluster tls issue
// --ca-dir'). The peers' certificates name their listen_host and
// advertise_host, so give those as addresses.
func ExampleOptions_tls() {
	caPEM, err := os.ReadFile("certs/ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		log.Fatal("certs/ca.pem holds no certificate")
	}
	cert, err := tls.LoadX509KeyPair("certs/admin.pem", "certs/admin-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.NewWithOptions(client.Options{TLS: &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
	}}, "db1.example.com:7001", "db2.example.com:7001") // https://
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", leader.Identifier)
}
