// Package demux turns one UDP socket, protected by a strayfilter.Conn, into
// per-peer connections for a DTLS stack, and puts a listener on top.
//
// It is what the pion adapters are made of; any Go DTLS stack that runs a
// server handshake over a net.Conn or net.PacketConn can use it through
// NewListener and a Handshake function.
//
// Which datagram belongs to which association, when a client counts as
// proved and when a peer becomes quiet is decided by the association state
// machine the relay shares (internal/assoc, whose documentation lists the
// rules); this package is the I/O around it.
//
// Compared with pion's own listener (pion/transport's udp.Listener):
//
//   - A per-peer connection is created only for a datagram that opens an
//     association: an epoch-0 ClientHello. pion admits any handshake record,
//     so a late Finished becomes a connection.
//   - Leftovers of closed associations are dropped below the stack by the
//     stray filter. A peer enters its quiet period when the stack closes a
//     connection whose handshake completed, so no MarkClosed call is needed
//     and DTLS 1.3 works too.
//   - Handshakes run concurrently, bounded in number and time, and Accept
//     returns connections in the order they complete. pion v2 runs each
//     handshake inside Accept, one at a time.
//   - Routing is keyed by netip.AddrPort and allocates nothing per datagram
//     in steady state; pion builds raddr.String() for every datagram.
//   - The accept backlog is bounded and overflow is counted.
//
// # What a forged datagram can cost
//
// Any datagram may come from an off-path attacker who forges its source
// address. Until a client proves it receives what is sent to its address,
// by echoing the cookie of the server's HelloVerifyRequest, its handshake
// is unverified, and an unverified handshake costs little and can be taken
// away:
//
//   - A forged ClientHello opens one unverified handshake: a per-peer Conn
//     and a pion server handshake that sends its HelloVerifyRequest to the
//     forged address, with the goroutines pion runs for it (what that
//     costs is measured by BenchmarkUnverifiedCost; figures in
//     benchmarks/README.md). Unverified handshakes have a cap of their own
//     (WithMaxUnverified, 1,024) and a short timeout
//     (WithUnverifiedTimeout, 5 s); at the cap the oldest is evicted, so a
//     ClientHello is never refused. Proved handshakes have their own cap
//     (WithMaxPendingHandshakes) that no forged ClientHello can fill, so
//     under a flood of forged ClientHellos from random addresses a real
//     client completes its handshake (the flood tests; their figures, and
//     pion's own listener's under the same flood, are in RELIABILITY.md).
//     Before staged admission such a flood kept every client out of this
//     listener.
//   - A handshake that never completes leaves nothing behind: only a
//     completed association that the stack closes quiets its peer, so
//     forged ClientHellos cannot fill the quiet table or push real closed
//     peers out of it. The quiet entry keeps the closed handshake's client
//     random, so that a late copy of its ClientHello is dropped rather
//     than taken for the client starting over; a forged ClientHello with
//     that random only gets itself dropped.
//   - A forged ClientHello from a live client's own addr:port opens its own
//     unverified handshake beside the client's association. ClientHellos are
//     routed by client random, so the real client's re-handshake is never
//     routed into it (this once locked a rebooted client out for 30 s).
//   - A forged epoch-0 record that no stack accepts in the association's
//     state is dropped, wherever it sits in the datagram (pion acts on
//     every record in turn): once the handshake completed, anything at
//     epoch 0 but a handshake or change_cipher_spec record; before, the
//     same but alerts. One such datagram from a client's address used to
//     end its association: pion v2 ends it for a plaintext close_notify,
//     pion v3 answers a heartbeat, an ACK or any content type it does not
//     know with a fatal alert (TestForgedEpoch0Records).
//   - Forged records of later epochs reach the association and are
//     discarded by the stack, which cannot authenticate them.
//
// What it cannot prevent: a flood fast enough to evict a real client's
// unverified handshake before its cookie echo arrives (the cap divided by
// the flood's rate must exceed the client's round trip: 200 ms at 5,000
// forged ClientHellos a second with the defaults); before a handshake
// completes, the plaintext alerts that stacks accept during a handshake;
// and a forged ClientHello's cookie request that left before the real
// client's new ClientHello arrived but reaches the client ahead of its own
// server's answer. The client then echoes a cookie its server never
// issued and fails (TestRehandshake/CookieRequestCrossingAReboot); once
// the client's ClientHello has been read, such a cookie request is
// withheld.
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
// peer with an established association starts a handshake beside it. (A
// late copy of the live handshake's own ClientHello, duplicated or delayed
// by the network, carries that handshake's random and goes to the live
// connection.) While it runs, clear-text records go to it and protected
// records to both, each stack discarding what it cannot authenticate
// (RFC 6347 §4.1.2.7). When its handshake completes it becomes the peer's
// association and the old connection is closed, which the application sees
// as the connection ending. When it fails or times out it is discarded, and
// the live association never notices. Nothing a datagram says switches
// routing or closes the live association; only a handshake that a proved
// client completes does. Turn it off with WithRehandshake(false).
// PacketListener cannot offer it: pion's listener on top of it runs the
// handshake out of its sight.
//
// # DTLS 1.3
//
// With WithDTLS13 (the pion v4 adapter sets it), a client's cookie echo
// in the cookie extension of its second ClientHello verifies it, also when
// that extension lies in the ClientHello's second datagram; an epoch-0 ACK
// is a record the stack may take; and 0-RTT data right behind a
// ClientHello that offered it reaches the new handshake before its server
// answered (package assoc, rules 1 and 11). A DTLS 1.3 close is encrypted:
// the listener sees it as the stack closing its Conn, and for the close
// echo keeps the last small record the stack wrote, which a stack that
// closes writes its close_notify as.
//
// # Connection IDs
//
// With WithConnectionIDs(n), a record that carries a CID (tls12_cid, RFC
// 9146; a DTLS 1.3 unified header with its C bit, RFC 9147 §9) is routed
// by its n-byte CID to the association whose stack named that CID in its
// ServerHello, or issued it later (Conn.IssueCID), whatever address it
// comes from; everything else is routed by address. LearnLength takes the
// length from the stack's first ServerHello that names a CID. A Conn then
// reports each datagram's source in ReadFrom. The stack decides whether a
// record from a new address is genuine: pion authenticates it and, if it
// is the newest, sends its answers there (RFC 9146 §6). When a Conn's
// stack writes to a new address, the association moves there (with
// Conn.FollowStack, only once the stack itself sends there, not for a
// return routability probe, RFC 9853): its re-handshakes and its quiet
// period at close follow (unless another established association holds
// that address, which keeps it). A forged record with a live CID reaches
// the stack, which discards it, and moves nothing; one with an unknown
// CID, a closed association's late records among them, goes nowhere
// (Stats.UnknownCID), from any address. A live association's records with
// a CID pass an address a closed one left quiet (strayfilter.WithExempt).
// Both Listener and PacketListener route by CID.
package demux
