package kvnode

import (
	"testing"
	"time"

	store "github.com/qcluster/qcluster/internal/kv"
	"github.com/qcluster/qcluster/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// TestDeliver: an applied result goes to the proposal waiting for it
// (once; a duplicate answers nobody); one whose caller gave up goes to its
// late function, and without one it is dropped.
func TestDeliver(t *testing.T) {
	n := New(Deps{})
	id, w := n.register()
	n.deliver([]store.Result{{ReqID: id, Duplicate: true, Revision: 9}})
	select {
	case r := <-w.ch:
		t.Fatalf("a duplicate was delivered: %+v", r)
	default:
	}
	n.deliver([]store.Result{{ReqID: id, Revision: 3}})
	if r := <-w.ch; r.Revision != 3 {
		t.Fatalf("delivered %+v", r)
	}
	if _, ok := n.waiters[id]; ok {
		t.Fatal("the waiter stayed registered after its result")
	}

	id, w = n.register()
	late := make(chan store.Result, 1)
	n.giveUp(id, w, func(r store.Result) { late <- r })
	n.deliver([]store.Result{{ReqID: id, Revision: 4}})
	select {
	case r := <-late:
		if r.Revision != 4 {
			t.Fatalf("late got %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the late function never got the result")
	}

	id, w = n.register()
	n.giveUp(id, w, nil)
	if _, ok := n.waiters[id]; ok {
		t.Fatal("a waiter given up without late stayed registered")
	}
}

// TestOwnerName: a member's name comes from the registry, else from what
// was remembered of it, else from its node ID.
func TestOwnerName(t *testing.T) {
	n := New(Deps{Member: func(id uint64) (string, bool) { return "a", id == 1 }})
	n.RememberOwner(2, "b")
	for id, want := range map[uint64]string{0: "", 1: "a", 2: "b", 3: "node-0000000000000003"} {
		if got := n.OwnerName(id); got != want {
			t.Errorf("OwnerName(%d) = %q, want %q", id, got, want)
		}
	}
}
