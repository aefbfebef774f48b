package relay

import (
	"sync/atomic"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/strayfilter"
)

type counters struct {
	fromClients       atomic.Uint64
	toServer          atomic.Uint64
	toClient          atomic.Uint64
	opened            atomic.Uint64
	serverClosed      atomic.Uint64
	idleClosed        atomic.Uint64
	handshakeTimeouts atomic.Uint64
	refused           atomic.Uint64
	dialErrors        atomic.Uint64
	writeErrors       atomic.Uint64
	droppedUnknown    atomic.Uint64
	rehandshakes      atomic.Uint64
	replaced          atomic.Uint64
}

// Stats is a snapshot of a Relay's counters since it was made.
type Stats struct {
	// Associations is the number of associations now.
	Associations int
	// Opened counts associations started (each on a fresh upstream socket).
	Opened uint64
	// ServerClosed, IdleClosed and HandshakeTimeouts count associations
	// that ended because the server sent a closing alert, because nothing
	// crossed for the idle timeout, or because the server never sent an
	// encrypted record within the handshake timeout.
	ServerClosed, IdleClosed, HandshakeTimeouts uint64
	// Rehandshakes counts associations a client started from the same
	// addr:port while its previous one was still live (a ClientHello after
	// the handshake: a reboot, or a reconnect that overtook the server's
	// close_notify); Replaced counts those whose handshake got past its
	// clear-text part and so ended the previous one.
	Rehandshakes, Replaced uint64
	// Refused counts ClientHellos dropped because the relay was at its cap
	// on associations; DialErrors those for which no upstream socket could
	// be opened.
	Refused, DialErrors uint64
	// FromClients counts datagrams read from clients; ToServer and ToClient
	// those forwarded each way.
	FromClients, ToServer, ToClient uint64
	// DroppedQuiet counts, by reason, datagrams from clients in their quiet
	// period that did not open an association: the strays.
	DroppedQuiet [strayfilter.NumReasons]uint64
	// DroppedUnknown counts datagrams from clients with no association and
	// no quiet period that did not open one (an association that timed out,
	// a relay restart, a quiet period that ended or was evicted, garbage),
	// and protected records for an association whose server has not
	// answered yet (what a previous association left in flight). From a
	// quiet client, both count in DroppedQuiet instead.
	DroppedUnknown uint64
	// WriteErrors counts datagrams a socket refused to send.
	WriteErrors uint64
	// Table is the quiet-client table's own counters.
	Table conntrack.Stats
}

// DroppedStrays sums DroppedQuiet.
func (s Stats) DroppedStrays() uint64 {
	var n uint64
	for _, v := range s.DroppedQuiet {
		n += v
	}
	return n
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	n := r.count
	r.mu.Unlock()
	c := &r.counters
	s := Stats{
		Associations:      n,
		Opened:            c.opened.Load(),
		ServerClosed:      c.serverClosed.Load(),
		IdleClosed:        c.idleClosed.Load(),
		HandshakeTimeouts: c.handshakeTimeouts.Load(),
		Rehandshakes:      c.rehandshakes.Load(),
		Replaced:          c.replaced.Load(),
		Refused:           c.refused.Load(),
		DialErrors:        c.dialErrors.Load(),
		FromClients:       c.fromClients.Load(),
		ToServer:          c.toServer.Load(),
		ToClient:          c.toClient.Load(),
		DroppedUnknown:    c.droppedUnknown.Load(),
		WriteErrors:       c.writeErrors.Load(),
		Table:             r.table.Stats(),
	}
	for i := range s.DroppedQuiet {
		s.DroppedQuiet[i] = r.dropQuiet[i].Load()
	}
	return s
}

// Map returns the counters as a flat map with stable snake_case keys, for
// expvar and for log lines.
func (s Stats) Map() map[string]uint64 {
	m := map[string]uint64{
		"associations":       uint64(s.Associations),
		"opened":             s.Opened,
		"server_closed":      s.ServerClosed,
		"idle_closed":        s.IdleClosed,
		"handshake_timeouts": s.HandshakeTimeouts,
		"rehandshakes":       s.Rehandshakes,
		"replaced":           s.Replaced,
		"refused":            s.Refused,
		"dial_errors":        s.DialErrors,
		"from_clients":       s.FromClients,
		"to_server":          s.ToServer,
		"to_client":          s.ToClient,
		"dropped_strays":     s.DroppedStrays(),
		"dropped_unknown":    s.DroppedUnknown,
		"write_errors":       s.WriteErrors,
		"quiet_clients":      uint64(s.Table.Len),
		"quiet_evictions":    s.Table.Evictions,
	}
	for i, v := range s.DroppedQuiet {
		m["dropped_stray_"+strayfilter.Reason(i).String()] = v
	}
	return m
}
