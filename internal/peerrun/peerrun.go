// Package peerrun is the assembly and teardown machinery of a running
// peer that needs none of the root package's types: binding the port,
// the HTTP server, serving, the node's goroutine, routing what the raft
// transport receives to the node of the moment, the checks and the
// reopening of the durable state, and the teardown in reverse.
//
// The root package keeps the running value itself (Cluster.run) and
// decides when each step runs; every function here takes what it works on
// as arguments, never a *Cluster.
package peerrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kvnode"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/storage"
	"github.com/qcluster/qcluster/internal/transport"
)

// Listen returns ln, or, when it is nil, a new TCP listener on addr.
func Listen(ln net.Listener, addr string) (net.Listener, error) {
	if ln != nil {
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("qcluster: listen on %s (listen_host/listen_port): %w", addr, err)
	}
	return ln, nil
}

// NewHTTPServer returns the server of the HTTP API over h, logging its
// errors at Debug level on log.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		// Idle keep-alive connections count against max_conns_per_ip.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Serve starts answering on mux's port, in goroutines counted by wg: the
// mux itself, srv on its HTTP listener, and seeds (keeping gossip joined)
// until ctx ends.
func Serve(ctx context.Context, wg *sync.WaitGroup, mux *transport.Mux, srv *http.Server, seeds func(context.Context)) {
	wg.Add(3)
	go func() {
		defer wg.Done()
		_ = mux.Serve()
	}()
	go func() {
		defer wg.Done()
		_ = srv.Serve(mux.HTTPListener())
	}()
	go func() {
		defer wg.Done()
		seeds(ctx)
	}()
}

// Parts are the parts of a running peer that Stop tears down.
type Parts struct {
	Cancel    context.CancelFunc // ends the run context: every loop runs under it
	HTTP      *http.Server
	Gossip    *membership.Membership
	Mux       *transport.Mux
	Transport *transport.Transport // nil in masterless mode, or before the node
}

// Stop tears p down, in reverse: it ends the run context (the node, the
// registry and health loops), stops the HTTP API, shuts gossip down
// (silently: the others see this peer fail), closes the port and the raft
// transport, waits (for every goroutine), and closes the store last: store
// is read only then, since a loop may have replaced it (nil: none).
func Stop(p Parts, wait func(), store func() storage.Storage) error {
	p.Cancel()
	var errs []error
	if err := p.HTTP.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := p.Gossip.Shutdown(); err != nil && !errors.Is(err, membership.ErrClosed) {
		errs = append(errs, err)
	}
	if err := p.Mux.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	if p.Transport != nil {
		if err := p.Transport.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	wait()
	if s := store(); s != nil {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RouteToNode returns cfg with its receiving callbacks set to reach the
// node node returns at that moment (nil: none, the message is dropped).
func RouteToNode(cfg transport.Config, node func() *consensus.Node) transport.Config {
	cfg.Deliver = func(m raftpb.Message) {
		if n := node(); n != nil {
			n.Deliver(m)
		}
	}
	cfg.Unreachable = func(id uint64) {
		if n := node(); n != nil {
			n.ReportUnreachable(id)
		}
	}
	cfg.SnapshotStatus = func(id uint64, ok bool) {
		if n := node(); n != nil {
			n.ReportSnapshot(id, ok)
		}
	}
	// The transport's proof that a peer's process is gone (its stream
	// ended without a goodbye and a connect to it was refused): when it
	// is the leader, the survivors elect a new one at once.
	cfg.PeerGone = func(id uint64, roundTrip time.Duration) {
		if n := node(); n != nil {
			n.PeerGone(id, roundTrip)
		}
	}
	return cfg
}

// NodeRun is a running node: how to stop it, and when it has.
type NodeRun struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// NewNodeRun returns the run of a node that parent's end stops too.
func NewNodeRun(parent context.Context) *NodeRun {
	ctx, cancel := context.WithCancel(parent)
	return &NodeRun{ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// Start runs node in a goroutine counted by wg until the run is stopped
// (or its parent context ends); a node that fails (storage) calls failed
// with its error.
func (r *NodeRun) Start(wg *sync.WaitGroup, node *consensus.Node, failed func(error)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(r.done)
		if err := node.Run(r.ctx); err != nil {
			failed(err)
		}
	}()
}

// Stop ends the node's run and waits until it has (the run must have
// been started).
func (r *NodeRun) Stop() {
	r.cancel()
	<-r.done
}

// IsEmpty reports whether store holds no Raft state at all (a new peer).
func IsEmpty(store storage.Storage) (bool, error) {
	hs, _, err := store.InitialState()
	if err != nil {
		return false, err
	}
	snap, err := store.Snapshot()
	if err != nil {
		return false, err
	}
	return hs.Term == 0 && hs.Vote == 0 && hs.Commit == 0 && snap.Metadata.Index == 0, nil
}

// IsPristine reports whether store holds the bare founding snapshot and
// nothing more (term 1, no vote, nothing beyond index 1).
func IsPristine(store storage.Storage) (bool, error) {
	hs, _, err := store.InitialState()
	if err != nil {
		return false, err
	}
	last, err := store.LastIndex()
	if err != nil {
		return false, err
	}
	return hs.Term <= 1 && hs.Vote == 0 && hs.Commit <= 1 && last <= 1, nil
}

// Discard closes store, deletes its file in dataDir and opens an empty
// one there with opts.
func Discard(store storage.Storage, dataDir string, opts storage.Options) (storage.Storage, error) {
	if err := store.Close(); err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(dataDir, storage.FileName)); err != nil {
		return nil, fmt.Errorf("discard the founding state: %w", err)
	}
	store, err := storage.Open(dataDir, opts)
	if err != nil {
		return nil, fmt.Errorf("reopen data_dir: %w", err)
	}
	return store, nil
}

// LoadSnapshot decodes store's stored snapshot: the registry and the KV
// store's data (nil: none). A nil registry means an empty snapshot (a
// cluster founded before the registry was replicated). Errors name
// dataDir.
func LoadSnapshot(store storage.Storage, dataDir string) (reg *registry.State, kvData []byte, err error) {
	snap, err := store.Snapshot()
	if err != nil {
		return nil, nil, fmt.Errorf("qcluster: read data_dir %q: %w", dataDir, err)
	}
	if len(snap.Data) == 0 {
		return nil, nil, nil
	}
	regData, kvData, err := kvnode.SplitSnapshot(snap.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("qcluster: data_dir %q: the stored snapshot cannot be decoded: %w", dataDir, err)
	}
	if reg, err = registry.Restore(regData); err != nil {
		return nil, nil, fmt.Errorf("qcluster: data_dir %q: the stored member list cannot be decoded: %w", dataDir, err)
	}
	return reg, kvData, nil
}
