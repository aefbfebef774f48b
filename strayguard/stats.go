package strayguard

import (
	"time"

	"github.com/straydtls/straydtls/record"
)

// The programs' counters (bpf/guard.c's enum counter): the first
// record.NumReasons count drops by record.Reason, the rest follow.
const (
	counterQuieted = int(record.NumReasons) + iota
	counterEnded
	counterExpired
	counterHellos
	counterForeign
	numCounters
)

// Stats is a snapshot of a Guard's counters, summed over CPUs. The counters
// live in a map pinned with the programs, so they carry on across restarts
// of a pinned Guard's process.
type Stats struct {
	// Strays counts the datagrams dropped from quiet clients, by what their
	// first record is (record.Record.Reason).
	Strays [record.NumReasons]uint64
	// ClosingAlerts counts the server's datagrams that carried a closing
	// alert, each starting or restarting a client's quiet period.
	ClosingAlerts uint64
	// ServerHellos counts quiet periods ended early because the server
	// answered the client's new handshake with a ServerHello.
	ServerHellos uint64
	// Expired counts quiet periods found over on a client's next datagram.
	Expired uint64
	// Hellos counts ClientHellos let through from quiet clients.
	Hellos uint64
	// Foreign counts datagrams of other protocols (first byte outside
	// 20..63) let through from quiet clients.
	Foreign uint64
	// QuietClients is the number of entries in the quiet map, expired ones
	// not yet removed included.
	QuietClients int
}

// TotalStrays is the sum of Strays.
func (s Stats) TotalStrays() uint64 {
	var n uint64
	for _, v := range s.Strays {
		n += v
	}
	return n
}

// Map returns the counters by the names the daemon exports them under.
func (s Stats) Map() map[string]uint64 {
	return map[string]uint64{
		"quiet_clients":  uint64(s.QuietClients),
		"closing_alerts": s.ClosingAlerts,
		"server_hellos":  s.ServerHellos,
		"expired":        s.Expired,
		"hellos":         s.Hellos,
		"foreign":        s.Foreign,
		"strays":         s.TotalStrays(),
	}
}

// fromCounters fills s from the summed counters.
func (s *Stats) fromCounters(c *[numCounters]uint64) {
	copy(s.Strays[:], c[:record.NumReasons])
	s.ClosingAlerts = c[counterQuieted]
	s.ServerHellos = c[counterEnded]
	s.Expired = c[counterExpired]
	s.Hellos = c[counterHellos]
	s.Foreign = c[counterForeign]
}

// ProgramStats is what the kernel counted of one program's runs.
type ProgramStats struct {
	Runs    uint64
	RunTime time.Duration
}

// PerRun is the mean run time, 0 before the first counted run.
func (p ProgramStats) PerRun() time.Duration {
	if p.Runs == 0 {
		return 0
	}
	return p.RunTime / time.Duration(p.Runs)
}
