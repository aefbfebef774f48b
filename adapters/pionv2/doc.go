// Package pionv2 serves pion/dtls v2 over a socket protected by the stray
// filter.
//
// pion/dtls v2's own listener makes a connection for any datagram whose
// first record is a handshake record, and its Accept runs each handshake to
// completion before returning. One late epoch-1 Finished from a client that
// just closed therefore becomes a doomed handshake that blocks Accept, and
// every new client, for the 30 s of the default ConnectContextMaker.
//
// The listeners here create a connection only for a datagram that opens an
// association (an epoch-0 ClientHello), drop the leftovers of closed
// associations below the stack, run handshakes concurrently with a bound on
// their number and duration, and put a peer into its quiet period when the
// stack closes its connection. Accept returns connections in the order
// their handshakes complete.
//
// Semantics otherwise match pion's: Listen and NewListener take the same
// *dtls.Config; closing the listener stops accepting and leaves accepted
// connections open; the socket closes with the last of them. A client that
// reconnects from the same address and port without closing (a reboot) is
// served at once: see package demux on re-handshakes.
//
// One thing differs from pion's own listener: a connection's Close sends its
// close_notify every time. pion/dtls v2.2.12's own Close cancels its read
// loop before it writes the alert, and the read loop, woken by that, may
// close the socket first, so that no close_notify leaves at all (v3 fixed
// the order); under these listeners closing waits for the alert to be
// written, for up to a second if pion fails to write it.
package pionv2
