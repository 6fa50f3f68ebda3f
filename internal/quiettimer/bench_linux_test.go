package quiettimer

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkMovingDeadline is an idle follower's loop timer in miniature:
// an event every 6 ms pushes a 13 ms deadline later, so the deadline never
// comes. It reports the process's context switches per event
// (getrusage), which is what the timer's wake-ups cost: a time.Timer
// wakes the process at deadlines it was moved away from, a quiettimer
// does not. Compare the runtime and kernel cases.
//
//	go test -run - -bench MovingDeadline -benchtime 200x ./internal/quiettimer
func BenchmarkMovingDeadline(b *testing.B) {
	for _, tc := range []struct {
		name  string
		timer func() (c <-chan time.Time, reset func(time.Duration), stop func())
	}{
		{"runtime", func() (<-chan time.Time, func(time.Duration), func()) {
			tm := time.NewTimer(time.Hour)
			c := make(chan time.Time)
			go func() {
				// Never fires: a receive keeps the timer in the runtime's
				// heap, as the loop's select does.
				<-tm.C
				close(c)
			}()
			return c, func(d time.Duration) { tm.Reset(d) }, func() { tm.Reset(0); <-c }
		}},
		{"kernel", func() (<-chan time.Time, func(time.Duration), func()) {
			tm := New()
			return tm.C(), tm.Reset, tm.Close
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			fire, reset, stop := tc.timer()
			defer stop()
			// The events come from a ticker, a timer that never moves:
			// both cases pay for it alike.
			tick := time.NewTicker(6 * time.Millisecond)
			defer tick.Stop()
			before := switches(b)
			b.ResetTimer()
			reset(13 * time.Millisecond)
			for range b.N {
				select {
				case <-tick.C:
					reset(13 * time.Millisecond)
				case <-fire:
					b.Fatal("the deadline came")
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(switches(b)-before)/float64(b.N), "switches/op")
		})
	}
}

// switches is the process's context switches so far.
func switches(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Nvcsw + ru.Nivcsw
}
