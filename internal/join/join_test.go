package join

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/config"
	"github.com/qcluster/qcluster/internal/consensus"
	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/membership"
	"github.com/qcluster/qcluster/internal/registry"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// call is one request a fake peer client saw.
type call struct{ addr, method, path string }

// fake is a peer whose view, registry and peer client tests set; it has no
// node (what needs one answers sdkerr.ErrNotStarted).
type fake struct {
	mu       sync.Mutex
	leader   *api.Peer
	isLeader bool
	view     consensus.View
	reg      *registry.State
	gossip   []membership.Member
	calls    []call
	// answer answers a request to another peer (nil: it fails).
	answer func(c call, body, out any) error
	// waitLeader, when set, makes WaitForLeader wait until a leader is
	// set (polling), or ctx ends; otherwise WaitForLeader returns at once.
	waitLeader bool
	// et is the election timeout (0: 150ms).
	et time.Duration
}

func (f *fake) setLeader(l *api.Peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader = l
}

func (f *fake) calls2() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func newFake(t *testing.T, f *fake, seeds ...config.PeerConfig) *Protocol {
	t.Helper()
	if f.reg == nil {
		f.reg = registry.New(nil)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	et := f.et
	if et == 0 {
		et = 150 * time.Millisecond
	}
	return New(Deps{
		Identifier: "self", ID: config.NodeID("self"), Host: "10.0.0.1", Port: 7000,
		ClusterName: "c1", DataDir: "/data", Voter: true, Seeds: seeds,
		ElectionTimeout: et, MinVoters: 3,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metadata:       func() map[string]any { return map[string]any{"k": "v"} },
		MetadataLogged: func() *map[string]any { return nil },
		Normalize: func(md map[string]any) (map[string]any, error) {
			if _, bad := md["bad"]; bad {
				return nil, fmt.Errorf("%w: bad key", sdkerr.ErrInvalidMetadata)
			}
			return md, nil
		},
		Leader: func() (api.Peer, bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.leader == nil {
				return api.Peer{}, false
			}
			return *f.leader, true
		},
		IsLeader: func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.isLeader },
		WaitForLeader: func(ctx context.Context) error {
			for f.waitLeader {
				f.mu.Lock()
				known := f.leader != nil
				f.mu.Unlock()
				if known {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%w: %w", sdkerr.ErrNoLeader, ctx.Err())
				case <-time.After(time.Millisecond):
				}
			}
			return nil
		},
		Resign: func(context.Context) error { // no leader known until another is set
			f.mu.Lock()
			defer f.mu.Unlock()
			f.isLeader, f.leader = false, nil
			return nil
		},
		View:            func() consensus.View { f.mu.Lock(); defer f.mu.Unlock(); return f.view },
		Registry:        func() *registry.State { f.mu.Lock(); defer f.mu.Unlock(); return f.reg },
		RegistryChanged: func() <-chan struct{} { return make(chan struct{}) },
		Node:            func() *consensus.Node { return nil },
		Done:            done,
		Gossip:          func() []membership.Member { return f.gossip },
		Members:         func() []api.Member { return []api.Member{} },
		Name: func(id uint64) string {
			if m, ok := f.reg.Get(id); ok {
				return m.Identifier
			}
			return fmt.Sprintf("node-%016x", id)
		},
		Call: func(_ context.Context, addr, method, path string, body, out any) error {
			c := call{addr, method, path}
			f.mu.Lock()
			f.calls = append(f.calls, c)
			answer := f.answer
			f.mu.Unlock()
			if answer == nil {
				return errors.New("connection refused")
			}
			return answer(c, body, out)
		},
		Learned:         func(uint64, string) {},
		DiscardFounding: func() error { return nil },
	})
}

