//go:build race

package sim

// raceEnabled reports whether the tests run with the race detector.
const raceEnabled = true
