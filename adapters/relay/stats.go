package relay

import (
	"sync/atomic"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/record"
)

type counters struct {
	fromClients    atomic.Uint64
	toServer       atomic.Uint64
	toClient       atomic.Uint64
	dialErrors     atomic.Uint64
	writeErrors    atomic.Uint64
	droppedUnknown atomic.Uint64
	droppedInvalid atomic.Uint64
	naiveOpened    atomic.Uint64
	echoes         atomic.Uint64
	upstreamErrors atomic.Uint64
}

// Stats is a snapshot of a Relay's counters since it was made.
type Stats struct {
	// Associations is the number of associations now, of every state;
	// Unverified, Pending and Live split it: not yet proved, handshaking,
	// and completed (Closing of those after the client's closing alert).
	Associations                       int
	Unverified, Pending, Live, Closing int
	// Opened counts associations started (each on a fresh upstream socket).
	Opened uint64
	// Adopted counts those a client's CID record opened, not a ClientHello:
	// clients of associations the relay lost (a cold restart) that their
	// server follows by CID (see the package documentation).
	Adopted uint64
	// Verified counts clients that proved their address (echoed the
	// server's cookie, or answered its first flight).
	Verified uint64
	// ServerClosed, IdleClosed and HandshakeTimeouts count associations
	// that ended because the server sent a closing alert, because nothing
	// crossed for the idle timeout, or because a proved handshake did not
	// complete in time.
	ServerClosed, IdleClosed, HandshakeTimeouts uint64
	// ClientAborted counts proved handshakes that ended with the client's
	// fatal alert (it gave up; the server abandons the handshake on it).
	ClientAborted uint64
	// UnverifiedTimeouts and Evicted count associations whose client never
	// proved its address: timed out, or evicted at the cap on them.
	UnverifiedTimeouts, Evicted uint64
	// Lingered counts associations that ended after their client's
	// closing alert with nothing crossing; Reclaimed those closing ones
	// ended early for room.
	Lingered, Reclaimed uint64
	// Rehandshakes counts associations a client started from the same
	// addr:port while it had a completed one (a reboot, RFC 6347 §4.2.8, or
	// a reconnect that overtook the server's close_notify); Replaced counts
	// those that completed and so ended the previous one.
	Rehandshakes, Replaced uint64
	// Refused counts cookie echoes dropped because the relay was at its
	// cap on associations; DialErrors ClientHellos for which no upstream
	// socket could be opened.
	Refused, DialErrors uint64
	// FromClients counts datagrams read from clients; ToServer and ToClient
	// those forwarded each way.
	FromClients, ToServer, ToClient uint64
	// Strays counts, by reason, datagrams from clients in their quiet
	// period that no association took: the strays.
	Strays [record.NumReasons]uint64
	// DroppedUnknown counts datagrams no association took from clients
	// that are not quiet: from a client without one (an association that
	// timed out, a relay restart, a quiet period that ended, garbage), or
	// records its handshakes cannot take before the client proved its
	// address (what a previous association left in flight).
	DroppedUnknown uint64
	// DroppedInvalid counts datagrams holding an epoch-0 record that no
	// server accepts in the association's state (RFC 6347 §4.1.2.7; see
	// the package documentation): a forged one would end it in some.
	DroppedInvalid uint64
	// Echoes counts closing alerts sent again to quiet clients whose
	// strays showed they missed them (WithCloseEcho).
	Echoes uint64
	// WriteErrors counts datagrams a socket refused to send.
	WriteErrors uint64
	// UpstreamErrors counts ICMP reports from the server's side (port
	// unreachable: the server is down or refuses) read on or written into
	// an upstream socket; each kind is also logged at most once a second.
	UpstreamErrors uint64
	// Table is the quiet-client table's own counters.
	Table conntrack.Stats
}

