package assoc

import (
	"net/netip"
	"slices"

	"github.com/straydtls/straydtls/record"
)

// byCID routes a record that carries a CID (tls12_cid, or a DTLS 1.3
// unified header with its C bit) by its CID alone, whatever its source
// (rule 9): the association's stack authenticates it or discards it.
func (m *Machine[T]) byCID(now int64, d []byte, r *Route[T]) {
	cid, ok := record.ConnectionID(d, int(m.cidLen.Load()))
	if !ok {
		m.drop(r, DropInvalid) // an epoch-0 or truncated tls12_cid record, or no CID length yet
		return
	}
	a := m.cids[string(cid)]
	if a == nil {
		m.drop(r, DropUnknownCID)
		return
	}
	if m.epoch0(d)&^m.hsOK != 0 {
		m.drop(r, DropInvalid)
		return
	}
	switch a.state {
	case Unverified:
		// The CID came in the server's answer, sent to the client's
		// address alone: echoing it proves the address as a cookie does.
		if !m.verify(now, a) {
			m.drop(r, DropRefused)
			return
		}
		m.deliver(now, a, r)
	case Handshaking:
		m.deliver(now, a, r)
	default:
		m.toLive(now, a, d, r)
	}
}

// ByCID returns the association whose server named cid, if any (rule 9).
func (m *Machine[T]) ByCID(cid []byte) *Assoc[T] { return m.cids[string(cid)] }

// SoleByCID is Sole for a CID (rule 9): the established association
// whose server named cid. Until that association ends, or another takes
// the CID (CIDCollisions grows), every tls12_cid record carrying cid that
// SoleCIDTakes goes to it and nowhere else, whatever its source.
func (m *Machine[T]) SoleByCID(cid []byte) *Assoc[T] {
	if a := m.cids[string(cid)]; a != nil && a.state == Established && m.cfg.CloseLinger == 0 && m.cfg.IdleTimeout == 0 {
		return a
	}
	return nil
}

// SoleCIDTakes reports whether a tls12_cid record for a SoleByCID
// association goes to it: whether it holds no record rule 5 drops. Like
// SoleTakes it reads only the configuration.
func (m *Machine[T]) SoleCIDTakes(d []byte) bool { return m.epoch0(d)&^m.liveOK == 0 }

// CIDCollisions counts the CIDs a second association named: each one
// takes a CID away from the association that had it (rule 9).
func (m *Machine[T]) CIDCollisions() uint64 { return m.c.CIDCollisions }

// MaxIssuedCIDs bounds the CIDs IssueCID keeps per association: pion v4
// holds at most 32 receive CIDs per connection.
const MaxIssuedCIDs = 32

// CIDLength returns the length of the CIDs the Machine routes by: the
// configured one, or, with Config.LearnCIDLength, the length of the first
// CID a ServerHello named (0 until then).
func (m *Machine[T]) CIDLength() int { return int(m.cidLen.Load()) }

// learnCIDLength makes n the length CIDs are routed by, if the Machine
// learns it and has none yet: pion v4's options do not show it.
func (m *Machine[T]) learnCIDLength(n int) {
	if n > 0 && m.cfg.LearnCIDLength && m.cidLen.Load() == 0 {
		m.cidLen.Store(int32(n))
	}
}

// bindCID gives a the CID its server named (rule 9) and routes it to a
// if claimCID allows. With Config.LearnCIDLength the first such CID sets
// the length every CID is routed by.
func (m *Machine[T]) bindCID(a *Assoc[T], cid []byte) {
	if a.cid == string(cid) {
		return
	}
	if !slices.Contains(a.issued, a.cid) {
		m.release(a, a.cid)
	}
	a.cid = ""
	m.learnCIDLength(len(cid))
	if len(cid) != m.CIDLength() || m.cids == nil {
		return // not a length the shell can route by
	}
	a.cid = string(cid)
	m.claimCID(a, a.cid)
}

