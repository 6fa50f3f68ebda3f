//go:build !linux

package consensus

import "time"

// bootClock returns nil: only Linux offers a suspend-counting clock that
// QCluster reads (see NewClock).
func bootClock() func() time.Duration { return nil }