// TestJoinRefusesBadRequests: a join request that names another cluster,
// or an invalid identifier, host, port or metadata, is refused with the
// matching error before anything is forwarded or proposed.
func TestJoinRefusesBadRequests(t *testing.T) {
	f := &fake{leader: &api.Peer{Identifier: "lead", Host: "10.0.0.2", Port: 7000}}
	p := newFake(t, f)
	ok := api.JoinRequest{Identifier: "new", Host: "10.0.0.9", Port: 7000, ClusterName: "c1"}
	for _, tc := range []struct {
		name string
		edit func(*api.JoinRequest)
		want error
		msg  string
	}{
		{"cluster", func(r *api.JoinRequest) { r.ClusterName = "c2" }, sdkerr.ErrWrongCluster, `belongs to cluster "c2", this is "c1"`},
		{"no identifier", func(r *api.JoinRequest) { r.Identifier = "" }, sdkerr.ErrInvalidMember, "is missing"},
		{"bad identifier", func(r *api.JoinRequest) { r.Identifier = "a\x00b" }, sdkerr.ErrInvalidMember, "identifier"},
		{"no host", func(r *api.JoinRequest) { r.Host = "" }, sdkerr.ErrInvalidMember, `host "" is missing`},
		{"bad host", func(r *api.JoinRequest) { r.Host = "a b" }, sdkerr.ErrInvalidMember, "host"},
		{"port 0", func(r *api.JoinRequest) { r.Port = 0 }, sdkerr.ErrInvalidMember, "out of range"},
		{"port 65536", func(r *api.JoinRequest) { r.Port = 65536 }, sdkerr.ErrInvalidMember, "out of range"},
		{"metadata", func(r *api.JoinRequest) { r.Metadata = map[string]any{"bad": 1} }, sdkerr.ErrInvalidMember, "bad key"},
	} {
		req := ok
		tc.edit(&req)
		_, err := p.Join(context.Background(), req)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %v with %q", tc.name, err, tc.want, tc.msg)
		}
	}
	if c := f.calls2(); len(c) != 0 {
		t.Errorf("refused requests were forwarded: %v", c)
	}
}

// TestJoinForwardsToTheLeader: a follower forwards a valid join to the
// leader's API and returns its answer; it asks again when the leader
// changed on the way (not_leader).
func TestJoinForwardsToTheLeader(t *testing.T) {
	f := &fake{leader: &api.Peer{Identifier: "lead", Host: "10.0.0.2", Port: 7000}}
	n := 0
	f.answer = func(c call, _, out any) error {
		n++
		if n == 1 {
			return fmt.Errorf("%w: moved", sdkerr.ErrNotLeader)
		}
		out.(*api.JoinResult).AlreadyMember = true
		return nil
	}
	p := newFake(t, f)
	res, err := p.Join(context.Background(), api.JoinRequest{Identifier: "new", Host: "10.0.0.9", Port: 7000, ClusterName: "c1"})
	if err != nil || !res.AlreadyMember {
		t.Fatalf("Join = %+v, %v; want the leader's answer", res, err)
	}
	want := call{"10.0.0.2:7000", http.MethodPost, "/v1/join"}
	if c := f.calls2(); len(c) != 2 || c[0] != want || c[1] != want {
		t.Errorf("calls = %v, want twice %v", c, want)
	}
}

// TestToLeader: with no leader known a forwarded request fails with
// NoLeader; when this peer is the known leader (its lease lapsed between
// the checks) with NotLeader, and nothing is sent either way.
func TestToLeader(t *testing.T) {
	f := &fake{}
	p := newFake(t, f)
	if err := p.toLeader(context.Background(), http.MethodGet, "/", nil, nil); !errors.Is(err, sdkerr.ErrNoLeader) {
		t.Errorf("no leader: %v", err)
	}
	f.leader = &api.Peer{Identifier: "self", Host: "10.0.0.1", Port: 7000}
	if err := p.toLeader(context.Background(), http.MethodGet, "/", nil, nil); !errors.Is(err, sdkerr.ErrNotLeader) {
		t.Errorf("self: %v", err)
	}
	if c := f.calls2(); len(c) != 0 {
		t.Errorf("calls = %v, want none", c)
	}
}

