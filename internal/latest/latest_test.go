package latest

import (
	"sync"
	"testing"
)

func TestReaderGetsTheLatest(t *testing.T) {
	s := New[int]()
	for i := range 100 {
		if !s.Set(i) { // never blocks though nobody reads
			t.Fatalf("Set(%d) refused on an open slot", i)
		}
	}
	if v := <-s.C(); v != 99 {
		t.Fatalf("got %d, want the latest, 99", v)
	}
	select {
	case v := <-s.C():
		t.Fatalf("a second value %d after one Set was read", v)
	default:
	}
}

func TestCloseKeepsTheLastValue(t *testing.T) {
	s := New[string]()
	s.Set("a")
	if !s.Close() || s.Close() {
		t.Fatal("Close reports whether it closed, once")
	}
	if s.Set("b") {
		t.Fatal("Set after Close stored a value")
	}
	if v, ok := <-s.C(); !ok || v != "a" {
		t.Fatalf("after Close: %q %v, want the value set before", v, ok)
	}
	if _, ok := <-s.C(); ok {
		t.Fatal("C not closed")
	}
}

// TestConcurrentWritersNeverBlock: writers racing with each other and a
// reader never block, and the reader ends on the last value written.
func TestConcurrentWritersNeverBlock(t *testing.T) {
	s := New[int]()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				s.Set(w*1000 + i)
			}
		}()
	}
	last := make(chan int, 1)
	go func() {
		v := 0
		for v = range s.C() {
		}
		last <- v
	}()
	wg.Wait()
	s.Set(-1)
	s.Close()
	if v := <-last; v != -1 {
		t.Fatalf("the reader ended on %d, want the last value, -1", v)
	}
}
