// Package strayfilter keeps a DTLS server from taking the leftovers of an
// association it already closed for the first packet of a new one.
//
// UDP delays and reorders. After a server closes an association, datagrams
// of it can still arrive: the client's close_notify, application data, a
// retransmitted Finished. A stack that has gone back to waiting for new
// clients takes such a datagram as a new connection and fails (Mbed TLS's
// example server reports MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE; pion/dtls v2's
// listener runs a doomed handshake that stalls Accept for 30 s).
//
// [New] wraps the server's net.PacketConn. The wrapper remembers peers whose
// association was closed locally (in a conntrack.Table) and, for a quiet
// period, drops every datagram from them that does not open a new
// association, that is, whose first record is not an epoch-0 handshake
// record carrying a ClientHello (see package record, which reads it).
// A ClientHello passes and ends the quiet period: the client starts afresh
// (RFC 6347 §4.2.8). Two kinds stay strays: a late copy of the closed
// association's own ClientHello, when the close named its client random
// (MarkClosedWith; the adapters do), since no client starts a handshake
// with an old random; and a later fragment of a ClientHello (DTLS 1.3's
// span datagrams), whose first fragment, with the random, did not open
// anything.
//
// # What it never does
//
// A datagram from a peer that is not quiet is returned exactly as the
// wrapped conn delivered it: never dropped, delayed or copied. With no
// quiet peer at all, the per-datagram cost is one atomic load and a branch
// besides the call into the wrapper (benchmarks/README.md measures both).
// Non-DTLS datagrams (first byte outside 20..63: STUN, RTP multiplexed on
// the port) pass even from quiet peers unless WithDropNonDTLS is set.
//
// Only local events put a peer into its quiet period: MarkClosed, and (on
// by default) an alert that our own side writes through the wrapper. An
// incoming datagram never creates or extends an entry, so a spoofed source
// address can neither silence a live peer nor grow memory; the one thing a
// datagram can do is end a quiet period, by opening a new association.
//
// # Learning that an association closed
//
// With alert detection on, a datagram written through WriteTo that carries
// an alert record at epoch ≥ 1 (DTLS 1.2 encrypts alerts, so every such
// alert is taken as closing) or a plaintext fatal alert or close_notify at
// epoch 0 starts the destination's quiet period before the datagram
// leaves. DTLS 1.3 and tls12_cid records hide their content type, so an
// association closed under them is invisible to the wrapper: call
// MarkClosed, or use the pion adapters, which mark a peer when the stack
// closes its connection.
//
// # Telling a client that missed the close
//
// UDP may lose the closing alert; the client then writes into a dead
// association until its own timeout. With WithCloseEcho the wrapper keeps
// the closing alert written through it (or given to MarkClosedWithAlert)
// and writes it again, byte for byte, on the quiet peer's 1st, 2nd, 4th,
// 8th... stray: at most conntrack.MaxEchoes times, never more bytes than the
// peer sent, so a forged source gets at most the old alert back, which
// authenticates nothing new. It is off by default: a wrapper under
// someone else's stack writes on its own only when asked. The pion
// adapters turn it on.
//
// # Choosing the quiet period
//
// The default is 10 s. Strays come from two sources. Reordering and queueing
// delay a datagram by milliseconds, rarely more than a second. Retransmission
// is slower: a client that lost the server's last flight resends its own
// after 1 s, then 2 s, then 4 s (RFC 6347 §4.2.4.1), so its third
// retransmission leaves 7 s after the first; 10 s covers it with margin.
// A longer period costs nothing in correctness, because a ClientHello ends
// it at once, only memory (64 bytes per quiet peer, 212 with a 39-byte
// closing alert kept for WithCloseEcho; capped). Choose a
// shorter one only if peers legitimately resume non-handshake traffic from
// the same address soon after a close (they cannot in DTLS: a new
// association always starts with a ClientHello). Choose a longer one for
// lossy links where clients retransmit more times, up to the 60 s the
// RFC's timer reaches.
//
// # Limits
//
// It is not a firewall: it filters only peers that were closed locally and
// does nothing against floods from other addresses. Without the closed
// association's client random (MarkClosed, or a close learned from an
// alert), a late retransmission of its ClientHello is indistinguishable
// from a fresh one and passes; the stack then answers it as a new
// handshake, which the client ignores. Several sockets can share one quiet-peer table with
// WithTable.
package strayfilter
