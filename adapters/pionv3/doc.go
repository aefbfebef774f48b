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
// # Connection IDs
//
// With a Config whose ConnectionIDGenerator makes CIDs (RFC 9146), the
// listeners route a tls12_cid record by its CID, as pion's own listener
// does, whatever address it comes from, so a client behind a NAT that
// rebinds its port keeps its association; everything else is routed by
// address. The association's address moves only when pion has
// authenticated a record from the new one (RFC 9146 §6) and sends there: a
// forged tls12_cid record with a live CID reaches pion, which discards it,
// and changes nothing. A closed association's late tls12_cid records, from
// any address, go nowhere; a live association's pass an address a closed
// one left quiet. Every other protection holds for CID associations (see
// package demux). CIDs must have a fixed length, as pion's own listener
// requires too. The constructors take a *dtls.Config, which pion v3 still
// supports, because the option form hides that setting.
package pionv3
