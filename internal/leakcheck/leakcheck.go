// Package leakcheck checks, after a package's tests, that they left no
// goroutine running, allowing for the one kind that outlives a clean
// shutdown on purpose: memberlist's probe of a peer, under way when gossip
// shuts down, ends only at its probe timeout (longer under load, by
// memberlist's awareness multiplier). Nothing is ignored: the check waits
// up to 30 seconds for goroutines to end, then fails on any left.
package leakcheck

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// drain is how long VerifyTestMain waits for goroutines to end.
const drain = 30 * time.Second

// VerifyTestMain runs m's tests, waits for leftover goroutines to end, and
// fails the run (with goleak's report) if any remain. Call it from
// TestMain.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(drainAfter{m})
}

type drainAfter struct{ m *testing.M }

func (d drainAfter) Run() int {
	code := d.m.Run()
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && goleak.Find() != nil {
		time.Sleep(50 * time.Millisecond)
	}
	return code
}
