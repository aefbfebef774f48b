package assoc

import (
	"net/netip"

	"github.com/straydtls/straydtls/record"
)

// Assoc is one association. Handle is the shell's: its socket or conn.
type Assoc[T any] struct {
	Handle T

	p    *peer[T]
	addr netip.AddrPort

	state     State
	random    [32]byte
	hasRandom bool
	cookie    uint64 // hash of the last HelloVerifyRequest cookie the server sent
	hasCookie bool
	// answered: the server got past asking for a cookie (rule 4).
	answered    bool
	retired     bool
	rehandshake bool // opened beside an established association of its peer
	// cid is the Connection ID its server named in its ServerHello (rule
	// 9); empty without one. issued are the further CIDs its stack
	// reported issuing (IssueCID: DTLS 1.3's NewConnectionID travels
	// encrypted), oldest first, at most MaxIssuedCIDs.
	cid    string
	issued []string
	// dtls13: its server chose DTLS 1.3. early: its ClientHello offered
	// 0-RTT data, which follows it at once (rule 11).
	dtls13, early bool
	// adopted: opened by a CID record, not a ClientHello (rule 12).
	adopted bool
	// scan is where the search for the cookie its client echoes stopped at
	// the end of a ClientHello fragment; sscan, where the search for the
	// CID its server names stopped at the end of a ServerHello fragment
	// (DTLS 1.3 hellos with post-quantum key shares span two datagrams).
	scan, sscan record.Scan

	opened, since, last int64 // ns: first ClientHello, current state, last datagram

	due     int64 // when the timer heap looks at it next
	heapIdx int   // -1 when not in the heap
	// prev and next link the association into the unverified or the
	// closing FIFO; it is in at most one of them.
	prev, next *Assoc[T]
}

// Peer returns the client's address.
func (a *Assoc[T]) Peer() netip.AddrPort { return a.addr }

// State returns the association's state.
func (a *Assoc[T]) State() State { return a.state }

// Retired reports whether a newer association of the same client replaced
// this one: what its server still sends must not reach the client.
func (a *Assoc[T]) Retired() bool { return a.retired }

// Rehandshake reports whether the association was opened beside an
// established association of the same client (RFC 6347 §4.2.8).
func (a *Assoc[T]) Rehandshake() bool { return a.rehandshake }

// ConnectionID returns the CID its server named in its ServerHello (rule
// 9), empty if none.
func (a *Assoc[T]) ConnectionID() string { return a.cid }

// ClientRandom returns the client random of the association's handshake,
// if its first ClientHello fragment was read: a late copy of that
// ClientHello carries it too.
func (a *Assoc[T]) ClientRandom() ([32]byte, bool) { return a.random, a.hasRandom }

// Adopted reports whether a record carrying a CID opened the association,
// not a ClientHello (rule 12).
func (a *Assoc[T]) Adopted() bool { return a.adopted }

// DTLS13 reports whether the association's server chose DTLS 1.3, whose
// records hide their content type: its close is invisible on the wire.
func (a *Assoc[T]) DTLS13() bool { return a.dtls13 }

// peer is what one client addr:port has: at most one established (or
// closing) association and up to MaxPerPeer handshakes, oldest first.
type peer[T any] struct {
	live *Assoc[T]
	hs   [MaxPerPeer]*Assoc[T]
	n    int
}

func (p *peer[T]) remove(a *Assoc[T]) {
	if p.live == a {
		p.live = nil
		return
	}
	for i := 0; i < p.n; i++ {
		if p.hs[i] == a {
			copy(p.hs[i:p.n], p.hs[i+1:p.n])
			p.n--
			p.hs[p.n] = nil
			return
		}
	}
}

// newest returns the peer's newest handshake that ok accepts.
func (p *peer[T]) newest(ok func(*Assoc[T]) bool) *Assoc[T] {
	for i := p.n - 1; i >= 0; i-- {
		if ok(p.hs[i]) {
			return p.hs[i]
		}
	}
	return nil
}

func isVerified[T any](a *Assoc[T]) bool { return a.state == Handshaking }

func isAnswered[T any](a *Assoc[T]) bool { return a.state == Unverified && a.answered }

// provedOther reports whether the peer has a verified association other
// than a: one that a quiet period would starve of its client's datagrams.
func (p *peer[T]) provedOther(a *Assoc[T]) bool {
	if p.live != nil && p.live != a {
		return true
	}
	for i := 0; i < p.n; i++ {
		if p.hs[i] != a && p.hs[i].state == Handshaking {
			return true
		}
	}
	return false
}

func (p *peer[T]) byRandom(rnd [32]byte) *Assoc[T] {
	if p.live != nil && p.live.hasRandom && p.live.random == rnd {
		return p.live
	}
	for i := 0; i < p.n; i++ {
		if a := p.hs[i]; a.hasRandom && a.random == rnd {
			return a
		}
	}
	return nil
}

// movedOn reports whether the client of a has a handshake that makes a's
// stale: one it proved its address for, or one it opened after a.
func (p *peer[T]) movedOn(a *Assoc[T]) bool {
	after := false // p.hs is in the order the handshakes opened
	for i := 0; i < p.n; i++ {
		h := p.hs[i]
		if h == a {
			after = true
		} else if after || h.state == Handshaking {
			return true
		}
	}
	return false
}
