//go:build !straydtls_parsecount

package record

func countParse() {}

// CountingParses reports whether Parses counts: the module was built with
// -tags straydtls_parsecount. Without the tag, Parse pays nothing for it.
const CountingParses = false

// Parses returns how many times Parse (and so Inspect) ran in this process,
// when CountingParses; otherwise 0.
func Parses() int64 { return 0 }
