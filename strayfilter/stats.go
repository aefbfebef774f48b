package strayfilter

import "github.com/straydtls/straydtls/record"

// Stats is a snapshot of a Conn's counters.
type Stats struct {
	// Passed counts the datagrams the batch reads (ReadBatch,
	// ReadBatchAddrPort) returned, exactly. The single reads (ReadFrom and
	// the typed ReadFromUDP*, ReadMsgUDP*) do not count what they pass, so
	// that with no quiet peer a read costs one atomic load and a branch and
	// writes nothing: Passed is 0 for a Conn read only that way.
	Passed uint64
	// Strays counts the datagrams from quiet peers that were dropped, by
	// what their first record is, on every read path, exactly.
	Strays [record.NumReasons]uint64
	// Closes counts quiet periods this Conn started or restarted, from
	// MarkClosed and from outgoing alerts; AlertCloses is the alert share.
	Closes      uint64
	AlertCloses uint64
	// Forgets counts quiet peers that opened a new association and so were
	// let through and forgotten.
	Forgets uint64
	// Echoes counts closing alerts sent again to quiet peers (WithCloseEcho).
	Echoes uint64
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
