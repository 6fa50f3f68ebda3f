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
	idle, err := AnonReferencedKB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	touch()
	busy, err := AnonReferencedKB(os.Getpid())
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

// TestAnonReferencedLeavesOutFiles: only anonymous mappings count (no
// path, [heap], [stack], [anon:NAME]); the binary, libc and the vDSO do
// not, whatever their Referenced lines say.
func TestAnonReferencedLeavesOutFiles(t *testing.T) {
	const smaps = `00400000-00bf9000 r-xp 00000000 fe:00 9977998                            /tmp/q bin/qcluster.bin
Size:               8164 kB
Rss:                7324 kB
Referenced:         2540 kB
Anonymous:             0 kB
014eb000-0156f000 rw-p 010eb000 fe:00 9977998                            /tmp/q bin/qcluster.bin
Rss:                 172 kB
Referenced:          172 kB
0156f000-01590000 rw-p 00000000 00:00 0 
Rss:                  40 kB
Referenced:           20 kB
01c8e000-01caf000 rw-p 00000000 00:00 0                                  [heap]
Referenced:            8 kB
2702ba000000-2702ba800000 rw-p 00000000 00:00 0 
Size:               8192 kB
Referenced:          644 kB
7ffafb506000-7ffafb65c000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
Referenced:          700 kB
7ffafb700000-7ffafb710000 rw-p 00000000 00:00 0                          [anon:go: heap]
Referenced:            4 kB
7ffd1c2e3000-7ffd1c304000 rw-p 00000000 00:00 0                          [stack]
Referenced:           16 kB
7ffd1c3f2000-7ffd1c3f4000 r-xp 00000000 00:00 0                          [vdso]
Referenced:            4 kB
`
	got, err := anonReferencedKB(smaps)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(20 + 8 + 644 + 4 + 16); got != want {
		t.Errorf("anonReferencedKB = %d kB, want %d (the anonymous mappings only)", got, want)
	}
	for _, bad := range []string{"", "Referenced: 4 kB\n", "00400000-00bf9000 r-xp 00000000 fe:00 1\nReferenced: x kB\n"} {
		if _, err := anonReferencedKB(bad); err == nil {
			t.Errorf("anonReferencedKB(%q): no error", bad)
		}
	}
}
