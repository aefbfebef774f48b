// Package pionv4 serves pion/dtls v4, DTLS 1.2 and 1.3, over a socket
// protected by the stray filter and the association rules of package
// demux.
//
// pion/dtls v4's listener makes a connection for any datagram whose first
// record is a handshake record, from an address without one: a closed
// client's late Finished (DTLS 1.2), or a late copy of its ClientHello
// (either version), becomes a connection whose handshake never completes,
// and v4 handshakes have no timeout. A client that reboots and comes back
// from the same address and port is locked out, and a flood of forged
// ClientHellos costs a connection, goroutines and memory each.
//
// Listen and ListenAddr take the same arguments as pion's and return a
// listener (a *demux.Listener) that creates a connection only for a
// ClientHello, admits it in stages (a client proves its address by
// echoing the cookie of a HelloVerifyRequest or, in DTLS 1.3, of a
// HelloRetryRequest, also when its second ClientHello spans datagrams),
// bounds unverified and pending handshakes and times them out, serves a
// rebooted client at once (RFC 6347 §4.2.8, RFC 9147 §5.11), drops late
// copies of a closed association's ClientHello by its client random,
// and puts a peer into its quiet period when the stack closes its
// connection: DTLS 1.3 closes are encrypted, invisible on the wire. Accept
// returns *dtls.Conn values whose handshake has completed, in completion
// order. The listener's own options (handshake timeout, caps, quiet
// period) go through NewListener.
//
// # Connection IDs
//
// With dtls.WithConnectionID among the options, records that carry a CID
// (DTLS 1.2 tls12_cid, DTLS 1.3 unified headers) are routed by it, as
// pion's own listener routes them: the CID each ServerHello names, and,
// in DTLS 1.3, every further CID pion issues in NewConnectionID messages,
// which travel encrypted, so the listener reads the option's generator
// and reports each CID it makes. pion's options are opaque; the listener
// applies them to a configuration of its own to read that one setting.
// A client that changes address keeps its association, whether pion
// follows it at once (CIDPathMigrationUnsafe) or after a return
// routability check (CIDPathMigrationRRC, RFC 9853), including a client
// that moves itself with Conn.AddPath, Path.Probe and Path.Switch. The
// association moves only where pion then sends: a probe of a new path
// moves nothing, nor does a forged record from a new address.
//
// # 0-RTT and resumption
//
// A resumed session (DTLS 1.2 session ID, DTLS 1.3 ticket) completes
// through the listener like any handshake. A client's 0-RTT data right
// behind its ClientHello, from an address a close left quiet, reaches the
// new handshake. pion v4 accepts early data only on a DetachedConn: the
// *dtls.Conn values Accept returns refuse it, and the client sends it
// again after the handshake.
//
// # What differs from pion's listener
//
// pion's OnConnectionAttempt callback (dtls.WithOnConnectionAttempt) is
// called by its listener's Accept, which this package does not use: it is
// not called. The listener's caps and stages do what it is mostly used
// for. Handshakes run at once, concurrently, when a ClientHello arrives,
// not on the first Read or Write.
package pionv4
