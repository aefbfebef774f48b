// Package relay is a UDP relay that protects a DTLS server it cannot be
// linked into (Mbed TLS, OpenSSL, GnuTLS, anything) from the datagrams of
// associations that server already closed. cmd/strayrelay runs it.
//
// Clients talk to the relay; the relay talks to one upstream server. Like a
// NAT, it gives every client association its own upstream socket, so the
// server sees one peer per association. Unlike a NAT, it watches what the
// server sends: a closing alert (any alert at epoch ≥ 1, or a plaintext
// fatal alert or close_notify) ends the association once it has been
// forwarded. The upstream socket is released and the client becomes quiet
// for the quiet period, in a [conntrack.Table]. Whatever that client's old
// association still has in flight (its own close_notify, application data,
// a retransmitted Finished) is dropped and counted; the server, which has
// gone back to waiting for new clients, never sees it. A ClientHello from
// the same client starts a new association on a fresh upstream socket, so
// the server can never mix the two.
//
// A client may start over while its association is still live: it rebooted
// (RFC 6347 §4.2.8), or it reconnected from the same addr:port before the
// server's close_notify for the old association reached the relay. A
// ClientHello with a new client random after the handshake (see
// [strayfilter.ClientRandom]; a late copy of the old handshake's own
// ClientHello carries the old random and goes to the old association) opens
// a pending association on its own upstream socket. Its clear-text records
// go to it alone, later epochs to both, and each server discards what it
// cannot authenticate. When the server sends the new association's first
// encrypted record, the old association ends without a quiet period and
// whatever its server still sends is dropped; if the old one ends first,
// the new one carries on alone. Forwarding the ClientHello on the old
// association instead would let the old close_notify, when it arrives, end
// the new handshake halfway, and the client's next flight would land on a
// fresh upstream socket as a ClientHello with message_seq 1, which servers
// ignore.
//
// Only a datagram that opens an association (an epoch-0 ClientHello, see
// [strayfilter.Record.OpensAssociation]) creates one. Anything else from a
// client without an association is dropped: a server would take it as the
// start of a new connection and fail, and the relay has no association to
// give it. Such datagrams are counted as strays when the client is quiet
// and as unknown otherwise (an association that idled out, a relay
// restart, a quiet period that ended).
//
// What clients send never ends or silences an association: a spoofed alert
// from a client's address is forwarded like any datagram, and the server
// decides. Only the server's own records (its alerts, and the first
// encrypted record of a new association that replaces an old one), the
// idle timeout, the handshake timeout and shutdown end associations. A
// spoofed ClientHello costs one association slot until the handshake
// timeout, because the server answers it with a cookie (HelloVerifyRequest)
// and never sends an encrypted record; from a live client's addr:port it
// opens a pending association that cuts nothing.
// Associations are capped; at the cap new ClientHellos are refused and
// counted.
//
// Until the server has answered an association, only clear-text records
// are forwarded on it: nothing protected can belong to a handshake that has
// not got that far, and a server whose ClientHello was lost would take it
// as a new connection. DTLS 1.3 early data sent with the ClientHello is
// therefore dropped; RFC 9147 lets a server reject it anyway, and the
// client sends it again after the handshake.
//
// Limits: alerts inside tls12_cid (RFC 9146) and DTLS 1.3 ciphertext
// records cannot be seen, so such associations end by idle timeout instead
// of at once, and their strays reach the server as before. In DTLS 1.2
// every encrypted alert is taken as closing; servers send no other kind
// after the handshake in practice. The relay learns of a close when it
// reads the server's alert, not when the server sends it: a client datagram
// that reaches the relay in between is forwarded, and a server that has
// already forgotten the client takes it as a new connection. With the relay
// next to the server that window is the time its goroutine takes to read
// one datagram, far below a client's round trip; the in-process adapters
// have none.
package relay
