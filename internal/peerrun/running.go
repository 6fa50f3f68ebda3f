package peerrun

import (
	"context"
	"net/http"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/storage"
	"github.com/qcluster/qcluster/internal/transport"
)

// Running is what a peer's Start built: each part of a running peer, held
// once (the root keeps it behind an atomic pointer: nil before Start). A
// Running value is never modified: Start publishes it in two steps
// (serving: the port, gossip and the HTTP API; then, in leader mode, with
// the store, the raft transport and the node), and the registry loop
// publishes a copy with a new node and store when it discards a founding
// state. Close tears it down in reverse (Running.Stop).
type Running struct {
	Ctx    context.Context // ends when Close begins; every loop runs under it
	Cancel context.CancelFunc
	Mux    *transport.Mux // the one port: HTTP, raft streams, gossip
	Gossip *membership.Membership
	HTTP   *http.Server

	// Leader mode only; nil in masterless mode (and, in leader mode,
	// until the node exists).
	Store     storage.Storage
	Transport *transport.Transport
	Node      *consensus.Node
	NodeRun   *NodeRun
}

// NewRunning returns the serving part of a running peer, not serving yet,
// under a new run context.
func NewRunning(mux *transport.Mux, g *membership.Membership, srv *http.Server) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	return &Running{Ctx: ctx, Cancel: cancel, Mux: mux, Gossip: g, HTTP: srv}
}

// WithTransport returns a copy of r with the raft transport tr.
func (r *Running) WithTransport(tr *transport.Transport) *Running {
	next := *r
	next.Transport = tr
	return &next
}

// WithStore returns a copy of r over store.
func (r *Running) WithStore(store storage.Storage) *Running {
	next := *r
	next.Store = store
	return &next
}

// WithNode returns a copy of r in which node, over store, is the node,
// with a new NodeRun under r's context (not started).
func (r *Running) WithNode(store storage.Storage, node *consensus.Node) *Running {
	next := r.WithStore(store)
	next.Node, next.NodeRun = node, NewNodeRun(r.Ctx)
	return next
}

// Stop tears r down in reverse (see Stop); store is read last, since a
// loop may have replaced r's.
func (r *Running) Stop(wait func(), store func() storage.Storage) error {
	return Stop(Parts{Cancel: r.Cancel, HTTP: r.HTTP, Gossip: r.Gossip, Mux: r.Mux, Transport: r.Transport}, wait, store)
}
