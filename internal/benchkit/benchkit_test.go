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
