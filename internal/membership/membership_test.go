package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestJoinSeesMembersAndMetadata(t *testing.T) {
	nodes := startCluster(t, "n", 3, nil)
	want := names(nodes)
	d := eventually(t, "3 members to see each other", func() bool { return converged(nodes, want) })
	t.Logf("3 members converged %v after the last join", d)

	for _, n := range nodes {
		ms := n.Members()
		if !slices.IsSortedFunc(ms, func(a, b Member) int { return cmpString(a.Name, b.Name) }) {
			t.Errorf("%s: Members not sorted: %v", n.name, ms)
		}
		for _, m := range ms {
			if got, want := string(m.Meta), "meta-"+m.Name; got != want || m.MetaPending {
				t.Errorf("%s sees %s meta %q pending=%v, want %q", n.name, m.Name, got, m.MetaPending, want)
			}
			if m.Host != "127.0.0.1" || m.Port == 0 {
				t.Errorf("%s sees %s at %s", n.name, m.Name, m.Addr())
			}
		}
		if l := n.Local(); l.Name != n.name || l.Addr() != n.addr || l.State != StateAlive {
			t.Errorf("Local() = %+v, want %s at %s alive", l, n.name, n.addr)
		}
		for _, o := range nodes {
			if o != n {
				eventually(t, "joined event", func() bool { _, ok := n.events.first(EventJoined, o.name); return ok })
			}
		}
		if _, ok := n.events.first(EventJoined, n.name); ok {
			t.Errorf("%s got an event about itself", n.name)
		}
	}
	// Incarnations become known as gossip about each member is seen.
	eventually(t, "incarnations known", func() bool {
		for _, n := range nodes {
			for _, m := range n.Members() {
				if m.Incarnation == 0 {
					return false
				}
			}
		}
		return true
	})

	// Members returns copies.
	ms := nodes[0].Members()
	ms[0].Meta[0] = 'X'
	if m := nodes[0].Members()[0]; m.Meta[0] == 'X' {
		t.Error("Members shares metadata with the registry")
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestSetMetaPropagates(t *testing.T) {
	nodes := startCluster(t, "m", 3, nil)
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	a := nodes[0]
	ctx := context.Background()

	check := func(meta []byte) {
		t.Helper()
		start := time.Now()
		if err := a.SetMeta(ctx, meta); err != nil {
			t.Fatalf("SetMeta(%d bytes): %v", len(meta), err)
		}
		if l := a.Local(); !bytes.Equal(l.Meta, meta) {
			t.Fatalf("Local meta is %d bytes, want %d", len(l.Meta), len(meta))
		}
		for _, n := range nodes[1:] {
			eventually(t, fmt.Sprintf("%d-byte meta at %s", len(meta), n.name), func() bool {
				for _, m := range n.Members() {
					if m.Name == a.name {
						return !m.MetaPending && bytes.Equal(m.Meta, meta)
					}
				}
				return false
			})
		}
		t.Logf("%6d-byte metadata reached every member in %v", len(meta), time.Since(start))
	}
	check([]byte(`{"server_port":8002}`))
	check(bytes.Repeat([]byte("i"), InlineMetaSize))   // largest inline
	check(bytes.Repeat([]byte("L"), 2000))             // fetched by reference
	check(bytes.Repeat([]byte("M"), MaxMetaSize))      // the limit
	check(bytes.Repeat([]byte("s"), InlineMetaSize-1)) // back to inline

	// Every change produced an EventUpdated at every other member.
	for _, n := range nodes[1:] {
		updates := func() (k int) {
			for _, e := range n.events.about(a.name) {
				if e == EventUpdated {
					k++
				}
			}
			return k
		}
		eventually(t, n.name+" to deliver 5 updates", func() bool { return updates() >= 5 })
		if k := updates(); k != 5 {
			t.Errorf("%s delivered %d updates of %s for 5 changes", n.name, k, a.name)
		}
	}

	if err := a.SetMeta(ctx, make([]byte, MaxMetaSize+1)); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("SetMeta(MaxMetaSize+1) = %v, want ErrMetaTooLarge", err)
	}
	if l := a.Local(); len(l.Meta) != InlineMetaSize-1 {
		t.Errorf("rejected SetMeta changed the metadata to %d bytes", len(l.Meta))
	}
}

func TestLargeMetadataAtJoin(t *testing.T) {
	big := bytes.Repeat([]byte("B"), 10000)
	a := startNode(t, "a", nil)
	b := startNode(t, "b", func(c *Config, _ *testNode) { c.Meta = big })
	if _, err := b.Join(context.Background(), []string{a.addr}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a to fetch b's metadata", func() bool {
		for _, m := range a.Members() {
			if m.Name == "b" {
				return !m.MetaPending && bytes.Equal(m.Meta, big)
			}
		}
		return false
	})
	// Joined came first (possibly still pending), then Updated with the data.
	eventually(t, "updated event", func() bool { _, ok := a.events.first(EventUpdated, "b"); return ok })
	if ev, _ := a.events.first(EventUpdated, "b"); !bytes.Equal(ev.Member.Meta, big) {
		t.Errorf("EventUpdated carries %d bytes of metadata, want %d", len(ev.Member.Meta), len(big))
	}
}

