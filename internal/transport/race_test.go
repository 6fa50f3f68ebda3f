//go:build race

package transport

// raceEnabled: the race detector slows copying by an order of magnitude,
// so the tests that move tens of MiB move fewer.
const raceEnabled = true
