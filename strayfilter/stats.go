package strayfilter

import "github.com/straydtls/straydtls/record"

// Stats is a snapshot of a Conn's counters.
type Stats struct {
	// Passed counts datagrams returned to the caller.
	Passed uint64
	// Strays counts the datagrams from quiet peers that were dropped, by
	// what their first record is.
	Strays [record.NumReasons]uint64
	// Closes counts quiet periods this Conn started or restarted, from
	// MarkClosed and from outgoing alerts; AlertCloses is the alert share.
	Closes      uint64
	AlertCloses uint64
	// Forgets counts quiet peers that opened a new association and so were
	// let through and forgotten.
	Forgets uint64
	// Evictions and QuietPeers describe the table, which may be shared:
	// quiet peers evicted early at the cap, and peers quiet now.
	Evictions  uint64
	QuietPeers int
}

// TotalStrays is the sum of Strays.
func (s Stats) TotalStrays() uint64 {
	var n uint64
	for _, d := range s.Strays {
		n += d
	}
	return n
}
