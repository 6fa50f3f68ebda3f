//go:build race

package main

// raceEnabled reports whether the tests run with the race detector; the
// example binary they build then uses it too.
const raceEnabled = true
