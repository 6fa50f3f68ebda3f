package peerrun

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/kvnode"
	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/storage"
	"github.com/qcluster/qcluster/internal/transport"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestListenKeepsAGivenListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got, err := Listen(ln, "unused:1")
	if err != nil || got != ln {
		t.Fatalf("Listen(ln) = %v, %v; want ln", got, err)
	}
	got, err = Listen(nil, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
	if _, err := Listen(nil, ln.Addr().String()); err == nil {
		t.Fatal("Listen on a port in use: no error")
	}
}

func TestRouteToNodeDropsWithoutANode(t *testing.T) {
	cfg := RouteToNode(transport.Config{LocalID: 7}, func() *consensus.Node { return nil })
	if cfg.LocalID != 7 {
		t.Fatalf("LocalID = %d, want the given 7", cfg.LocalID)
	}
	// No node: every callback is a no-op, not a nil dereference.
	cfg.Deliver(raftpb.Message{})
	cfg.Unreachable(1)
	cfg.SnapshotStatus(1, true)
	cfg.PeerGone(1, 0)
}

func openStore(t *testing.T, dir string) storage.Storage {
	t.Helper()
	s, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStateChecksAndDiscard(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if empty, err := IsEmpty(s); err != nil || !empty {
		t.Fatalf("new store: IsEmpty = %v, %v", empty, err)
	}
	// The founding snapshot: term 1, index 1.
	reg := registry.New([]registry.Member{{Identifier: "a", Host: "h", Port: 1}})
	snap := raftpb.Snapshot{Data: reg.Snapshot(), Metadata: raftpb.SnapshotMetadata{Index: 1, Term: 1, ConfState: raftpb.ConfState{Voters: []uint64{1}}}}
	if err := s.Save(raftpb.HardState{Term: 1, Commit: 1}, nil, snap); err != nil {
		t.Fatal(err)
	}
	if empty, err := IsEmpty(s); err != nil || empty {
		t.Fatalf("founded store: IsEmpty = %v, %v", empty, err)
	}
	if p, err := IsPristine(s); err != nil || !p {
		t.Fatalf("founded store: IsPristine = %v, %v", p, err)
	}
	got, kvData, err := LoadSnapshot(s, dir)
	if err != nil || got == nil || got.Len() != 1 || kvData != nil {
		t.Fatalf("LoadSnapshot = %v, %v, %v; want the one member, no KV data", got, kvData, err)
	}
	if err := s.Save(raftpb.HardState{Term: 2, Vote: 1, Commit: 1}, nil, raftpb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if p, err := IsPristine(s); err != nil || p {
		t.Fatalf("after a vote: IsPristine = %v, %v", p, err)
	}
	s, err = Discard(s, dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if empty, err := IsEmpty(s); err != nil || !empty {
		t.Fatalf("after Discard: IsEmpty = %v, %v", empty, err)
	}
	if reg, _, err := LoadSnapshot(s, dir); err != nil || reg != nil {
		t.Fatalf("LoadSnapshot of an empty store = %v, %v; want none", reg, err)
	}
}

func TestLoadSnapshotSplitsAndRefuses(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	defer s.Close()
	reg := registry.New([]registry.Member{{Identifier: "a", Host: "h", Port: 1}})
	data := kvnode.EncodeSnapshot(reg.Snapshot(), []byte("kv"))
	snap := raftpb.Snapshot{Data: data, Metadata: raftpb.SnapshotMetadata{Index: 1, Term: 1, ConfState: raftpb.ConfState{Voters: []uint64{1}}}}
	if err := s.Save(raftpb.HardState{Term: 1, Commit: 1}, nil, snap); err != nil {
		t.Fatal(err)
	}
	got, kvData, err := LoadSnapshot(s, dir)
	if err != nil || got == nil || string(kvData) != "kv" {
		t.Fatalf("LoadSnapshot = %v, %q, %v; want the member list and the KV data", got, kvData, err)
	}

	dir2 := t.TempDir()
	bad := openStore(t, dir2)
	defer bad.Close()
	snap.Data = []byte("not a member list")
	if err := bad.Save(raftpb.HardState{Term: 1, Commit: 1}, nil, snap); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadSnapshot(bad, dir2); err == nil {
		t.Fatal("LoadSnapshot of garbage: no error")
	}
}

func TestDiscardNamesAMissingFile(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if err := os.Remove(filepath.Join(dir, storage.FileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Discard(s, dir, storage.Options{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Discard without its file = %v, want a not-exist error", err)
	}
}

func TestNodeRunStopsWithItsParent(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	r := NewNodeRun(parent)
	cancel()
	select {
	case <-r.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the node's context outlived its parent")
	}
}

// TestRunningCopies: a Running value is never modified: each With returns
// a copy, and WithNode gives the copy a NodeRun of its own under r's
// context.
func TestRunningCopies(t *testing.T) {
	r := NewRunning(nil, nil, nil)
	defer r.Cancel()
	tr := r.WithTransport(&transport.Transport{})
	if r.Transport != nil || tr.Transport == nil || tr.Ctx != r.Ctx {
		t.Fatalf("WithTransport: %+v from %+v", tr, r)
	}
	n := tr.WithNode(nil, &consensus.Node{})
	if tr.Node != nil || tr.NodeRun != nil || n.Node == nil || n.NodeRun == nil || n.Transport != tr.Transport {
		t.Fatalf("WithNode: %+v from %+v", n, tr)
	}
	r.Cancel()
	select {
	case <-n.NodeRun.ctx.Done():
	default:
		t.Fatal("the NodeRun does not end with the run context")
	}
}
