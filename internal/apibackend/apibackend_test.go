package apibackend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qcluster/qcluster/api"
	"github.com/qcluster/qcluster/internal/leakcheck"
	"github.com/qcluster/qcluster/internal/sdkerr"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// state is a fake peer state: its index, and whether the peer was closing
// when it was published.
type state struct {
	index   uint64
	closing bool
}

// event is a fake peer event.
type event struct {
	name       string
	leadership bool
}

const base = 1_000_000

// fakeDeps returns Deps over a fake peer that leads, whose states and
// events come from the channels given.
func fakeDeps(states chan state, events chan event) Deps[state, event] {
	return Deps[state, event]{
		Base:       base,
		Identifier: "self",
		Status:     func() api.Status { return api.Status{Identifier: "self", Index: base + 7, Term: 3} },
		Watch:      func(context.Context) <-chan state { return states },
		StatusOf: func(s state) (api.Status, bool) {
			return api.Status{Index: base + s.index}, !s.closing
		},
		Peers:          func() api.PeerList { return api.PeerList{Index: base + 1} },
		WaitMembership: func(context.Context, uint64) error { return sdkerr.ErrClosed },
		Events:         func(context.Context) <-chan event { return events },
		MemberEvent: func(e event) (api.MemberEvent, bool) {
			return api.MemberEvent{Type: e.name}, !e.leadership
		},
		Closed:            func() bool { return false },
		IsLeader:          func() bool { return true },
		Transfer:          func(context.Context, string) error { return nil },
		TransferTimeout:   func(string) time.Duration { return time.Minute },
		MembershipTimeout: func() time.Duration { return time.Minute },
		SetHealth:         func(string, string) error { return nil },
		SetMetadata:       func(context.Context, map[string]any) error { return nil },
		Self:              func() (api.Member, bool) { return api.Member{}, false },
		Join:              func(context.Context, api.JoinRequest) (api.JoinResult, error) { return api.JoinResult{}, nil },
		RemovePeer:        func(context.Context, string) error { return nil },
		Leave:             func(context.Context) error { return nil },
		CloseAfterAnswer:  func() {},
		APIError:          func(err error) error { return err },
	}
}

// TestWatchEndsWhenThePeerCloses: the Status stream carries the peer's
// states, and ends, without the state Close publishes, when the peer
// closes.
func TestWatchEndsWhenThePeerCloses(t *testing.T) {
	states := make(chan state, 2)
	b := New(fakeDeps(states, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := b.Watch(ctx)
	states <- state{index: 5}
	select {
	case st := <-out:
		if st.Index != base+5 {
			t.Fatalf("index %d, want %d", st.Index, base+5)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no status")
	}
	states <- state{index: 6, closing: true}
	select {
	case st, ok := <-out:
		if ok {
			t.Fatalf("got %+v after the peer closed; want the stream to end", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end")
	}
}

// TestWaitPeers: an index of this process waits (and a closing peer
// answers unavailable); an index below the base, from another process, is
// answered at once.
func TestWaitPeers(t *testing.T) {
	d := fakeDeps(nil, nil)
	var asked atomic.Uint64
	d.WaitMembership = func(_ context.Context, index uint64) error {
		asked.Store(index)
		return sdkerr.ErrClosed
	}
	b := New(d)
	if _, err := b.WaitPeers(context.Background(), base+3); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("closing: %v, want unavailable", err)
	}
	if asked.Load() != 3 {
		t.Errorf("waited for SDK index %d, want 3", asked.Load())
	}
	l, err := b.WaitPeers(context.Background(), 12)
	if err != nil || l.Index != base+1 {
		t.Errorf("another process's index: %+v, %v; want the list at once", l, err)
	}
}

// TestTransferErrors: the SDK's errors of a hand-over become the API's.
func TestTransferErrors(t *testing.T) {
	for _, tc := range []struct {
		target string
		err    error
		want   error
		msg    string
	}{
		{"b", sdkerr.ErrNotLeader, api.ErrNotLeader, ""},
		{"b", fmt.Errorf("%w: b is behind", sdkerr.ErrTransferFailed), api.ErrTransferFailed, "b is behind"},
		{"", sdkerr.ErrUnknownPeer, api.ErrNoTransferee, ""},
		{"x", sdkerr.ErrUnknownPeer, api.ErrUnknownPeer, `"x" is not another member`},
		{"b", sdkerr.ErrClosed, api.ErrUnavailable, ""},
		{"b", sdkerr.ErrNotStarted, api.ErrUnavailable, ""},
		{"", context.DeadlineExceeded, context.DeadlineExceeded, "did not move to another peer within 1m0s"},
	} {
		d := fakeDeps(nil, nil)
		d.Transfer = func(context.Context, string) error { return tc.err }
		_, err := New(d).Transfer(context.Background(), tc.target)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q, %v: got %v, want %v with %q", tc.target, tc.err, err, tc.want, tc.msg)
		}
	}
	d := fakeDeps(nil, nil)
	d.IsLeader = func() bool { return false }
	if _, err := New(d).Transfer(context.Background(), "b"); !errors.Is(err, api.ErrNotLeader) {
		t.Errorf("follower: %v", err)
	}
	d = fakeDeps(nil, nil)
	res, err := New(d).Transfer(context.Background(), "b")
	if err != nil || res.From != "self" || res.Term != 3 || res.Index != base+7 {
		t.Errorf("done: %+v, %v", res, err)
	}
}

// TestEventsOnlyMembership: leadership events are left out of the
// membership event stream.
func TestEventsOnlyMembership(t *testing.T) {
	events := make(chan event, 3)
	events <- event{name: "joined"}
	events <- event{name: "leader", leadership: true}
	events <- event{name: "left"}
	close(events)
	var got []string
	for ev := range New(fakeDeps(nil, events)).Events(context.Background()) {
		got = append(got, ev.Type)
	}
	if strings.Join(got, ",") != "joined,left" {
		t.Errorf("events %v, want joined,left", got)
	}
}

// TestLeaveClosesAfterAnswer: a successful leave closes the peer in the
// background; a failed one does not.
func TestLeaveClosesAfterAnswer(t *testing.T) {
	d := fakeDeps(nil, nil)
	closed := make(chan struct{})
	d.CloseAfterAnswer = func() { close(closed) }
	d.Leave = func(context.Context) error { return sdkerr.ErrConflict }
	if err := New(d).Leave(context.Background()); !errors.Is(err, sdkerr.ErrConflict) {
		t.Errorf("failed leave: %v", err)
	}
	d.Leave = func(context.Context) error { return nil }
	if err := New(d).Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("not closed after the answer")
	}
}

// TestSetMetadataWithoutSelf: a peer that cannot find itself among the
// members after the change answers unavailable.
func TestSetMetadataWithoutSelf(t *testing.T) {
	if _, err := New(fakeDeps(nil, nil)).SetMetadata(context.Background(), nil); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("got %v, want unavailable", err)
	}
}
