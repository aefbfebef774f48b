// Package pionv3 serves pion/dtls v3 over a socket protected by the stray
// filter.
//
// pion/dtls v3's listener makes a connection for any datagram whose first
// record is a handshake record, so one late epoch-1 Finished from a client
// that just closed is handed to the application as a new, bogus connection
// whose handshake can never complete (and v3 handshakes have no timeout).
//
// The listeners here create a connection only for a datagram that opens an
// association (an epoch-0 ClientHello), drop the leftovers of closed
// associations below the stack, run each handshake at once with a bound on
// their number and duration, and return connections from Accept only when
// their handshake has completed, in completion order. A peer enters its
// quiet period when the stack closes its connection, which works for DTLS
// 1.3 too, where alerts are invisible on the wire.
//
// Connection IDs (RFC 9146) are not supported: the adapter routes by
// address, so it refuses a Config with a ConnectionIDGenerator
// (ErrConnectionIDUnsupported) rather than silently failing to follow a
// client that changes address. The constructors take a *dtls.Config, which
// pion v3 still supports, because the option form hides that setting.
package pionv3