func TestFailureDetection(t *testing.T) {
	// The real "local" profile (probe every 1 s, suspicion multiplier 3),
	// to measure what a user of that profile gets.
	t.Parallel()
	local := func(c *Config, _ *testNode) {
		*c = Config{Name: c.Name, Mux: c.Mux, ClusterName: c.ClusterName, Meta: c.Meta,
			Events: c.Events, Logger: c.Logger, Profile: ProfileLocal}
	}
	nodes := startCluster(t, "f", 3, local)
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })

	victim, survivors := nodes[2], nodes[:2]
	killed := time.Now()
	victim.Shutdown() // no leave notice: a crash as far as the others know

	cfg := Config{Profile: ProfileLocal}
	lo, hi := cfg.SuspicionTimeout(3)
	mc, _ := cfg.memberlistConfig()
	// Suspicion needs a failed probe: each survivor probes every member
	// in turn, one per probe interval, and a probe fails after its
	// interval. Allow a generous multiple for a loaded machine.
	suspectBound := time.Duration(2*len(nodes))*mc.ProbeInterval + 10*time.Second
	deadBound := suspectBound + hi + 10*time.Second

	for _, s := range survivors {
		eventually(t, s.name+" to report the victim failed", func() bool {
			_, ok := s.events.first(EventFailed, victim.name)
			return ok
		})
		sus, ok1 := s.events.first(EventSuspect, victim.name)
		dead, ok2 := s.events.first(EventFailed, victim.name)
		if !ok1 || !ok2 {
			t.Fatalf("%s: events about the victim %v, want suspect then failed", s.name, s.events.about(victim.name))
		}
		if got := s.events.about(victim.name); !slices.Equal(got[len(got)-2:], []EventType{EventSuspect, EventFailed}) {
			t.Errorf("%s: events about the victim %v, want ... suspect, failed", s.name, got)
		}
		t.Logf("%s: suspect after %v, dead after %v (suspicion timeout %v..%v)",
			s.name, sus.at.Sub(killed).Round(time.Millisecond), dead.at.Sub(killed).Round(time.Millisecond), lo, hi)
		if d := sus.at.Sub(killed); d > suspectBound {
			t.Errorf("%s suspected the victim after %v, bound %v", s.name, d, suspectBound)
		}
		if d := dead.at.Sub(sus.at); d < lo-mc.ProbeInterval {
			t.Errorf("%s declared the victim dead %v after suspecting it, before the suspicion timeout %v", s.name, d, lo)
		}
		if d := dead.at.Sub(killed); d > deadBound {
			t.Errorf("%s declared the victim dead after %v, bound %v", s.name, d, deadBound)
		}
		if st, _ := stateOf(s, victim.name); st != StateDead {
			t.Errorf("%s reports the victim %v, want dead", s.name, st)
		}
		if _, ok := s.Owner("k"); !ok {
			t.Error("Owner found no live member")
		}
	}
}

func TestGracefulLeave(t *testing.T) {
	nodes := startCluster(t, "l", 3, nil)
	eventually(t, "convergence", func() bool { return converged(nodes, names(nodes)) })
	leaver := nodes[2]
	if err := leaver.Leave(context.Background()); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if st := leaver.Local().State; st != StateLeft {
		t.Errorf("leaver's own state is %v, want left", st)
	}
	for _, n := range nodes[:2] {
		eventually(t, n.name+" to see the leave", func() bool {
			_, ok := n.events.first(EventLeft, leaver.name)
			return ok
		})
		if st, _ := stateOf(n, leaver.name); st != StateLeft {
			t.Errorf("%s reports the leaver %v, want left", n.name, st)
		}
		if _, failed := n.events.first(EventFailed, leaver.name); failed {
			t.Errorf("%s reported the leaver failed: %v", n.name, n.events.about(leaver.name))
		}
		for i := range 100 {
			if o, _ := n.Owner(fmt.Sprint(i)); o.Name == leaver.name {
				t.Fatalf("%s: key %d still owned by the leaver", n.name, i)
			}
		}
	}
	if err := leaver.Leave(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Leave = %v, want ErrClosed", err)
	}
	if _, err := leaver.Join(context.Background(), []string{nodes[0].addr}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Leave = %v, want ErrClosed", err)
	}
	if err := leaver.SetMeta(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SetMeta after Leave = %v, want ErrClosed", err)
	}
	if err := leaver.Shutdown(); err != nil {
		t.Errorf("Shutdown after Leave = %v", err)
	}
}

