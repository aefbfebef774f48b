//go:build race

package dtlstest

// RaceEnabled says the race detector is on: it slows a process five to ten
// times, so load tests scale themselves down.
const RaceEnabled = true
