// Package benchmarks holds the project's go test -bench suites: the cost of
// the filter's decision, the wrapper against the raw socket on loopback,
// batch reads, the adapters' demultiplexer against pion's listener, and the
// quiet-peer table. It has no non-test code. Results, the machine and the
// commands are in README.md; run.sh reproduces them.
package benchmarks
