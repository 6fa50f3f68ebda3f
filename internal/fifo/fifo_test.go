package fifo

import (
	"sync"
	"testing"
	"time"
)

func TestQueueOrderAndLimit(t *testing.T) {
	q := New[int](100)
	for i := range 100 {
		if !q.Push(i) {
			t.Fatalf("Push(%d) refused below the limit", i)
		}
	}
	if q.Push(100) {
		t.Fatal("Push beyond the limit was accepted")
	}
	if q.Len() != 100 {
		t.Fatalf("Len = %d, want 100", q.Len())
	}
	// Interleave pops and pushes across the ring's wrap.
	for i := range 50 {
		if v, ok := q.Pop(); !ok || v != i {
			t.Fatalf("Pop = %d, %v; want %d", v, ok, i)
		}
	}
	for i := 100; i < 150; i++ {
		if !q.Push(i) {
			t.Fatalf("Push(%d) refused with room", i)
		}
	}
	for i := 50; i < 150; i++ {
		if v, ok := q.Pop(); !ok || v != i {
			t.Fatalf("Pop = %d, %v; want %d", v, ok, i)
		}
	}
	if _, ok := q.Pop(); ok {
		t.Fatal("Pop on an empty queue reported an item")
	}
}

// TestQueueMemoryFollowsLength: an idle queue holds a small ring however
// many items passed through it, and a burst's ring is given back when it
// drains.
func TestQueueMemoryFollowsLength(t *testing.T) {
	q := New[[160]byte](4096)
	for range 10000 {
		q.Push([160]byte{})
		q.Pop()
	}
	if got := len(q.ring); got > minRing {
		t.Fatalf("ring after 10000 single items = %d slots, want at most %d", got, minRing)
	}
	for range 1000 {
		q.Push([160]byte{})
	}
	if got := len(q.ring); got < 1000 || got > 2048 {
		t.Fatalf("ring holding 1000 items = %d slots", got)
	}
	for range 1000 {
		q.Pop()
	}
	if got := len(q.ring); got > minRing {
		t.Fatalf("ring after the burst drained = %d slots, want at most %d", got, minRing)
	}
}

func TestQueuePopClearsSlot(t *testing.T) {
	q := New[*int](10)
	x := 1
	q.Push(&x)
	q.Push(&x)
	q.Pop()
	if q.ring[0] != nil {
		t.Fatal("a popped slot still references its item")
	}
}

func TestQueueReady(t *testing.T) {
	q := New[int](10)
	select {
	case <-q.Ready():
		t.Fatal("Ready fired on an empty queue")
	default:
	}
	q.Push(1)
	q.Push(2)
	select {
	case <-q.Ready():
	default:
		t.Fatal("Ready did not fire after a push into an empty queue")
	}
	q.Pop() // the consumer stops with an item left
	q.Notify()
	select {
	case <-q.Ready():
	default:
		t.Fatal("Ready did not fire after Notify with an item left")
	}
	q.Pop()
	q.Notify()
	select {
	case <-q.Ready():
		t.Fatal("Notify on an empty queue made Ready fire")
	default:
	}
}

// TestQueueConcurrent: a consumer that waits on Ready and pops until empty
// gets every item of several producers, in each producer's order.
func TestQueueConcurrent(t *testing.T) {
	const producers, each = 4, 5000
	q := New[[2]int](64)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := 0; i < each; {
				if q.Push([2]int{p, i}) {
					i++
				} else {
					time.Sleep(time.Microsecond)
				}
			}
		})
	}
	next := make([]int, producers)
	got := 0
	deadline := time.After(60 * time.Second)
	for got < producers*each {
		select {
		case <-q.Ready():
		case <-deadline:
			t.Fatalf("got %d of %d items", got, producers*each)
		}
		for {
			v, ok := q.Pop()
			if !ok {
				break
			}
			if v[1] != next[v[0]] {
				t.Fatalf("producer %d: got item %d, want %d", v[0], v[1], next[v[0]])
			}
			next[v[0]]++
			got++
		}
	}
	wg.Wait()
}
