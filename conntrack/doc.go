// Package conntrack is the bounded table of recently closed DTLS peers.
//
// When a DTLS association ends locally, datagrams of that association may
// still be in flight. A Table remembers the peer (its netip.AddrPort) for a
// quiet period so that a filter can tell those leftovers from the first
// packet of a new connection. Only local events put a peer into the table;
// nothing a remote host sends can add or extend an entry.
//
// Design:
//
//   - Every entry has the same quiet period, so the order in which entries
//     expire is the order in which they were closed. A FIFO (a doubly linked
//     list, so that a re-close can move an entry to the back) makes expiry
//     and eviction O(1). Expiry is lazy: the next MarkClosed, Forget, Len or
//     Stats removes what has expired. There is no goroutine and no timer.
//   - The table is bounded (default 65,536 entries). At the cap the entry
//     closed longest ago is evicted, which only ends its filtering early.
//   - Quiet is lock-free: an empty table answers with one atomic load;
//     otherwise a reader probes an open-addressing index under a sequence
//     lock and writes nothing, so readers on many cores do not contend.
//   - IPv4-mapped IPv6 addresses are unmapped, so a dual-stack socket and an
//     IPv4 socket sharing a table agree on who a peer is.
//   - A clock can be injected (WithClock) so tests move time instead of
//     sleeping.
package conntrack
