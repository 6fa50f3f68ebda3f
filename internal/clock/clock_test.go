package clock

import "testing"

func TestMonotonicStartsAtOriginAndNeverGoesBack(t *testing.T) {
	c := Monotonic()
	prev := c()
	if prev < Origin {
		t.Fatalf("first reading %v, want at least %v", prev, Origin)
	}
	for range 1000 {
		now := c()
		if now < prev {
			t.Fatalf("went back from %v to %v", prev, now)
		}
		prev = now
	}
	if FromOrigin(0) != Origin {
		t.Fatal("FromOrigin(0) is not Origin")
	}
}