// TestMembershipChangesWaitOutNoLeader: a Join or RemovePeer that meets no
// leader, here (an election) or at the leader it asked (a lease renewed
// late), waits for one and asks again, instead of failing at once.
func TestMembershipChangesWaitOutNoLeader(t *testing.T) {
	lead := &api.Peer{Identifier: "lead", Host: "10.0.0.2", Port: 7000}
	join := func(p *Protocol) error {
		_, err := p.Join(context.Background(), api.JoinRequest{Identifier: "new", Host: "10.0.0.9", Port: 7000, ClusterName: "c1"})
		return err
	}
	remove := func(p *Protocol) error { return p.RemovePeer(context.Background(), "other") }
	for _, op := range []struct {
		name string
		do   func(*Protocol) error
	}{{"join", join}, {"remove", remove}} {
		// No leader here: one is elected 50 ms later.
		f := &fake{waitLeader: true, answer: func(call, any, any) error { return nil }}
		p := newFake(t, f)
		go func() {
			time.Sleep(50 * time.Millisecond)
			f.setLeader(lead)
		}()
		if err := op.do(p); err != nil {
			t.Errorf("%s during an election: %v", op.name, err)
		}
		if c := f.calls2(); len(c) != 1 || c[0].addr != "10.0.0.2:7000" {
			t.Errorf("%s during an election: calls %v, want one to the leader elected", op.name, c)
		}

		// The leader asked knows no leader once (its lease came late).
		n := 0
		f = &fake{leader: lead, waitLeader: true, answer: func(call, any, any) error {
			if n++; n == 1 {
				return fmt.Errorf("%w: no leader is known", sdkerr.ErrNoLeader)
			}
			return nil
		}}
		p = newFake(t, f)
		if err := op.do(p); err != nil {
			t.Errorf("%s with the leader's lease late: %v", op.name, err)
		}
		if c := f.calls2(); len(c) != 2 {
			t.Errorf("%s with the leader's lease late: calls %v, want two", op.name, c)
		}
	}
}

// TestNoLeaderHereAskedAtOnce: a membership change that meets no leader
// here asks the leader as soon as one is known, without the pause it
// makes after a known leader's "no leader" (a third of an election
// timeout: 10 s here, which would outlast the test's bound).
func TestNoLeaderHereAskedAtOnce(t *testing.T) {
	lead := &api.Peer{Identifier: "lead", Host: "10.0.0.2", Port: 7000}
	for name, do := range map[string]func(*Protocol) error{
		"join": func(p *Protocol) error {
			_, err := p.Join(context.Background(), api.JoinRequest{Identifier: "new", Host: "10.0.0.9", Port: 7000, ClusterName: "c1"})
			return err
		},
		"remove": func(p *Protocol) error { return p.RemovePeer(context.Background(), "other") },
	} {
		f := &fake{waitLeader: true, et: 30 * time.Second, answer: func(call, any, any) error { return nil }}
		p := newFake(t, f)
		go func() {
			time.Sleep(20 * time.Millisecond)
			f.setLeader(lead)
		}()
		began := time.Now()
		if err := do(p); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("%s took %v after a leader became known 20ms in, want no pause", name, took)
		}
	}
}

// TestRemoveSelfWaitsForTheNewLeader: the leader that removes itself hands
// leadership over, then knows no leader until the new one is heard of, and
// the new one answers "no leader" until its lease is granted: both are
// waited out, and the removal goes to the new leader.
func TestRemoveSelfWaitsForTheNewLeader(t *testing.T) {
	lead := &api.Peer{Identifier: "lead", Host: "10.0.0.2", Port: 7000}
	n := 0
	f := &fake{isLeader: true, waitLeader: true, answer: func(call, any, any) error {
		if n++; n == 1 {
			return fmt.Errorf("%w: no leader is known", sdkerr.ErrNoLeader)
		}
		return nil
	}}
	p := newFake(t, f)
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.setLeader(lead)
	}()
	if err := p.RemovePeer(context.Background(), "self"); err != nil {
		t.Fatalf("remove self: %v", err)
	}
	c := f.calls2()
	if len(c) != 2 || c[1].addr != "10.0.0.2:7000" || c[1].path != "/v1/peers/self" {
		t.Errorf("calls %v, want two to the new leader", c)
	}
}

