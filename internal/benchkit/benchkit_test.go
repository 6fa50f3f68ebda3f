package benchkit

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ds := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]time.Duration{50: 5, 90: 9, 99: 10, 0: 1} {
		if got := Percentile(ds, p); got != want {
			t.Errorf("Percentile(%v) = %v, want %v", p, got, want)
		}
	}
}

func TestParseStatTicks(t *testing.T) {
	// A command name with spaces and a parenthesis; utime 7, stime 5.
	stat := "42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 7 5 0 0 20 0 4 0 100 1000 200"
	got, err := parseStatTicks(stat)
	if err != nil || got != 12 {
		t.Fatalf("parseStatTicks = %d, %v; want 12", got, err)
	}
	if _, err := parseStatTicks("42 (x) S 1"); err == nil {
		t.Error("a short stat line was accepted")
	}
}

func TestSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if _, err := CPUTicks(os.Getpid()); err != nil {
		t.Error(err)
	}
	if kb, err := RSSKB(os.Getpid()); err != nil || kb <= 0 {
		t.Errorf("RSSKB = %d, %v", kb, err)
	}
}

// TestReferenced: after ClearReferenced, memory the process does not touch
// is not counted, and memory it touches again is.
func TestReferenced(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	const size = 32 << 20
	buf := make([]byte, size)
	touch := func() {
		for i := 0; i < size; i += 4096 {
			buf[i]++
		}
	}
	touch() // resident now
	if err := ClearReferenced(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	idle, err := ReferencedKB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	touch()
	busy, err := ReferencedKB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(buf)
	if rss, _ := RSSKB(os.Getpid()); idle >= rss-size/1024/2 {
		t.Errorf("right after ClearReferenced %d kB referenced, of %d kB resident (32 MiB of it untouched)", idle, rss)
	}
	if busy-idle < size/1024*3/4 {
		t.Errorf("touching 32 MiB again raised the referenced memory from %d to %d kB", idle, busy)
	}
}