// IssueCID tells the Machine that a's stack issued cid, a CID its client
// may put in later records (a DTLS 1.3 NewConnectionID, encrypted on the
// wire; the shell learns it from the stack's CID generator). It routes
// like the ServerHello's CID (rule 9), which may come through here too.
// Only the stack issues CIDs, so only the shell calls this, never for
// anything a datagram said; an association keeps its MaxIssuedCIDs
// newest.
func (m *Machine[T]) IssueCID(a *Assoc[T], cid []byte) {
	if m.cids == nil || a.state == Ended || len(cid) == 0 {
		return
	}
	m.learnCIDLength(len(cid))
	if len(cid) != m.CIDLength() {
		return
	}
	if slices.Contains(a.issued, string(cid)) {
		return
	}
	if len(a.issued) == MaxIssuedCIDs {
		m.release(a, a.issued[0])
		a.issued = append(a.issued[:0], a.issued[1:]...)
	}
	a.issued = append(a.issued, string(cid))
	m.claimCID(a, string(cid))
}

// claimCID routes cid, one of a's CIDs, to a. If another association has
// it, the newer takes it, but an unverified association never takes it
// from a verified one: a server without cookies answers a forged
// ClientHello too, and with short CIDs a flood of them would take real
// clients' routes. An unverified association keeps its CID unrouted and
// claims it once its client proves its address (verify).
func (m *Machine[T]) claimCID(a *Assoc[T], cid string) {
	old := m.cids[cid]
	if old == a {
		return
	}
	if old != nil {
		if a.state == Unverified && old.state != Unverified {
			return
		}
		old.forget(cid)
		m.c.CIDCollisions++
	}
	m.cids[cid] = a
	m.c.CIDsBound++
}

// claimCIDs claims every CID of a (verify).
func (m *Machine[T]) claimCIDs(a *Assoc[T]) {
	if a.cid != "" {
		m.claimCID(a, a.cid)
	}
	for _, c := range a.issued {
		m.claimCID(a, c)
	}
}

// forget drops cid, which another association took, from a's CIDs.
func (a *Assoc[T]) forget(cid string) {
	if a.cid == cid {
		a.cid = ""
	}
	for i, c := range a.issued {
		if c == cid {
			a.issued = append(a.issued[:i], a.issued[i+1:]...)
			return
		}
	}
}

// hasCID reports whether a has a CID to be routed by.
func (a *Assoc[T]) hasCID() bool { return a.cid != "" || len(a.issued) > 0 }

// release unroutes cid if it routes to a.
func (m *Machine[T]) release(a *Assoc[T], cid string) {
	if cid != "" && m.cids[cid] == a {
		delete(m.cids, cid)
	}
}

// unbindCIDs unroutes every CID of a (it ended).
func (m *Machine[T]) unbindCIDs(a *Assoc[T]) {
	m.release(a, a.cid)
	for _, c := range a.issued {
		m.release(a, c)
	}
	a.cid, a.issued = "", nil
}

// Moved tells the Machine that a's stack now sends to a new address, to:
// it authenticated a record with a CID from there (RFC 9146 §6, RFC 9147
// §9), so that is where the client is. Only an established association
// with a CID moves; the shell passes only what its stack decided, never
// what a datagram claims. The association takes its new address's place (ClientHellos
// from there are its client's re-handshakes, a close quiets that
// address) unless another established association holds it, which keeps
// it: then a goes on by CID alone and quiets no address when it ends.
// Moved reports whether a now belongs to to.
func (m *Machine[T]) Moved(a *Assoc[T], to netip.AddrPort) bool {
	if !a.hasCID() || a.state != Established && a.state != Closing || a.addr == to {
		return false
	}
	old := a.p
	old.remove(a)
	if old.live == nil && old.n == 0 && m.peers[a.addr] == old {
		delete(m.peers, a.addr)
	}
	a.addr = to
	m.c.Moved++
	q := m.peers[to]
	if q == nil {
		q = &peer[T]{}
		m.peers[to] = q
	}
	if q.live != nil {
		a.p = &peer[T]{live: a} // detached: in no map but the CIDs'
		m.c.MovedDetached++
		return false
	}
	q.live, a.p = a, q
	return true
}