// TestNoLeaderHoldEnds: with no leader at all, a membership change fails
// with ErrNoLeader once its hold (NoLeaderHold election timeouts) is used
// up, well before its context ends, and never asks anyone.
func TestNoLeaderHoldEnds(t *testing.T) {
	f := &fake{waitLeader: true}
	p := newFake(t, f)
	// Two holds of 1.5 s (the fake's election timeout is 150 ms) fit well
	// within the context.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, do := range map[string]func() error{
		"join": func() error {
			_, err := p.Join(ctx, api.JoinRequest{Identifier: "new", Host: "10.0.0.9", Port: 7000, ClusterName: "c1"})
			return err
		},
		"remove": func() error { return p.RemovePeer(ctx, "other") },
	} {
		if err := do(); !errors.Is(err, sdkerr.ErrNoLeader) || ctx.Err() != nil {
			t.Errorf("%s with no leader: %v (context: %v)", name, err, ctx.Err())
		}
	}
	if c := f.calls2(); len(c) != 0 {
		t.Errorf("calls = %v, want none", c)
	}
}

// TestAddable: a new member conflicts with a member of the same node ID
// but another identifier, with itself at another address, and with
// another member's address; the same member at the same address that is in
// the configuration is a member already.
func TestAddable(t *testing.T) {
	a := registry.Member{Identifier: "a", Host: "10.0.0.1", Port: 7000}
	reg := registry.New([]registry.Member{a})
	idA := config.NodeID("a")
	cs := raftpb.ConfState{Voters: []uint64{idA}}
	if already, err := addable(reg, cs, a, idA); err != nil || !already {
		t.Errorf("same member: %v, %v", already, err)
	}
	if already, err := addable(reg, raftpb.ConfState{}, a, idA); err != nil || already {
		t.Errorf("registered, not in conf: %v, %v; want to add it", already, err)
	}
	moved := a
	moved.Port = 7001
	if _, err := addable(reg, cs, moved, idA); !errors.Is(err, sdkerr.ErrConflict) || !strings.Contains(err.Error(), "already a member at 10.0.0.1:7000") {
		t.Errorf("moved: %v", err)
	}
	b := registry.Member{Identifier: "b", Host: "10.0.0.1", Port: 7000}
	if _, err := addable(reg, cs, b, config.NodeID("b")); !errors.Is(err, sdkerr.ErrConflict) || !strings.Contains(err.Error(), `address of member "a"`) {
		t.Errorf("same address: %v", err)
	}
	if _, err := addable(reg, cs, b, idA); !errors.Is(err, sdkerr.ErrConflict) || !strings.Contains(err.Error(), "same node ID") {
		t.Errorf("same node ID: %v", err)
	}
	b.Port = 7002
	if already, err := addable(reg, cs, b, config.NodeID("b")); err != nil || already {
		t.Errorf("new member: %v, %v", already, err)
	}
}

// TestQuorumAfterRemoval: removing a voter is allowed only while a
// majority of the voters left is alive, and the refusal names them.
func TestQuorumAfterRemoval(t *testing.T) {
	var ms []registry.Member
	var ids []uint64
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		ms = append(ms, registry.Member{Identifier: n, Host: "h-" + n, Port: 1})
		ids = append(ids, config.NodeID(n))
	}
	f := &fake{reg: registry.New(ms)}
	p := newFake(t, f)
	alive := map[uint64]bool{ids[0]: true, ids[1]: true}
	// Removing e leaves a, b, c, d: 2 alive of 4 need 3.
	err := p.quorumAfterRemoval(ids, ids[4], alive)
	if err == nil || !strings.Contains(err.Error(), "leave 4 voters (a, b, c, d), of which only 2 are alive as gossip sees them now (a, b); they need 3") {
		t.Errorf("2 of 4 alive: %v", err)
	}
	alive[ids[2]] = true
	if err := p.quorumAfterRemoval(ids, ids[4], alive); err != nil {
		t.Errorf("3 of 4 alive: %v", err)
	}
	if err := p.quorumAfterRemoval(ids[:2], ids[1], map[uint64]bool{}); err == nil || !strings.Contains(err.Error(), "only 0 are alive") {
		t.Errorf("none alive: %v", err)
	}
}

