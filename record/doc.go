// Package record reads what the first DTLS record of a datagram is, as
// much as an observer without keys can: which protocol the datagram
// belongs to, the record's content type, version, epoch and sequence
// number, and for the clear-text hello messages what admission needs (the
// client random, the cookie a client echoes, the cookie a server asks
// for, in DTLS 1.2's HelloVerifyRequest or 1.3's HelloRetryRequest, the
// versions offered and chosen, a ServerHello's connection ID). It depends
// only on the standard library.
//
// A DTLS 1.3 ClientHello with a post-quantum key share is larger than a
// datagram: pion v4's second ClientHello spans two, and its cookie
// extension, which proves the client's address, is in the second. The
// extensions are walked fragment by fragment: Scan says where a fragment
// left the walk, and Resume goes on in the next one, with no reassembly
// buffer (TestResumeAtEveryBoundary cuts every captured hello at every
// offset).
//
// Inspect reads a datagram once and returns a plain Record value; the
// questions the rest of the project asks (does this open an association,
// is it clear text, which handshake does this ClientHello belong to) are
// methods on that value, so no datagram is parsed twice. A datagram that
// passes through several layers (strayfilter, then the association
// machine, then a drop counter) carries a Parsed, which parses on first
// use; built with -tags straydtls_parsecount, Parses counts every parse,
// for the tests that hold each read path to one. Parse never panics,
// never allocates and never modifies the datagram. FuzzInspect checks every
// reading against pion's own parsers (v2, v3 and v4), starting from real
// datagrams captured from pion v2, pion v3 with connection IDs, pion v4 in
// DTLS 1.2 and 1.3 with and without connection IDs, and openssl s_client
// (testdata/records, refreshed by TestCapture with -capture).
//
// Record layouts (RFC 6347 §4.1, RFC 9146, RFC 9147 §4): a DTLSPlaintext
// header is type(1) version(2) epoch(2) sequence(6) length(2); a tls12_cid
// record puts a connection ID of a length only the receiver knows before
// its length field; a DTLS 1.3 ciphertext record starts with a unified
// header byte 0b001CSLEE. The first byte tells DTLS (20..63) from the other
// protocols that share a port (RFC 9443: STUN, ZRTP, TURN, RTP).
package record
