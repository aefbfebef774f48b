// Package demux turns one UDP socket, protected by a strayfilter.Conn, into
// per-peer connections for a DTLS stack, and puts a listener on top.
//
// It is what the pion adapters are made of; any Go DTLS stack that runs a
// server handshake over a net.Conn or net.PacketConn can use it through
// NewListener and a Handshake function.
//
// Compared with pion's own listener (pion/transport's udp.Listener):
//
//   - A per-peer connection is created only for a datagram that opens an
//     association: an epoch-0 ClientHello. pion admits any handshake record,
//     so a late Finished becomes a connection.
//   - Leftovers of closed associations are dropped below the stack by the
//     stray filter. A peer enters its quiet period when the stack closes its
//     connection, so no MarkClosed call is needed and DTLS 1.3 works too.
//   - Handshakes run concurrently, bounded in number and time, and Accept
//     returns connections in the order they complete. pion v2 runs each
//     handshake inside Accept, one at a time.
//   - Routing is keyed by netip.AddrPort and allocates nothing per datagram
//     in steady state; pion builds raddr.String() for every datagram.
//   - The accept backlog is bounded and overflow is counted.
//
// # Re-handshakes from the same address
//
// A client that reboots, or a NAT that reuses a mapping, comes back from the
// same address and port with a fresh ClientHello while the server still
// holds the old association. RFC 6347 §4.2.8 asks the server to run the new
// handshake and abandon the old association only once the new one
// completes; pion has no such code (its old connection drops the new
// ClientHello as a replay, locking the client out until it times out).
//
// Listener does it: an epoch-0 ClientHello with a new client random from a
// peer with an established association starts a pending association beside
// it. (A late copy of the live handshake's own ClientHello, duplicated or
// delayed by the network, carries that handshake's random and goes to the
// live connection; see strayfilter.ClientRandom.) While it is pending,
// epoch-0 records go to it and records of later epochs to both, each stack
// discarding what it cannot authenticate (RFC 6347 §4.1.2.7). When its
// handshake completes it becomes the peer's association and the old
// connection is closed, which the application sees as the connection
// ending. When it fails or times out it is discarded, and the live
// association never notices.
//
// Why this is safe: nothing a single datagram says switches routing or
// closes the live association; only a completed handshake does. An off-path
// attacker who spoofs the peer's address cannot complete the cookie
// exchange (the HelloVerifyRequest goes to the real peer), so it can cost at
// most one pending handshake per peer, bounded in time by the handshake
// timeout and in number by WithMaxPendingHandshakes. Turn it off with
// WithRehandshake(false). PacketListener cannot offer it: it does not see
// when a handshake completes.
package demux
