// Package relay is a UDP relay that protects a DTLS server it cannot be
// linked into (Mbed TLS, OpenSSL, GnuTLS, anything) from the datagrams of
// associations that server already closed. cmd/strayrelay runs it.
//
// Clients talk to the relay; the relay talks to one upstream server. Like a
// NAT, it gives every client association its own upstream socket, so the
// server sees one peer per association. On Linux one goroutine reads every
// upstream socket through an epoll set of its own, so an association costs
// a socket and a small struct, not a goroutine, and what one wake-up reads
// goes to the clients in one sendmmsg; elsewhere a goroutine reads each.
// What that costs, against nginx and no relay at all, is measured in
// benchmarks (BenchmarkRelay, BenchmarkUnverifiedCost; figures in
// benchmarks/README.md).
// Unlike a NAT, it watches what crosses, with the association state
// machine the in-process adapters share (internal/assoc, whose
// documentation lists the rules):
//
//   - Only a ClientHello opens an association, and it opens it unverified.
//     The client proves its address by echoing the cookie of the server's
//     HelloVerifyRequest (or, with a server that sends none, by answering
//     its first flight); until then nothing protected is forwarded on the
//     association, since nothing protected can belong to a handshake that
//     has not got that far. The one exception is a record carrying a
//     connection ID from a client with no association that is not quiet,
//     which a relay restarted cold adopts (see Restarts below).
//   - A handshake completes when the server sends its first protected record
//     after the client proved its address.
//   - A server's closing alert (any alert at epoch ≥ 1, or a plaintext fatal
//     alert or close_notify) ends the association once it has been
//     forwarded. The upstream socket is released and, if the association
//     had completed, the client becomes quiet for the quiet period, in a
//     [conntrack.Table]. Whatever that client's old association still has in
//     flight (its own close_notify, application data, a retransmitted
//     Finished) is dropped and counted; the server, which has gone back to
//     waiting for new clients, never sees it. The server's closing alert is
//     kept with the quiet client and sent to it again on its 1st, 2nd, 4th,
//     8th... stray (WithCloseEcho, on by default), so a client that missed
//     it learns at once that the association is over.
//   - A client's closing alert makes the association closing: it ends after
//     WithCloseLinger if nothing crosses either way meanwhile (GnuTLS does
//     not answer a client's close_notify), and at the cap on associations a
//     closing one is reclaimed before a new client is refused.
//   - A client that gives up its handshake with a plaintext fatal alert
//     (it could not verify the server, say) ends it at the server, which
//     goes back to waiting for new clients; so the association ends once
//     the alert is forwarded, and what the client's address sends next (a
//     late record of an earlier association, typically) is dropped instead
//     of reaching the server as the first datagram of a new connection.
//   - A completed association drops datagrams holding an epoch-0 record
//     other than a handshake, change_cipher_spec or (DTLS 1.3) ACK record,
//     which no server may accept once keys are agreed (RFC 6347 §4.1.2.7);
//     every association drops epoch-0 heartbeats, application data,
//     tls12_cid and unassigned content types.
//
// A ClientHello with a client random that none of the client's
// associations has starts a new association on a fresh upstream socket
// beside them: a client that rebooted (RFC 6347 §4.2.8), or reconnected
// from the same addr:port before the server's close_notify for the old
// association reached the relay. Its clear-text records go to it alone,
// protected ones to the old association too, and each server discards
// what it cannot authenticate. When it completes, the old association ends
// without a quiet period and whatever its server still sends is dropped. A
// copy of a handshake's own ClientHello (a retransmission, a duplicate)
// carries that handshake's random and goes where it belongs. So the
// server never mixes two associations of one client.
//
// # What a forged datagram can cost
//
// Any datagram may come from an off-path attacker who forges its source
// address; nothing a client sends is believed until the client proves its
// address.
//
//   - A forged ClientHello opens one unverified association: an upstream
//     socket in the relay's epoll set and no goroutine on Linux (elsewhere
//     a goroutine parked on the socket; BenchmarkUnverifiedCost), for at most
//     WithUnverifiedTimeout (5 s). They have a cap of their own
//     (WithMaxUnverified, 1,024): at the cap the oldest is evicted, so a
//     ClientHello is never refused, and forged ClientHellos never take the
//     slots of associations whose client proved its address
//     (WithMaxAssociations). During 20,000 forged ClientHellos at 2,000 a
//     second from 1,000 addresses, a real client that connected once a
//     second through the relay was served every time, in front of the
//     seed's Mbed TLS server and in front of pion, with at most 1,037
//     descriptors; they went back to where they were once the flood's
//     associations timed out (RELIABILITY.md). Before staged admission, 137
//     forged ClientHellos a second kept new clients out.
//   - The server's answer to a forged ClientHello is a HelloVerifyRequest,
//     which is not an answer: one forged ClientHello right after a server's
//     close no longer lets the old association's late close_notify through
//     (it made every one of ten Mbed TLS connections fail).
//   - A forged ClientHello from a live client's addr:port opens its own
//     association beside the client's and ends at the unverified timeout,
//     touching nothing.
//   - A forged alert at epoch ≥ 1 makes an association closing; the
//     client's next datagram makes it live again, and the server's restart
//     the linger, so on an association either side keeps busy it does not
//     end. One that only the server talks on stays closing meanwhile, and
//     so can be reclaimed for a proved client at the association cap. On
//     one idle for longer than the linger it ends the
//     association, as the client's own close_notify would: the relay
//     cannot tell the two apart. The client's next datagram is then
//     dropped and it has to shake hands again. (The server's datagrams do
//     not make it live again because they may be its answers to what the
//     client sent before a real close_notify, crossing it: GnuTLS's echo
//     did, and kept every finished association for the idle timeout.)
//   - A forged epoch-0 alert, application data, heartbeat or record of a
//     type no stack knows on a completed association is dropped, wherever
//     it sits in the datagram.
//
// # Restarts
//
// Freeze stops a serving relay between two reads, with every socket open
// and what is queued in them unread, and returns a Handover: the
// listening sockets, each proved association's upstream socket, and the
// state (associations, quiet clients with their kept alerts and what is
// left of their quiet periods, counters) as descriptors and bytes that
// cross a process boundary. Adopt, in the next process, carries on from
// it; Thaw lets the frozen relay serve on when the successor failed.
// cmd/strayrelay does this on SIGUSR2 and through systemd's file
// descriptor store. Unverified handshakes are not carried: their cookie is
// kept only as a hash under this process's seed, and the client's cookie
// echo opens a new association in the successor.
//
// A relay that stops without handing over (killed, crashed) starts cold:
// it knows no association, and their clients' records are dropped like
// strays. A record that carries a connection ID (RFC 9146 tls12_cid, or a
// DTLS 1.3 header with a CID) from a client that is not quiet opens an
// association on a new upstream socket instead, unverified and bounded as
// a ClientHello's, which the server's protected answer completes: a server
// that follows CIDs takes the client back without a new handshake. A
// client without CIDs recovers only by its own timeout and a new
// handshake.
//
// # Limits
//
// Alerts inside tls12_cid (RFC 9146) and DTLS 1.3 ciphertext records
// cannot be seen, so such associations end by idle timeout instead of at
// once, and their strays reach the server as before. In DTLS 1.2 every
// encrypted alert is taken as closing; servers send no other kind after the
// handshake in practice. With a server that sends no cookie, nothing
// proves a client's address: the answer to the server's first flight is
// taken as proof, which a forger who guesses the server's answer can
// imitate. A session resumed with such a server completes only when the
// server next sends a protected record. The relay learns of a close when it
// reads the server's alert, not when the server sends it: a client datagram
// that reaches the relay in between is forwarded, and a server that has
// already forgotten the client takes it as a new connection. With the relay
// next to the server that window is the time the relay takes to read one
// datagram, far below a client's round trip; the in-process adapters
// have none.
package relay
