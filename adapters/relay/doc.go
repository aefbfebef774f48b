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
// decides. Only the server's own alerts, the idle timeout, the handshake
// timeout and shutdown end associations. A spoofed ClientHello costs one
// association slot until the handshake timeout, because the server answers
// it with a cookie (HelloVerifyRequest) and never sends an encrypted record.
// Associations are capped; at the cap new ClientHellos are refused and
// counted.
//
// Limits: alerts inside tls12_cid (RFC 9146) and DTLS 1.3 ciphertext
// records cannot be seen, so such associations end by idle timeout instead
// of at once, and their strays reach the server as before. In DTLS 1.2
// every encrypted alert is taken as closing; servers send no other kind
// after the handshake in practice.
package relay
