package clock

import (
	"testing"
	"time"
)

// NodeNow adds whichever of time.Now's clocks moved more since the anchor:
// the monotonic one (a wall clock stepped back), or the wall one (a
// suspend, which stops the monotonic clock).
func TestAnchorNodeNow(t *testing.T) {
	a := Anchor{Mono: 10 * time.Second, Wall: 1_000_000_000_000, Node: 100 * time.Second}
	for _, tc := range []struct {
		name string
		mono time.Duration
		wall time.Duration // since a.Wall
		want time.Duration
	}{
		{"at the anchor", 10 * time.Second, 0, 100 * time.Second},
		{"both moved alike", 11 * time.Second, time.Second, 101 * time.Second},
		{"suspend: wall moved more", 11 * time.Second, 30 * time.Second, 130 * time.Second},
		{"wall stepped back", 12 * time.Second, -time.Hour, 102 * time.Second},
	} {
		if got := a.NodeNow(tc.mono, a.Wall+int64(tc.wall)); got != tc.want {
			t.Errorf("%s: NodeNow = %v, want %v", tc.name, got, tc.want)
		}
	}
}
