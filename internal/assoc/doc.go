// Package assoc is the association state machine that the demultiplexer
// (adapters/demux) and the front relay (adapters/relay) share. It decides,
// for every datagram a client sends, which of that client's associations
// it belongs to; when a source address counts as proved; when an
// association opens, is verified, completes, replaces another or ends; and
// when a client becomes quiet. It does no I/O, starts no goroutine, reads
// no clock and calls nothing back: the shell around it (package
// internal/shell) reads sockets, passes each event in with the time, and
// carries out what comes back: routes and verdicts from the call, the
// associations it ended from Ended. So it is fuzzed and model-tested with
// no network (machine_test.go, model_test.go).
//
// A Machine is not safe for concurrent use; its shell serialises events.
//
// # The rules
//
// Every datagram may be forged. A source address is proved only when the
// client answers what was sent to it. The rules below keep what an
// unproved datagram can cost small, bounded and evictable, and never let it
// end or capture what a proved client has.
//
//  1. Staged admission. Only an epoch-0 ClientHello opens an association,
//     and it opens it Unverified. It becomes Handshaking (verified) when
//     the client proves it receives what is sent to its address: a
//     ClientHello with the association's client random that echoes the
//     cookie of the server's HelloVerifyRequest (DTLS 1.2) or, in its
//     cookie extension, of its HelloRetryRequest (DTLS 1.3), or, for a
//     server that sends no cookie, a datagram that answers the server's
//     first flight. A DTLS 1.3 ClientHello with a post-quantum key share
//     spans datagrams and pion v4's carries its cookie extension in the
//     second: the search through its extensions resumes in the fragment
//     that continues it (record.Scan), which that fragment is routed to.
//     Unverified associations have their own timeout and cap; at the cap
//     the oldest unverified association is evicted to admit the new one
//     (a SYN cache): a ClientHello is never refused for room. Verified
//     handshakes have the handshake timeout and their own caps; a cookie
//     echo that finds them full is dropped (the client sends it again).
//  2. ClientHellos are routed by client random. One whose random matches
//     an association of its peer (live or handshaking) goes to it: a
//     retransmission, a network duplicate, or the cookie echo. A new random
//     opens a new Unverified association beside whatever the peer has, up
//     to MaxPerPeer handshakes per peer (the oldest unverified one is
//     evicted first). A forged ClientHello can therefore never take a real
//     client's handshake or re-handshake (RFC 6347 §4.2.8) from it. A
//     later fragment, which holds no random, goes to the handshake whose
//     ClientHello it continues (rule 1's resumed search), failing that to
//     the peer's newest handshake, failing that to its established
//     association: it is a copy of that one's ClientHello, and opens
//     nothing.
//  3. Only completed associations leave state. A handshake that ends
//     before completing never quiets its peer; an association that
//     completed quiets its peer when a local event ends it (the stack
//     closed it, the server sent a closing alert), unless another verified
//     association of the peer carries on or a newer one replaced it.
//  4. "Answered" means past the cookie: a ServerHello or any later record,
//     not a HelloVerifyRequest or HelloRetryRequest. Clear-text records
//     other than ClientHellos go to the peer's newest verified handshake;
//     failing that, to its newest answered one (which they then verify);
//     failing that, to its established association. Protected records go
//     to the established association and to every answered handshake
//     (which they verify if it was not), each stack discarding what it
//     cannot authenticate (RFC 6347 §4.1.2.7); never to a handshake whose
//     server has not answered, which may have forgotten the client after
//     its cookie and would take the record as a new connection. A record
//     no association can take is dropped.
//  5. No association receives an epoch-0 record that no stack accepts in
//     its state, wherever it sits in the datagram (stacks act on every
//     record in turn): once established, anything at epoch 0 but a
//     handshake or change_cipher_spec record (a plaintext alert,
//     application data, heartbeat, tls12_cid, an unassigned type; an ACK
//     unless Config.DTLS13); during a handshake, the same but alerts. Such
//     a datagram is dropped; everything else passes untouched. pion acts
//     on them: v2 ends an association for a plaintext close_notify, v3 for
//     any content type it does not know (it answers with a fatal alert).
//  6. Closing (relay): a client's alert at epoch ≥ 1 on an established
//     association makes it Closing. It ends after CloseLinger if nothing
//     crosses in either direction meanwhile. Any other datagram from the
//     client makes it established again, so a forged alert on an
//     association whose client talks changes nothing; a datagram from the
//     server restarts the linger, because the server's answers to what the
//     client sent before its alert cross it, and a server that does not
//     answer a close_notify (GnuTLS) sends nothing more; a server that
//     keeps sending keeps the association, closing (reclaimable at the
//     cap) until the client speaks. At the association cap, Closing
//     associations are reclaimed before a cookie echo is refused. Because
//     a client's alert is remote input, an association that ends this way
//     quiets nobody.
//  7. Completion is reported by the shell (Completed: the stack said so)
//     or, with Config.InferCompletion, inferred when the server sends a
//     record under application traffic keys on a verified handshake: in
//     DTLS 1.2 its Finished, sent once it checked the client's; in DTLS
//     1.3 a record at epoch 3 or later (its epoch-2 flight goes out before
//     the client's Finished; record.CarriesApplicationTraffic). A protected record the server sent
//     before the client proved its address counts for nothing (a server
//     without cookies sends one to a forged ClientHello in DTLS 1.3 and
//     in session resumption). A completed handshake becomes the peer's
//     established association and retires the one it replaces.
//  8. A client follows one handshake at a time. A cookie request (a
//     HelloVerifyRequest or HelloRetryRequest) for an unverified
//     handshake is not forwarded once the client has moved on: it proved
//     its address for another handshake, or opened one after this. The
//     forged ClientHello's handshake is the usual such one: its server's
//     cookie request, delayed, would reach the real client in the middle
//     of its own handshake, which a DTLS client takes as a reason to
//     start over with a cookie its server never issued (pion's server
//     then ends the handshake with a fatal alert). One the server sent
//     before the client's new ClientHello reached the machine is already
//     out; no rule can recall it.
//  9. Connection IDs (RFC 9146, RFC 9147 §9), with Config.CIDLength > 0
//     or Config.LearnCIDLength. The CID a server names in its
//     ServerHello's connection_id extension, and every further CID its
//     stack issues (IssueCID: DTLS 1.3's NewConnectionID is encrypted, so
//     only the shell can tell), routes every record carrying it (tls12_cid,
//     or a DTLS 1.3 unified header with its C bit) to that association,
//     whatever its source address; a record with an unknown CID (a closed
//     association's, a forged one) goes nowhere. An unverified handshake
//     whose CID comes back is verified: only the client the server
//     answered knows it. A record never moves an association: the shell
//     reports (Moved) when the stack, having authenticated a record from a
//     new address, sends there, and only then do the address-keyed rules
//     (re-handshakes, the quiet period at close) follow to that address,
//     unless another established association holds it. CIDs are the
//     server's to choose: if two associations name the same, the newer
//     takes the route, except that an unverified one never takes it from
//     a verified one (a server without cookies names CIDs to forged
//     ClientHellos too); it claims it once its client proves its address.
//  10. A client that gives up (relay): with Config.EndOnClientAlert, a
//     verified handshake ends once a datagram starting with a plaintext
//     fatal alert has been delivered to it. Every stack abandons a
//     handshake on such an alert, forged or not, and a server that has
//     gone back to waiting for new clients takes whatever the client's
//     address sends next (a retransmission, a previous association's late
//     close_notify) for a new connection. Ending here quiets nobody (rule
//     3); a later record from the address goes nowhere.
//  11. 0-RTT (DTLS 1.3): a record at epoch 1 (early data) goes to every
//     unverified handshake of its peer whose ClientHello offered early
//     data, answered or not, because a client sends it right behind the
//     ClientHello; it verifies nothing (it answers nothing the server
//     sent). A forged one costs what a forged ClientHello already costs:
//     the stack of that handshake discards it.
//  12. Adoption (relay, Config.AdoptCID): a record carrying a CID (a
//     tls12_cid record, or a DTLS 1.3 unified header with its C bit) from
//     an address with no association opens one, Unverified and adopted,
//     that takes its client's protected records: a relay restarted cold
//     lost the association, and a server that follows CIDs (RFC 9146 §6)
//     takes the client back on a new upstream socket. It completes when
//     its server sends a protected record (the server authenticated the
//     client's record and answered); until then it costs what an
//     Unverified ClientHello costs, and ends at the same timeout or
//     eviction, and a ClientHello from its address ends it (a client
//     starting afresh has nothing to be taken back; a forged CID record
//     at a real client's address must not take that client's records).
//     Without a CID a server finds no connection for a record
//     from a new address, so nothing is adopted. The Machine marks such a
//     datagram Adoptable and the shell calls Adopt, unless the client is
//     quiet: then the record is a stray of the association the server
//     closed.
//
// A datagram never ends or demotes a verified association: it can evict
// only Unverified ones (rule 1), reclaim only Closing ones (rule 6), and
// change routing only through a handshake that a proved client completes,
// or a record its stack authenticated (rule 9). The one exception is rule
// 10, where the datagram is delivered first and the relay only mirrors
// what the stack does with it.
package assoc
