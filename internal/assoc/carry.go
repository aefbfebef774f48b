package assoc

import (
	"fmt"
	"net/netip"
	"time"
)

// Saved is an association as a successor process takes it over (a relay
// handing over to the next version of itself): what the rules read, with
// its times as ages. An unverified handshake is not carried: its cookie is
// kept only as a hash under this process's seed, and the client's cookie
// echo opens a new one where it would have verified the old. Neither is
// the place a handshake's search for a fragmented cookie or CID stopped.
type Saved struct {
	Peer        netip.AddrPort
	State       State // Handshaking, Established or Closing
	Random      [32]byte
	HasRandom   bool
	Answered    bool
	Rehandshake bool
	DTLS13      bool
	CID         string
	Issued      []string
	// Age, InState and Idle are how long ago it opened, entered its
	// state, and saw its last datagram.
	Age, InState, Idle time.Duration
}

// Carried is an association to carry over, with its handle.
type Carried[T any] struct {
	Assoc *Assoc[T]
	Saved Saved
}

// Save returns every association that can be carried over (see Saved),
// established ones before handshakes, so that Restore in that order puts
// a re-handshake beside the association it would replace.
func (m *Machine[T]) Save(now int64) []Carried[T] {
	var out, hs []Carried[T]
	for _, p := range m.peers {
		if a := p.live; a != nil {
			out = append(out, Carried[T]{a, m.save(now, a)})
		}
		for _, a := range p.hs[:p.n] {
			if a.state == Handshaking {
				hs = append(hs, Carried[T]{a, m.save(now, a)})
			}
		}
	}
	return append(out, hs...)
}

func (m *Machine[T]) save(now int64, a *Assoc[T]) Saved {
	return Saved{
		Peer: a.addr, State: a.state, Random: a.random, HasRandom: a.hasRandom,
		Answered: a.answered, Rehandshake: a.rehandshake, DTLS13: a.dtls13,
		CID: a.cid, Issued: append([]string(nil), a.issued...),
		Age: time.Duration(now - a.opened), InState: time.Duration(now - a.since), Idle: time.Duration(now - a.last),
	}
}

// Restore adds an association carried over from another Machine, with
// handle h, under this Machine's caps. It counts nothing: the counters
// carry over with SetCounters.
func (m *Machine[T]) Restore(now int64, s Saved, h T) (*Assoc[T], error) {
	switch s.State {
	case Handshaking, Established, Closing:
	default:
		return nil, fmt.Errorf("assoc: restore %v: state %v is not carried over", s.Peer, s.State)
	}
	if !s.Peer.IsValid() {
		return nil, fmt.Errorf("assoc: restore: invalid peer %v", s.Peer)
	}
	c := m.c
	defer func() { m.c = c }()
	a := m.open(now, s.Peer, s.Random, s.HasRandom)
	if a == nil || !m.verify(now, a) {
		if a != nil {
			m.end(a, EndRefused, false)
		}
		return nil, fmt.Errorf("assoc: restore %v: no room under the caps", s.Peer)
	}
	a.Handle = h
	a.answered, a.rehandshake, a.dtls13 = s.Answered, s.Rehandshake, s.DTLS13
	if s.CID != "" {
		m.bindCID(a, []byte(s.CID))
	}
	for _, cid := range s.Issued {
		m.IssueCID(a, []byte(cid))
	}
	if s.State != Handshaking {
		m.complete(now, a)
	}
	if s.State == Closing {
		m.setClosing(now, a)
	}
	a.opened, a.since, a.last = now-int64(s.Age), now-int64(s.InState), now-int64(s.Idle)
	if at, _, ok := m.deadline(a); ok {
		m.schedule(a, at) // earlier than what the transitions above set
	}
	return a, nil
}

// SetCounters replaces the Machine's counters: those of the Machine whose
// associations it took over.
func (m *Machine[T]) SetCounters(c Counters) { m.c = c }
