// Package strayguard is package strayfilter's quiet period in the kernel:
// a pair of BPF programs at tcx egress and ingress of a DTLS server's
// network interface (Linux 6.6 or later), for servers that cannot take a Go
// net.PacketConn and should not sit behind a relay. The server keeps its
// socket, sees every client's own address, and pays no extra hop.
//
// The programs watch the server's UDP ports. On the way out, a datagram of
// the server's that carries a closing alert (an alert record at epoch ≥ 1,
// or a plaintext fatal alert or close_notify: record.CarriesClosingAlert)
// makes that client address:port quiet for the quiet period; a ServerHello
// (not a HelloRetryRequest) ends it, because the server has accepted the
// client's new handshake, with a cookie-using server only after the client
// proved its address. On the way in, a quiet client's datagram passes if
// its first record is an epoch-0 ClientHello or it is not DTLS at all (first
// byte outside 20..63); any other is dropped and counted by what it is
// (record.Reason). Clients that are not quiet pass untouched.
//
// Only the server's own datagrams create state, so a forged datagram can
// neither silence a client nor grow the map; the map is bounded
// (WithMaxQuietPeers, least recently used evicted first) and an expired
// entry is removed when its client next sends.
//
// What it cannot see, and so lets pass: alerts inside DTLS 1.3 ciphertext
// and RFC 9146 connection-ID records (a DTLS 1.3 server's close is
// invisible, and such a client never becomes quiet); IP fragments and
// datagrams behind IPv6 extension headers; the segments after the first of
// a UDP GSO or GRO train, which tc sees as one packet.
//
// Direction is told by port: the server's datagrams leave from its port.
// So a local process that sends from another address with the server's
// port (on lo, where every datagram passes egress too) is taken for the
// server; no remote sender can do that.
//
// A Guard with WithPinDir pins its links and maps, so it outlives its
// process: the daemon (cmd/strayguard) stops or upgrades without a moment
// unfiltered, and the next start adopts the quiet clients and counters.
//
// The programs' C source is bpf/guard.c; the compiled objects are
// committed (go generate rebuilds them with clang), so building needs no
// C toolchain.
package strayguard
