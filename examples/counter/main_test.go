package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qcluster/qcluster"
)

// lines is the three peers' output, each line with when it was written.
type lines struct {
	mu  sync.Mutex
	all []line
}

type line struct {
	at   time.Time
	text string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
		l.all = append(l.all, line{time.Now(), s})
	}
	return len(p), nil
}

func (l *lines) snapshot() []line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

var (
	addRE    = regexp.MustCompile(`^server_[abc]: counter (\d+) -> (\d+) \(revision \d+\)$`)
	reportRE = regexp.MustCompile(`^(server_[abc]): report: (started, fencing token|done, token) (\d+)$`)
)

// TestCounterAndLock runs the example's three peers (the shipped configs
// on free ports) in one process, fast, and checks what they print: every
// increment of the counter is counted exactly once (the values they write
// are 1, 2, 3, ... with no value twice), and the report jobs never
// overlap, each with a larger fencing token than the one before.
func TestCounterAndLock(t *testing.T) {
	ids := []string{"server_a", "server_b", "server_c"}
	port := map[string]int{}
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port[id] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out lines
	var wg sync.WaitGroup
	errs := make(chan error, len(ids))
	for _, id := range ids {
		cfg, err := qcluster.LoadConfig(id + ".json")
		if err != nil {
			t.Fatal(err)
		}
		cfg.ListenHost, cfg.ListenPort, cfg.DataDir = "127.0.0.1", port[id], filepath.Join(dir, id)
		for i := range cfg.Peers {
			cfg.Peers[i].Host, cfg.Peers[i].Port = "127.0.0.1", port[cfg.Peers[i].Identifier]
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, id+".json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- run(ctx, path, &out, timing{add: 50 * time.Millisecond, report: 200 * time.Millisecond, job: 80 * time.Millisecond})
		}()
	}
	count := func(re *regexp.Regexp) int {
		n := 0
		for _, l := range out.snapshot() {
			if re.MatchString(l.text) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for (count(addRE) < 30 || count(reportRE) < 6) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the output, bounded by the deadline
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("run: %v", err)
		}
	}

	var written []int
	var holder string
	var last uint64
	for _, l := range out.snapshot() {
		if m := addRE.FindStringSubmatch(l.text); m != nil {
			from, _ := strconv.Atoi(m[1])
			to, _ := strconv.Atoi(m[2])
			if to != from+1 {
				t.Errorf("%q: not an increment", l.text)
			}
			written = append(written, to)
		}
		if m := reportRE.FindStringSubmatch(l.text); m != nil {
			token, _ := strconv.ParseUint(m[3], 10, 64)
			if strings.HasPrefix(m[2], "started") {
				if holder != "" {
					t.Errorf("%q while %s still ran its report", l.text, holder)
				}
				if token <= last {
					t.Errorf("%q: token not above the previous holder's %d", l.text, last)
				}
				holder, last = m[1], token
			} else {
				holder = ""
			}
		}
	}
	slices.Sort(written)
	if len(written) < 30 {
		t.Fatalf("only %d increments printed", len(written))
	}
	for i, v := range written {
		if v != i+1 {
			t.Fatalf("the values written, sorted, are %v...: %d at position %d (a lost or doubled increment)", written[:min(len(written), i+3)], v, i)
		}
	}
}
