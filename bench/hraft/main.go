// Command hraft is a minimal hashicorp/raft node for the side-by-side
// benchmark (go run ./bench/compare in the QCluster module). It lives in a
// module of its own so that QCluster's module does not depend on
// hashicorp/raft.
//
//	hraft -id a -raft 127.0.0.1:7001 -http 127.0.0.1:8001 \
//	      -peers a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003 \
//	      -dir /tmp/a [-timeout 150ms]
//
// It runs one raft member with a no-op state machine, raft-boltdb for the
// log and the stable store (so a killed node restarts with its term and
// vote) and a file snapshot store, over raft's TCP transport. The first
// start of a node whose -dir holds no state bootstraps the configuration
// given by -peers (every node bootstraps the same one, as hashicorp/raft
// allows).
//
// -timeout sets HeartbeatTimeout and ElectionTimeout (the leader sends
// heartbeats every tenth of it); LeaderLeaseTimeout is half of it, the
// ratio of hashicorp/raft's defaults (500 ms of 1 s).
//
// GET /status on -http answers the node's view as JSON:
//
//	{"id":"a","role":"leader","leader":"a","term":3}
//
// role is leader, follower, candidate or shutdown; leader is the ID of the
// leader the node knows, "" when none. SIGTERM or SIGINT shut the node down
// and it exits 0.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hraft:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("hraft", flag.ContinueOnError)
	id := fs.String("id", "", "this node's raft server ID")
	raftAddr := fs.String("raft", "", "host:port of this node's raft transport")
	httpAddr := fs.String("http", "", "host:port of the status endpoint (GET /status)")
	peers := fs.String("peers", "", "every member, this one included: id=host:port,... (raft addresses)")
	dir := fs.String("dir", "", "directory for the raft log, stable store and snapshots")
	timeout := fs.Duration("timeout", 150*time.Millisecond, "HeartbeatTimeout and ElectionTimeout (LeaderLeaseTimeout is half)")
	logLevel := fs.String("log-level", "info", "hclog level: trace, debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *raftAddr == "" || *httpAddr == "" || *peers == "" || *dir == "" {
		return errors.New("-id, -raft, -http, -peers and -dir are required")
	}
	servers, err := parsePeers(*peers)
	if err != nil {
		return err
	}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(*id)
	conf.HeartbeatTimeout = *timeout
	conf.ElectionTimeout = *timeout
	conf.LeaderLeaseTimeout = *timeout / 2
	conf.Logger = hclog.New(&hclog.LoggerOptions{
		Name:       "raft-" + *id,
		Level:      hclog.LevelFromString(*logLevel),
		Output:     os.Stderr,
		JSONFormat: true,
	})
	if err := raft.ValidateConfig(conf); err != nil {
		return err
	}

	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(*dir, "raft.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(*dir, 1, conf.Logger)
	if err != nil {
		return err
	}
	trans, err := raft.NewTCPTransportWithLogger(*raftAddr, nil, 3, 2*time.Second, conf.Logger)
	if err != nil {
		return err
	}
	defer trans.Close()

	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return err
	}
	r, err := raft.NewRaft(conf, nopFSM{}, store, store, snaps, trans)
	if err != nil {
		return err
	}
	defer r.Shutdown()
	if !existing {
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return err
		}
	}

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(statusOf(r, *id))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	select {
	case <-sig:
	case err := <-served:
		return err
	}
	_ = srv.Close()
	return r.Shutdown().Error()
}

// status is the answer of GET /status.
type status struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
}

func statusOf(r *raft.Raft, id string) status {
	_, leader := r.LeaderWithID()
	return status{
		ID:     id,
		Role:   strings.ToLower(r.State().String()),
		Leader: string(leader),
		Term:   r.CurrentTerm(),
	}
}

// parsePeers parses id=host:port,... into raft servers.
func parsePeers(s string) ([]raft.Server, error) {
	var out []raft.Server
	for p := range strings.SplitSeq(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("-peers: %q is not id=host:port", p)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("-peers: %q: %w", p, err)
		}
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return out, nil
}

// nopFSM is a state machine that keeps nothing: the benchmark measures
// elections, not writes.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}