func TestClusterNamesKeepClustersApart(t *testing.T) {
	x := startCluster(t, "x", 2, func(c *Config, _ *testNode) { c.ClusterName = "x" })
	eventually(t, "cluster x", func() bool { return converged(x, names(x)) })
	y := startNode(t, "y", func(c *Config, _ *testNode) { c.ClusterName = "y" })

	n, err := y.Join(context.Background(), []string{x[0].addr})
	if n != 0 || !errors.Is(err, ErrJoin) {
		t.Fatalf("Join into another cluster = %d, %v; want 0, ErrJoin", n, err)
	}
	// x's member received the stream and refused it for its label.
	eventually(t, "x to refuse y's stream", func() bool { return x[0].logs.contains("unacceptable label") })
	// And y's packets, should any reach x, are refused too.
	if got := liveNames(x[0]); !slices.Equal(got, names(x)) {
		t.Errorf("x sees %v after y's attempt, want %v", got, names(x))
	}
	if got := liveNames(y); !slices.Equal(got, []string{"y"}) {
		t.Errorf("y sees %v, want only itself", got)
	}
}

func TestJoinErrors(t *testing.T) {
	a := startNode(t, "a", nil)
	ctx := context.Background()
	for _, addr := range []string{"nohost", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:99999", ":7000"} {
		if _, err := a.Join(ctx, []string{addr}); !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("Join(%q) = %v, want ErrInvalidAddress", addr, err)
		}
	}
	// Nobody listens there.
	dead := startNode(t, "dead", nil)
	deadAddr := dead.addr
	dead.Shutdown()
	dead.mux.Close()
	if n, err := a.Join(ctx, []string{deadAddr}); n != 0 || !errors.Is(err, ErrJoin) {
		t.Errorf("Join(unreachable) = %d, %v; want 0, ErrJoin", n, err)
	}
	// Joining oneself is a no-op.
	if n, err := a.Join(ctx, []string{a.addr}); n != 0 || err != nil {
		t.Errorf("Join(self) = %d, %v; want 0, nil", n, err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Join(canceled, []string{deadAddr}); !errors.Is(err, context.Canceled) {
		t.Errorf("Join(canceled ctx) = %v, want context.Canceled", err)
	}
}

func TestPartitionHealsThroughRejoin(t *testing.T) {
	// Two clusters, partitioned and healed together: one with the periodic
	// rejoin, one without it, which shows that it is the rejoin that heals.
	//
	// memberlist keeps gossiping to members it declared dead for
	// GossipToTheDeadTime (15 s in the local profile), which heals
	// partitions that end within that window; the test shortens it so that
	// the partition outlasts it, as in hashicorp/memberlist#222, without
	// waiting 15 s.
	t.Parallel()
	run := func(prefix string, rejoin time.Duration) ([]*testNode, *partition) {
		p := newPartition()
		nodes := startCluster(t, prefix, 4, func(c *Config, n *testNode) {
			c.Filter = p.filterFor(n)
			c.RejoinInterval = rejoin
			c.tweak = func(mc *memberlist.Config) { mc.GossipToTheDeadTime = 100 * time.Millisecond }
		})
		return nodes, p
	}
	with, pw := run("w", 500*time.Millisecond)
	without, pwo := run("o", 0)
	for _, ns := range [][]*testNode{with, without} {
		eventually(t, "convergence", func() bool { return converged(ns, names(ns)) })
	}
	pw.split(with[:2], with[2:])
	pwo.split(without[:2], without[2:])
	start := time.Now()
	// Wait until each side has declared the other dead, long enough ago
	// (5 times GossipToTheDeadTime) that memberlist no longer sends it
	// anything: no probes, no push/pull, no gossip.
	for _, ns := range [][]*testNode{with, without} {
		eventually(t, "each side to declare the other dead", func() bool {
			for i, n := range ns {
				for _, m := range n.Members() {
					j := slices.IndexFunc(ns, func(o *testNode) bool { return o.name == m.Name })
					if (i < 2) != (j < 2) && (m.State != StateDead || time.Since(m.Since) < 500*time.Millisecond) {
						return false
					}
				}
			}
			return true
		})
	}
	t.Logf("sides declared each other dead %v after the partition", time.Since(start).Round(time.Millisecond))
	healed := time.Now()
	pw.heal()
	pwo.heal()
	d := eventually(t, "the rejoin to merge the sides", func() bool { return converged(with, names(with)) })
	t.Logf("with rejoin every 500ms: merged %v after the heal", d.Round(time.Millisecond))
	// Without the rejoin the sides stay apart: give them three times as
	// long, and at least 3 s, to show that nothing else merges them. (This
	// waits to observe an absence, not to synchronize.)
	time.Sleep(max(3*time.Since(healed), 3*time.Second))
	if converged(without, names(without)) {
		t.Error("the cluster without rejoin merged by itself; the test does not show what it should")
	}
	if got := liveNames(without[0]); len(got) != 2 {
		t.Errorf("without rejoin, %s sees %v alive, want its own side only", without[0].name, got)
	}
}

func TestRejoinRetriesUnreachableSeed(t *testing.T) {
	// A seed that is down when Join is called is retried by the rejoin
	// loop once it comes up.
	a := startNode(t, "a", nil)
	aAddr := a.addr
	a.Shutdown()
	a.mux.Close()

	b := startNode(t, "b", func(c *Config, _ *testNode) { c.RejoinInterval = 200 * time.Millisecond })
	if _, err := b.Join(context.Background(), []string{aAddr}); !errors.Is(err, ErrJoin) {
		t.Fatalf("Join(down seed) = %v, want ErrJoin", err)
	}
	// Bring up a member on the seed's address (the port may have been
	// taken meanwhile; then skip).
	a2, err := startNodeAt(t, "a2", aAddr)
	if err != nil {
		t.Skipf("could not rebind %s: %v", aAddr, err)
	}
	eventually(t, "b to reach the seed", func() bool {
		return slices.Equal(liveNames(b), []string{"a2", "b"}) && slices.Equal(liveNames(a2), []string{"a2", "b"})
	})
}

func TestOwnerAgreementAndFailover(t *testing.T) {
	const n, keys = 20, 1000
	before := memInUse()
	start := time.Now()
	nodes := startCluster(t, "o", n, nil)
	d := eventually(t, "20 members to converge", func() bool { return converged(nodes, names(nodes)) })
	t.Logf("%d members: converged %v after the last join (%v after the first start); ~%d KiB of heap and stacks per member",
		n, d.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), (memInUse()-before)/n/1024)

	owners := func(ns []*testNode) []string {
		t.Helper()
		ref := make([]string, keys)
		for k := range keys {
			key := fmt.Sprintf("key-%d", k)
			for i, nd := range ns {
				o, ok := nd.Owner(key)
				if !ok {
					t.Fatalf("%s: no owner for %s", nd.name, key)
				}
				if i == 0 {
					ref[k] = o.Name
				} else if o.Name != ref[k] {
					t.Fatalf("%s says %s owns %s, %s says %s", nd.name, o.Name, key, ns[0].name, ref[k])
				}
			}
		}
		return ref
	}
	before1 := owners(nodes)
	perOwner := map[string]int{}
	for _, o := range before1 {
		perOwner[o]++
	}
	if len(perOwner) != n {
		t.Errorf("only %d of %d members own keys", len(perOwner), n)
	}
	for name, c := range perOwner {
		if c < keys/n/3 || c > keys/n*3 {
			t.Errorf("%s owns %d of %d keys; expected about %d", name, c, keys, keys/n)
		}
	}

	victim := nodes[7]
	survivors := slices.Delete(slices.Clone(nodes), 7, 8)
	killed := time.Now()
	victim.Shutdown()
	eventually(t, "every survivor to declare the victim dead", func() bool {
		for _, s := range survivors {
			if st, _ := stateOf(s, victim.name); st != StateDead {
				return false
			}
		}
		return true
	})
	t.Logf("victim dead at all %d survivors %v after the kill", len(survivors), time.Since(killed).Round(time.Millisecond))
	after := owners(survivors)
	moved := 0
	for k := range keys {
		switch {
		case before1[k] == victim.name:
			moved++
			if after[k] == victim.name {
				t.Fatalf("key %d still owned by the dead member", k)
			}
		case after[k] != before1[k]:
			t.Errorf("key %d moved from %s to %s though its owner survived", k, before1[k], after[k])
		}
	}
	t.Logf("%d keys moved, all of them the victim's", moved)
}