// TestAliveMembers: only gossip's alive members count, this peer always,
// and a gossip name whose hash is another registered member's does not.
func TestAliveMembers(t *testing.T) {
	f := &fake{
		reg: registry.New([]registry.Member{{Identifier: "a", Host: "h", Port: 1}}),
		gossip: []membership.Member{
			{Name: "a", State: membership.StateAlive},
			{Name: "b", State: membership.StateSuspect},
			{Name: "c", State: membership.StateAlive},
		},
	}
	p := newFake(t, f)
	got := p.aliveMembers()
	want := map[uint64]bool{config.NodeID("self"): true, config.NodeID("a"): true, config.NodeID("c"): true}
	if len(got) != len(want) {
		t.Fatalf("alive = %v, want %v", got, want)
	}
	for id := range want {
		if !got[id] {
			t.Errorf("alive lacks %x", id)
		}
	}
}

// TestExistingCluster: a new peer joins when a configured peer runs a
// cluster that does not list it; it founds when the peers list it or run
// none, and founds blind when none answers.
func TestExistingCluster(t *testing.T) {
	seeds := []config.PeerConfig{{Identifier: "a", Host: "10.0.0.2", Port: 7000}, {Identifier: "b", Host: "10.0.0.3", Port: 7000}}
	for _, tc := range []struct {
		name                string
		status              map[string]api.Status // by address; missing: no answer
		wantJoin, wantBlind bool
	}{
		{"none answers", nil, false, true},
		{"one runs it without us", map[string]api.Status{"10.0.0.3:7000": {Voters: []string{"b", "x"}}}, true, false},
		{"it lists us", map[string]api.Status{"10.0.0.2:7000": {Voters: []string{"a", "self"}}}, false, false},
		{"it lists us as learner", map[string]api.Status{"10.0.0.2:7000": {Voters: []string{"a"}, Learners: []string{"self"}}}, false, false},
		{"still starting", map[string]api.Status{"10.0.0.2:7000": {}}, false, false},
		{"masterless", map[string]api.Status{"10.0.0.2:7000": {Mode: config.ModeMasterless, Voters: []string{"a"}}}, false, false},
	} {
		f := &fake{answer: func(c call, _, out any) error {
			st, ok := tc.status[c.addr]
			if !ok {
				return errors.New("connection refused")
			}
			if c.method != http.MethodGet || c.path != "/v1/status" {
				return fmt.Errorf("unexpected %v", c)
			}
			*out.(*api.Status) = st
			return nil
		}}
		p := newFake(t, f, seeds...)
		joining, blind := p.ExistingCluster(context.Background())
		if joining != tc.wantJoin || blind != tc.wantBlind {
			t.Errorf("%s: joining %v blind %v, want %v %v", tc.name, joining, blind, tc.wantJoin, tc.wantBlind)
		}
	}
}

// TestMetadataSettled: a member's metadata is settled only once a
// committed entry carried this peer's current metadata and the registry
// holds it; a peer that is not a member has nothing to settle.
func TestMetadataSettled(t *testing.T) {
	f := &fake{}
	p := newFake(t, f)
	if !p.MetadataSettled() {
		t.Error("not a member: want settled")
	}
	f.reg = registry.New([]registry.Member{{Identifier: "self", Host: "10.0.0.1", Port: 7000, Metadata: map[string]any{"k": "v"}}})
	if p.MetadataSettled() {
		t.Error("founding snapshot only: want unsettled")
	}
	logged := map[string]any{"k": "v"}
	p.d.MetadataLogged = func() *map[string]any { return &logged }
	if !p.MetadataSettled() {
		t.Error("logged and held: want settled")
	}
	logged = map[string]any{"k": "old"}
	if p.MetadataSettled() {
		t.Error("logged an older value: want unsettled")
	}
}