// TotalStrays sums Strays.
func (s Stats) TotalStrays() uint64 {
	var n uint64
	for _, v := range s.Strays {
		n += v
	}
	return n
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	r.sh.Lock()
	g, mc := r.sm.Gauges(), r.sm.Counters()
	naive := len(r.naive)
	r.sh.Unlock()
	c := &r.counters
	s := Stats{
		Associations:       g.Unverified + g.Handshaking + g.Established + g.Closing + naive,
		Unverified:         g.Unverified,
		Pending:            g.Handshaking,
		Live:               g.Established + g.Closing,
		Closing:            g.Closing,
		Opened:             mc.Opened,
		Adopted:            mc.Adopted,
		Verified:           mc.Verified,
		ServerClosed:       mc.Ended[assoc.EndServerAlert],
		IdleClosed:         mc.Ended[assoc.EndIdle],
		HandshakeTimeouts:  mc.Ended[assoc.EndHandshakeTimeout],
		ClientAborted:      mc.Ended[assoc.EndClientAlert],
		UnverifiedTimeouts: mc.Ended[assoc.EndUnverifiedTimeout],
		Evicted:            mc.Ended[assoc.EndEvicted],
		Lingered:           mc.Ended[assoc.EndLinger],
		Reclaimed:          mc.Ended[assoc.EndReclaimed],
		Rehandshakes:       mc.Rehandshakes,
		Replaced:           mc.Replaced,
		Refused:            mc.Refused,
		DialErrors:         c.dialErrors.Load(),
		FromClients:        c.fromClients.Load(),
		ToServer:           c.toServer.Load(),
		ToClient:           c.toClient.Load(),
		DroppedUnknown:     c.droppedUnknown.Load(),
		DroppedInvalid:     c.droppedInvalid.Load(),
		WriteErrors:        c.writeErrors.Load(),
		UpstreamErrors:     c.upstreamErrors.Load(),
		Echoes:             c.echoes.Load(),
		Table:              r.table.Stats(),
	}
	if !r.cfg.filter {
		s.Opened = r.counters.naiveOpened.Load()
	}
	for i := range s.Strays {
		s.Strays[i] = r.dropQuiet[i].Load()
	}
	return s
}

// Map returns the counters as a flat map with stable snake_case keys, for
// expvar and for log lines.
func (s Stats) Map() map[string]uint64 {
	m := map[string]uint64{
		"associations":        uint64(s.Associations),
		"unverified":          uint64(s.Unverified),
		"pending":             uint64(s.Pending),
		"live":                uint64(s.Live),
		"closing":             uint64(s.Closing),
		"opened":              s.Opened,
		"adopted":             s.Adopted,
		"verified":            s.Verified,
		"server_closed":       s.ServerClosed,
		"idle_closed":         s.IdleClosed,
		"handshake_timeouts":  s.HandshakeTimeouts,
		"client_aborted":      s.ClientAborted,
		"unverified_timeouts": s.UnverifiedTimeouts,
		"evicted":             s.Evicted,
		"lingered":            s.Lingered,
		"reclaimed":           s.Reclaimed,
		"rehandshakes":        s.Rehandshakes,
		"replaced":            s.Replaced,
		"refused":             s.Refused,
		"dial_errors":         s.DialErrors,
		"from_clients":        s.FromClients,
		"to_server":           s.ToServer,
		"to_client":           s.ToClient,
		"strays":              s.TotalStrays(),
		"dropped_unknown":     s.DroppedUnknown,
		"dropped_invalid":     s.DroppedInvalid,
		"write_errors":        s.WriteErrors,
		"upstream_errors":     s.UpstreamErrors,
		"echoes":              s.Echoes,
		"quiet_peers":         uint64(s.Table.QuietPeers),
		"quiet_evictions":     s.Table.Evictions,
	}
	for i, v := range s.Strays {
		m["strays_"+record.Reason(i).String()] = v
	}
	return m
}

// save and restore carry the counters over a hand-over, by name, so that
// a successor with more or fewer counters takes what it knows.
func (c *counters) save() map[string]uint64 {
	m := make(map[string]uint64)
	for name, v := range c.named() {
		m[name] = v.Load()
	}
	return m
}

func (c *counters) restore(m map[string]uint64) {
	for name, v := range c.named() {
		v.Store(m[name])
	}
}

func (c *counters) named() map[string]*atomic.Uint64 {
	return map[string]*atomic.Uint64{
		"from_clients": &c.fromClients, "to_server": &c.toServer, "to_client": &c.toClient,
		"dial_errors": &c.dialErrors, "write_errors": &c.writeErrors, "dropped_unknown": &c.droppedUnknown,
		"dropped_invalid": &c.droppedInvalid, "naive_opened": &c.naiveOpened, "echoes": &c.echoes,
		"upstream_errors": &c.upstreamErrors,
	}
}
