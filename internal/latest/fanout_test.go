package latest

import (
	"context"
	"testing"
	"time"
)

type val struct {
	v     int
	index uint64
}

func newTestFanout() *Fanout[val] {
	return NewFanout(func(a, b val) bool { return a.v == b.v }, func(x *val, i uint64) { x.index = i })
}

// recv receives from ch within a deadline.
func recv(t *testing.T, ch <-chan val) (val, bool) {
	t.Helper()
	select {
	case x, ok := <-ch:
		return x, ok
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received within 10s")
		return val{}, false
	}
}

// TestFanoutPublishesChangesNumbered: a subscriber first gets the initial
// value (none published) or the last one; only values that differ are
// published, numbered from 1; a slow reader gets the latest.
func TestFanoutPublishesChangesNumbered(t *testing.T) {
	f := newTestFanout()
	early := f.Subscribe(context.Background(), val{v: -1})
	if x, _ := recv(t, early); x.v != -1 || x.index != 0 {
		t.Fatalf("before any Publish: %+v, want the initial value", x)
	}
	if !f.Publish(val{v: 1}) || f.Publish(val{v: 1}) || !f.Publish(val{v: 2}) || !f.Publish(val{v: 3}) {
		t.Fatal("Publish: want true, false (same), true, true")
	}
	if f.Index() != 3 {
		t.Fatalf("Index %d, want 3", f.Index())
	}
	if x, _ := recv(t, early); x.v != 3 || x.index != 3 {
		t.Fatalf("slow reader got %+v, want the latest {3 3}", x)
	}
	late := f.Subscribe(context.Background(), val{v: -1})
	if x, _ := recv(t, late); x.v != 3 || x.index != 3 {
		t.Fatalf("late subscriber got %+v, want the last {3 3}", x)
	}
	if f.Count() != 2 {
		t.Fatalf("Count %d, want 2", f.Count())
	}
	f.Close()
	for _, ch := range []<-chan val{early, late} {
		if _, ok := recv(t, ch); ok {
			t.Fatal("a channel still open after Close")
		}
	}
	if f.Publish(val{v: 4}) || f.Count() != 0 {
		t.Fatal("a closed Fanout published or kept subscriptions")
	}
	if _, ok := recv(t, f.Subscribe(context.Background(), val{})); ok {
		t.Fatal("Subscribe on a closed Fanout: an open channel")
	}
}

// TestFanoutSubscriptionEndsWithCtx: the channel closes when its ctx ends,
// and the subscription is gone.
func TestFanoutSubscriptionEndsWithCtx(t *testing.T) {
	f := newTestFanout()
	ctx, cancel := context.WithCancel(context.Background())
	ch := f.Subscribe(ctx, val{})
	recv(t, ch)
	cancel()
	if _, ok := recv(t, ch); ok {
		t.Fatal("the channel is open after its ctx ended")
	}
	if f.Count() != 0 {
		t.Fatalf("Count %d after the ctx ended, want 0", f.Count())
	}
	f.Close()
}
