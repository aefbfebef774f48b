package assoc

import (
	"hash/maphash"
	"net/netip"

	"github.com/straydtls/straydtls/record"
)

// clientHello routes an epoch-0 ClientHello, or a fragment of one, from a
// client (rules 1 and 2): to the association whose client random it
// carries, which it verifies if it echoes that association's cookie; a
// later fragment to the handshake it continues; otherwise it opens a new
// Unverified association.
func (m *Machine[T]) clientHello(now int64, from netip.AddrPort, p *peer[T], rec *record.Record, d []byte, r *Route[T]) {
	ch, hasRandom := rec.ClientHello(d)
	if p != nil {
		if hasRandom {
			if a := p.byRandom(ch.Random); a != nil {
				if !m.echo(now, a, ch.Cookie) {
					m.drop(r, DropRefused)
					return
				}
				m.resumeLater(a, rec)
				m.deliver(now, a, r)
				return
			}
			if a := p.newest(func(a *Assoc[T]) bool { return !a.hasRandom && !a.adopted }); a != nil {
				// Opened by a later fragment of this ClientHello.
				a.random, a.hasRandom, a.early = ch.Random, true, ch.EarlyData
				m.deliver(now, a, r)
				return
			}
		} else if p.n == 0 && p.live != nil {
			// A later fragment, and no handshake under way: a copy of the
			// live handshake's ClientHello, whose first fragment, with the
			// random, went to the live association too. A new handshake's
			// first fragment opens it when it comes.
			m.toLive(now, p.live, d, r)
			return
		} else if p.n > 0 {
			// A later fragment: the random that would route it is in the
			// first. The handshake whose ClientHello it continues takes it,
			// and it may hold the cookie; failing that, the newest.
			a := p.hs[p.n-1]
			for i := p.n - 1; i >= 0; i-- {
				if h := p.hs[i]; h.scan.Pending() && rec.Resume(d, h.scan) {
					a = h
					a.scan = rec.Scan()
					a.early = a.early || rec.EarlyData()
					if cookie, ok := rec.Cookie(d); ok && !m.echo(now, a, cookie) {
						m.drop(r, DropRefused)
						return
					}
					break
				}
			}
			m.deliver(now, a, r)
			return
		}
		if p.live != nil && !m.cfg.Rehandshake {
			m.toLive(now, p.live, d, r)
			return
		}
	}
	if !m.accepting {
		m.drop(r, DropNotAccepting)
		return
	}
	a := m.open(now, from, ch.Random, hasRandom)
	if a == nil {
		m.drop(r, DropRefused)
		return
	}
	m.endAdopted(a.p, a)
	a.early = ch.EarlyData
	m.resumeLater(a, rec)
	r.Open = a
	r.add(a)
}

// echo verifies a if cookie is the one its server asked for (rule 1),
// and reports whether it may take the datagram: false when the caps
// refused the proof.
func (m *Machine[T]) echo(now int64, a *Assoc[T], cookie []byte) bool {
	if a.state != Unverified || !a.hasCookie || len(cookie) == 0 || maphash.Bytes(m.seed, cookie) != a.cookie {
		return true
	}
	a.scan = record.Scan{}
	return m.verify(now, a)
}

// resumeLater keeps where the first fragment of a's ClientHello left
// the walk through its extensions, when they go on in a later fragment:
// a DTLS 1.3 ClientHello's cookie (rule 1) and its early_data (rule 11)
// come after a post-quantum key share that fills a datagram.
func (m *Machine[T]) resumeLater(a *Assoc[T], rec *record.Record) {
	if a.state == Unverified && rec.Scan().Pending() {
		a.scan = rec.Scan()
	}
}

// open makes an Unverified association for a new ClientHello, evicting
// what rule 1 and rule 2 say must make room. It returns nil only when the
// peer's handshakes are all verified.
func (m *Machine[T]) open(now int64, from netip.AddrPort, rnd [32]byte, hasRandom bool) *Assoc[T] {
	if p := m.peers[from]; p != nil && p.n == MaxPerPeer {
		var victim *Assoc[T] // the peer's oldest unverified handshake
		for i := 0; i < p.n && victim == nil; i++ {
			if p.hs[i].state == Unverified {
				victim = p.hs[i]
			}
		}
		if victim == nil {
			// Every handshake of the peer is verified: a datagram never
			// ends one of those, so the ClientHello waits for room.
			m.c.Refused++
			return nil
		}
		m.end(victim, EndEvicted, false)
	}
	for m.g.Unverified >= m.cfg.MaxUnverified {
		m.end(m.uhead, EndEvicted, false)
	}
	p := m.peers[from]
	if p == nil {
		p = &peer[T]{}
		m.peers[from] = p
	}
	a := &Assoc[T]{p: p, addr: from, state: Unverified, random: rnd, hasRandom: hasRandom,
		opened: now, since: now, last: now, heapIdx: -1}
	if p.live != nil {
		a.rehandshake = true
		m.c.Rehandshakes++
	}
	p.hs[p.n] = a
	p.n++
	m.pushBack(&m.uhead, &m.utail, a)
	m.g.Unverified++
	m.c.Opened++
	m.schedule(a, now+int64(m.cfg.UnverifiedTimeout))
	return a
}

// verify makes an Unverified association Handshaking if the caps allow,
// reclaiming a closing association if that is what it takes.
func (m *Machine[T]) verify(now int64, a *Assoc[T]) bool {
	if m.cfg.MaxHandshakes > 0 && m.g.Handshaking >= m.cfg.MaxHandshakes {
		m.c.Refused++
		return false
	}
	if m.cfg.MaxAssociations > 0 && m.g.Handshaking+m.g.Established+m.g.Closing >= m.cfg.MaxAssociations {
		if m.chead == nil {
			m.c.Refused++
			return false
		}
		m.end(m.chead, EndReclaimed, false)
	}
	m.unlink(&m.uhead, &m.utail, a)
	m.g.Unverified--
	a.state, a.since = Handshaking, now
	m.g.Handshaking++
	m.c.Verified++
	m.claimCIDs(a) // rule 9: the ones it could not take unverified
	// The timer still holds the unverified deadline, which is earlier; it
	// finds the handshake deadline when it gets there.
	return true
}

// endAdopted ends the unverified adoptions of p but keep (rule 12): a
// client that starts a handshake has no association to be taken back, and
// an adoption its server never answered was a guess, or a forger's. Left
// in place, it would be sent the client's new association's records.
func (m *Machine[T]) endAdopted(p *peer[T], keep *Assoc[T]) {
	var adopted [MaxPerPeer]*Assoc[T]
	n := 0
	for _, h := range p.hs[:p.n] {
		if h != keep && h.adopted && h.state == Unverified {
			adopted[n] = h
			n++
		}
	}
	for _, h := range adopted[:n] {
		m.end(h, EndEvicted, false)
	}
}
