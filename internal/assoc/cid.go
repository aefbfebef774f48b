package assoc

import (
	"net/netip"

	"github.com/straydtls/straydtls/record"
)

// byCID routes a tls12_cid record by its CID alone, whatever its source
// (rule 9): the association's stack authenticates it or discards it.
func (m *Machine[T]) byCID(now int64, d []byte, r *Route[T]) {
	cid, ok := record.ConnectionID(d, m.cfg.CIDLength)
	if !ok {
		m.drop(r, DropInvalid) // an epoch-0 or truncated tls12_cid record
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

// bindCID gives a the CID its server named (rule 9) and routes it to a
// if claimCID allows.
func (m *Machine[T]) bindCID(a *Assoc[T], cid []byte) {
	if a.cid == string(cid) {
		return
	}
	m.unbindCID(a)
	if len(cid) != m.cfg.CIDLength {
		return // not a length the shell can route by
	}
	a.cid = string(cid)
	m.claimCID(a)
}

// claimCID routes a's CID to a. If another association has it, the newer
// takes it, but an unverified association never takes it from a verified
// one: a server without cookies answers a forged ClientHello too, and with
// short CIDs a flood of them would take real clients' routes. An
// unverified association keeps its CID unrouted and claims it once its
// client proves its address (verify).
func (m *Machine[T]) claimCID(a *Assoc[T]) {
	old := m.cids[a.cid]
	if old == a {
		return
	}
	if old != nil {
		if a.state == Unverified && old.state != Unverified {
			return
		}
		old.cid = ""
		m.c.CIDCollisions++
	}
	m.cids[a.cid] = a
	m.c.CIDsBound++
}

func (m *Machine[T]) unbindCID(a *Assoc[T]) {
	if a.cid != "" && m.cids[a.cid] == a {
		delete(m.cids, a.cid)
	}
	a.cid = ""
}

// Moved tells the Machine that a's stack now sends to a new address, to:
// it authenticated a tls12_cid record from there (RFC 9146 §6), so that is
// where the client is. Only an established association with a CID moves;
// the shell passes only what its stack decided, never what a datagram
// claims. The association takes its new address's place (ClientHellos
// from there are its client's re-handshakes, a close quiets that
// address) unless another established association holds it, which keeps
// it: then a goes on by CID alone and quiets no address when it ends.
// Moved reports whether a now belongs to to.
func (m *Machine[T]) Moved(a *Assoc[T], to netip.AddrPort) bool {
	if a.cid == "" || a.state != Established && a.state != Closing || a.addr == to {
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