// TestNoNode: what needs the node answers NotStarted before Start.
func TestNoNode(t *testing.T) {
	f := &fake{isLeader: true, leader: &api.Peer{Identifier: "self"}}
	p := newFake(t, f)
	if err := p.CommitMetadata(context.Background(), map[string]any{}); !errors.Is(err, sdkerr.ErrNotStarted) {
		t.Errorf("CommitMetadata: %v", err)
	}
	if err := p.RemovePeer(context.Background(), "a"); !errors.Is(err, sdkerr.ErrNotStarted) {
		t.Errorf("RemovePeer: %v", err)
	}
	if _, err := p.Join(context.Background(), api.JoinRequest{Identifier: "new", Host: "10.0.0.9", Port: 7000, ClusterName: "c1"}); !errors.Is(err, sdkerr.ErrNotStarted) {
		t.Errorf("Join: %v", err)
	}
	f.leader = nil
	if err := p.CommitMetadata(context.Background(), map[string]any{}); !errors.Is(err, sdkerr.ErrNoLeader) {
		t.Errorf("CommitMetadata without a leader: %v", err)
	}
}

// TestJoinLoopRetriesAndLearns: a refused self-registration is kept for
// JoinErr and retried; once a contact adds this peer, JoinErr clears and
// the peer learns where the other members are.
func TestJoinLoopRetriesAndLearns(t *testing.T) {
	seed := config.PeerConfig{Identifier: "a", Host: "10.0.0.2", Port: 7000}
	f := &fake{}
	var sent []api.JoinRequest
	f.answer = func(c call, body, out any) error {
		sent = append(sent, body.(api.JoinRequest))
		if len(sent) == 1 {
			return fmt.Errorf("%w: no", sdkerr.ErrWrongCluster)
		}
		out.(*api.JoinResult).Peers = []api.Member{
			{Peer: api.Peer{Identifier: "a", Host: "10.0.0.2", Port: 7000}},
			{Peer: api.Peer{Identifier: "self", Host: "10.0.0.1", Port: 7000}},
		}
		return nil
	}
	p := newFake(t, f, seed)
	learned := map[uint64]string{}
	p.d.Learned = func(id uint64, addr string) { learned[id] = addr }
	var errSeen error
	stop := func() bool {
		if errSeen == nil {
			errSeen = p.JoinErr()
		}
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.joinLoop(ctx, p.d.Seeds, stop)
	if !errors.Is(errSeen, sdkerr.ErrWrongCluster) || !strings.Contains(errSeen.Error(), "join via a (10.0.0.2:7000)") {
		t.Errorf("JoinErr after the refusal = %v", errSeen)
	}
	if err := p.JoinErr(); err != nil {
		t.Errorf("JoinErr after joining = %v", err)
	}
	if len(sent) != 2 || sent[1].Identifier != "self" || sent[1].ClusterName != "c1" || sent[1].Voter != nil || sent[1].Metadata["k"] != "v" {
		t.Errorf("requests %+v", sent)
	}
	if len(learned) != 1 || learned[config.NodeID("a")] != "10.0.0.2:7000" {
		t.Errorf("learned %v, want only a", learned)
	}
	if c := f.calls2(); len(c) != 2 || c[1] != (call{"10.0.0.2:7000", http.MethodPost, "/v1/join"}) {
		t.Errorf("calls %v", c)
	}
}

// TestNoLeaderHoldDocumented: the SDK's AddPeer and RemovePeer docs, and
// the API's join, remove and leave, give the hold this package uses.
func TestNoLeaderHoldDocumented(t *testing.T) {
	want := fmt.Sprintf("within %d election", NoLeaderHold)
	for _, doc := range []struct {
		path, what string
		n          int
	}{{"../../join.go", "AddPeer, RemovePeer", 2}, {"../../docs/api.md", "join, remove, leave", 3}} {
		b, err := os.ReadFile(doc.path)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\n// ", " ")), " ")
		if n := strings.Count(text, want); n != doc.n {
			t.Errorf("%s says %q %d times, want %d (%s)", doc.path, want, n, doc.n, doc.what)
		}
	}
}
