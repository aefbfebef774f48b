//go:build straydtls_parsecount

package record

import "sync/atomic"

// parses counts Parse calls, for the tests that check a datagram is parsed
// once on its way through the packages (built with -tags
// straydtls_parsecount; without the tag nothing is counted and the counter
// costs nothing).
var parses atomic.Int64

func countParse() { parses.Add(1) }

// CountingParses reports whether Parses counts: the module was built with
// -tags straydtls_parsecount.
const CountingParses = true

// Parses returns how many times Parse (and so Inspect) ran in this process.
func Parses() int64 { return parses.Load() }
