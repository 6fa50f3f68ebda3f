package membership

import (
	"context"
	"io"
	"log"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/qcluster/qcluster/internal/transport"
)

func TestSuspectThenRecovered(t *testing.T) {
	// A member cut off for less than the suspicion timeout is suspected,
	// then refutes the suspicion once it hears of it.
	p := newPartition()
	nodes := startCluster(t, "r", 3, func(c *Config, n *testNode) {
		c.Filter = p.filterFor(n)
		c.SuspicionMult = 20 // a long suspicion timeout: room to heal
	})
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	cut := nodes[2]
	p.split(nodes[:2], nodes[2:])
	// Heal as soon as one member suspects it; the other may or may not
	// have suspected it by the time the refutation reaches it.
	eventually(t, "a member to suspect "+cut.name, func() bool {
		for _, n := range nodes[:2] {
			if st, _ := stateOf(n, cut.name); st == StateSuspect {
				return true
			}
		}
		return false
	})
	p.heal()
	suspected := 0
	for _, n := range nodes[:2] {
		// The refutation raised the member's incarnation. It reaches the
		// member that did not suspect by gossip, maybe after that member
		// has seen the cut one alive (at its old incarnation) again: wait
		// for it, after which a late suspicion of the old incarnation is
		// stale and changes nothing.
		eventually(t, n.name+" to see "+cut.name+" alive after its refutation", func() bool {
			m, _ := memberOf(n, cut.name)
			return m.State == StateAlive && m.Incarnation >= 2
		})
		// Events are delivered asynchronously: wait for the recovery to
		// arrive if the suspicion did.
		eventually(t, n.name+"'s events to settle", func() bool {
			got := n.events.about(cut.name)
			return got[len(got)-1] != EventSuspect
		})
		switch got := n.events.about(cut.name); {
		case slices.Equal(got, []EventType{EventJoined, EventSuspect, EventRecovered}):
			suspected++
		case slices.Equal(got, []EventType{EventJoined}):
		default:
			t.Errorf("%s: events %v, want joined, suspect, recovered (or just joined)", n.name, got)
		}
	}
	if suspected == 0 {
		t.Error("no member reported the suspicion and the recovery")
	}
}

func TestEventsAreDroppedNotBlocking(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before Shutdown, which waits for the callback
	a := startNode(t, "a", func(c *Config, _ *testNode) {
		c.EventBuffer = 1
		c.Events = func(Event) { <-release }
	})
	var others []*testNode
	for _, name := range []string{"b", "c", "d", "e"} {
		n := startNode(t, name, nil)
		if _, err := n.Join(context.Background(), []string{a.addr}); err != nil {
			t.Fatal(err)
		}
		others = append(others, n)
	}
	// The callback is stuck, yet memberlist carries on.
	want := []string{"a", "b", "c", "d", "e"}
	eventually(t, "convergence despite a stuck callback", func() bool { return slices.Equal(liveNames(a), want) })
	eventually(t, "drops to be counted", func() bool { return a.DroppedEvents() >= 2 })
	unblock()
	_ = others
}

func TestForeignMemberIsRefused(t *testing.T) {
	// A plain memberlist with the same label but without QCluster's
	// metadata envelope (another application) cannot join.
	a := startNode(t, "a", nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := transport.NewMux(ln, transport.MuxOptions{})
	tr, err := NewTransport(TransportConfig{BindAddr: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port})
	if err != nil {
		mux.Close()
		t.Skipf("UDP port taken: %v", err)
	}
	mux.Handle(GossipPreamble, tr.HandleStream)
	served := make(chan struct{})
	go func() { defer close(served); mux.Serve() }()
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.Label, mc.Transport = "foreign", "test", tr
	mc.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ml.Shutdown()
		mux.Close()
		<-served
	})
	ml.Join([]string{a.addr}) // the push/pull itself succeeds
	eventually(t, "a to ignore the foreign member", func() bool { return a.logs.contains("malformed metadata envelope") })
	if got := liveNames(a); !slices.Equal(got, []string{"a"}) {
		t.Errorf("a sees %v, want only itself", got)
	}
}

func TestShutdownSemantics(t *testing.T) {
	nodes := startCluster(t, "s", 2, func(c *Config, _ *testNode) { c.DeadMemberRetention = 300 * time.Millisecond })
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	a, b := nodes[0], nodes[1]

	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); b.Shutdown() }()
	}
	wg.Wait()
	if err := b.Shutdown(); err != nil {
		t.Errorf("Shutdown again = %v", err)
	}
	if st := b.Local().State; st != StateDead {
		t.Errorf("shut-down member's own state = %v, want dead", st)
	}
	if got := b.Members(); len(got) != 2 {
		t.Errorf("Members after Shutdown = %v, want the last view", got)
	}
	// a declares b dead, then forgets it after DeadMemberRetention.
	eventually(t, "a to declare b dead", func() bool { st, _ := stateOf(a, b.name); return st == StateDead })
	eventually(t, "a to forget b", func() bool { _, ok := stateOf(a, b.name); return !ok })
}
