package assoc

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"

	"github.com/straydtls/straydtls/record"
)

// Machine is the association state machine. See the package documentation
// for its rules.
type Machine[T any] struct {
	cfg   Config
	ended []Ending[T] // since the last Ended
	seed  maphash.Seed
	peers map[netip.AddrPort]*peer[T]
	cids  map[string]*Assoc[T] // rule 9; nil without CID routing
	// cidLen is the CID length (Config.CIDLength, or learned): atomic
	// because SoleTakes and SoleCIDTakes read it outside the shell's lock.
	cidLen atomic.Int32

	uhead, utail *Assoc[T] // Unverified, oldest first
	chead, ctail *Assoc[T] // Closing, oldest first
	heap         []*Assoc[T]

	g         Gauges
	c         Counters
	accepting bool
	// Rule 5: the epoch-0 content types a handshake, and an established
	// association, may receive.
	hsOK, liveOK record.TypeSet
}

// New returns an empty Machine.
func New[T any](cfg Config) (*Machine[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Machine[T]{cfg: cfg, seed: maphash.MakeSeed(), peers: make(map[netip.AddrPort]*peer[T]), accepting: true}
	m.hsOK = record.Types(record.ContentTypeChangeCipherSpec, record.ContentTypeAlert, record.ContentTypeHandshake)
	m.liveOK = record.Types(record.ContentTypeChangeCipherSpec, record.ContentTypeHandshake)
	if cfg.DTLS13 {
		m.hsOK |= record.Types(record.ContentTypeACK)
		m.liveOK |= record.Types(record.ContentTypeACK)
	}
	if cfg.CIDLength > 0 || cfg.LearnCIDLength {
		m.cids = make(map[string]*Assoc[T])
	}
	m.cidLen.Store(int32(cfg.CIDLength))
	return m, nil
}

// SoleTakes reports whether a datagram from a peer whose Sole association
// it is goes to that association: whether it is neither a handshake record
// nor invalid on an established association (rule 5). It reads only the
// configuration, so it is safe to call concurrently with anything.
func (m *Machine[T]) SoleTakes(d []byte) bool {
	if len(d) == 0 {
		return true
	}
	if d[0] == record.ContentTypeHandshake || m.cids != nil && record.HasConnectionID(d) {
		return false // a ClientHello may open a handshake; a CID routes by itself
	}
	return m.epoch0(d)&^m.liveOK == 0
}

func (m *Machine[T]) epoch0(d []byte) record.TypeSet {
	if len(d) < 13 {
		return 0 // no whole record: stacks discard it
	}
	return record.Epoch0Types(d, int(m.cidLen.Load()))
}

// Config returns the configuration the Machine runs with.
func (m *Machine[T]) Config() Config { return m.cfg }

// Counters returns what the Machine decided so far.
func (m *Machine[T]) Counters() Counters { return m.c }

// Gauges returns the associations now, by state.
func (m *Machine[T]) Gauges() Gauges { g := m.g; g.Peers = len(m.peers); return g }

// StopAccepting makes ClientHellos that would open an association dropped;
// existing associations carry on.
func (m *Machine[T]) StopAccepting() { m.accepting = false }

// Sole returns the peer's established association when it has no
// handshake beside it. Until the peer's state changes, every datagram from
// it that SoleTakes goes to that association and nowhere else, so a shell
// may route such datagrams to it without asking, and must ask again once
// that association ends.
func (m *Machine[T]) Sole(peer netip.AddrPort) *Assoc[T] {
	if p := m.peers[peer]; p != nil && p.n == 0 && p.live != nil && p.live.state == Established && m.cfg.CloseLinger == 0 && m.cfg.IdleTimeout == 0 {
		return p.live
	}
	return nil
}

// Client routes a datagram a client sent. now is in nanoseconds on any
// clock that does not go backwards.
func (m *Machine[T]) Client(now int64, from netip.AddrPort, d []byte) Route[T] {
	var parsed record.Parsed
	return m.ClientParsed(now, from, d, &parsed)
}

// ClientParsed is Client for a datagram that travels with its record.Parsed:
// what a filter before it parsed is not parsed again, and what the machine
// parses is there for the shell after it (to count a drop's reason).
func (m *Machine[T]) ClientParsed(now int64, from netip.AddrPort, d []byte, parsed *record.Parsed) (r Route[T]) {
	if m.cids != nil && record.HasConnectionID(d) {
		m.byCID(now, d, &r)
		return r
	}
	p := m.peers[from]
	if p != nil && p.n == 0 && p.live != nil && (len(d) == 0 || d[0] != record.ContentTypeHandshake) {
		// The common case: an established association alone, and a
		// datagram that cannot be a ClientHello.
		m.toLive(now, p.live, d, &r)
		return r
	}
	if m.epoch0(d)&^m.hsOK != 0 {
		// Rule 5: a record no stack accepts in any state, which pion acts
		// on by ending the association, wherever it sits in the datagram.
		return m.drop(&r, DropInvalid)
	}
	rec := parsed.Record(d)
	if rec.OpensAssociation() {
		m.clientHello(now, from, p, rec, d, &r)
		return r
	}
	if p == nil {
		if m.cfg.AdoptCID && rec.Protected() && record.HasConnectionID(d) {
			// Rule 12: the shell, which knows its quiet clients, decides.
			r.Drop, r.Adoptable = DropNoAssociation, true
			return r
		}
		return m.drop(&r, DropNoAssociation)
	}
	switch {
	case rec.Class == record.ClassNotDTLS:
		// Another protocol sharing the port belongs with the client's
		// association, not with a handshake.
		if p.live != nil {
			m.toLive(now, p.live, d, &r)
		} else if a := p.newest(isVerified[T]); a != nil {
			m.deliver(now, a, &r)
		}
	case rec.ClearText():
		if a := p.newest(isVerified[T]); a != nil {
			m.toHandshake(now, a, rec, d, &r)
		} else if a := p.newest(isAnswered[T]); a != nil {
			// A server without cookies: the client answers its first flight.
			if m.verify(now, a) {
				m.toHandshake(now, a, rec, d, &r)
			} else {
				return m.drop(&r, DropRefused)
			}
		} else if p.live != nil {
			m.toLive(now, p.live, d, &r)
		}
	default: // protected
		// 0-RTT data: a DTLS 1.3 record at epoch 1, which a client sends
		// right behind its ClientHello (epoch 5, after three key updates,
		// only an established association takes).
		early := rec.Class == record.ClassCiphertext && rec.Epoch == 1
		// Verify first: a closing association may be reclaimed for it,
		// and it must not be the one this datagram is about to close.
		// 0-RTT data answers nothing the server sent: it verifies nothing.
		for i := 0; i < p.n && !early; i++ {
			if a := p.hs[i]; a.state == Unverified && a.answered {
				m.verify(now, a)
			}
		}
		if p.live != nil {
			m.toLive(now, p.live, d, &r)
		}
		for i := 0; i < p.n; i++ {
			// Not before the server answered: a server that forgot the
			// client after its cookie (Mbed TLS, OpenSSL) and never got
			// the cookie echo would take the record as a new connection.
			// 0-RTT data goes to the handshake whose ClientHello offered
			// it, answered or not (rule 11).
			if a := p.hs[i]; a.state == Handshaking && a.answered || early && a.early || a.adopted {
				m.deliver(now, a, &r)
			}
		}
	}
	if r.N == 0 && r.Drop == DropNone {
		return m.drop(&r, DropUnproved)
	}
	if r.N > 0 {
		// The established association refused it (rule 5; counted), but a
		// handshake beside it takes it.
		r.Drop = DropNone
	}
	return r
}

// Adopt opens an association for the datagram whose Route said it is
// Adoptable (rule 12), and routes the datagram to it; the shell declines
// for a quiet client, whose CID record is a stray, by not calling it.
func (m *Machine[T]) Adopt(now int64, from netip.AddrPort) (r Route[T]) {
	if !m.accepting {
		return m.drop(&r, DropNotAccepting)
	}
	a := m.open(now, from, [32]byte{}, false)
	if a == nil {
		return m.drop(&r, DropRefused)
	}
	a.adopted = true
	m.c.Adopted++
	r.Open = a
	r.add(a)
	return r
}

func (m *Machine[T]) drop(r *Route[T], why Drop) Route[T] {
	r.Drop = why
	m.c.Dropped[why]++
	return *r
}

func (m *Machine[T]) deliver(now int64, a *Assoc[T], r *Route[T]) {
	a.last = now
	r.add(a)
}

// toHandshake delivers a clear-text datagram to a verified handshake,
// applying rule 10.
func (m *Machine[T]) toHandshake(now int64, a *Assoc[T], rec *record.Record, d []byte, r *Route[T]) {
	m.deliver(now, a, r)
	if m.cfg.EndOnClientAlert && rec.FatalAlert(d) {
		// The stack abandons the handshake on reading it: whatever the
		// client's address sends after it would reach a server that has
		// forgotten the handshake, and take it for a new connection.
		m.end(a, EndClientAlert, false)
		r.Ended = true
	}
}

// toLive delivers to the peer's established association, applying rules 5
// and 6.
func (m *Machine[T]) toLive(now int64, a *Assoc[T], d []byte, r *Route[T]) {
	if m.epoch0(d)&^m.liveOK != 0 {
		// Rule 5: no stack accepts these once keys are agreed, and pion
		// acts on them (v2 on a plaintext alert, v3 on any type it does not
		// know): one forged datagram would end the association.
		m.drop(r, DropInvalid)
		return
	}
	if m.cfg.CloseLinger > 0 && len(d) > 0 && d[0] == record.ContentTypeAlert && record.CarriesClosingAlert(d) {
		if a.state == Established {
			m.setClosing(now, a)
		}
	} else if a.state == Closing {
		m.unclose(a)
	}
	m.deliver(now, a, r)
}

// Completed tells the Machine that a's handshake completed (the stack
// said so). It returns false if a has ended meanwhile: the shell then
// closes what the stack made.
func (m *Machine[T]) Completed(now int64, a *Assoc[T]) bool {
	switch a.state {
	case Ended:
		return false
	case Unverified:
		// A completed handshake proves the address (the cookie echo went
		// unseen: split across fragments, or no cookie), but it still
		// needs room under the caps.
		if !m.verify(now, a) {
			m.end(a, EndRefused, false)
			return false
		}
		m.complete(now, a)
	case Handshaking:
		m.complete(now, a)
	}
	return true
}

func (m *Machine[T]) complete(now int64, a *Assoc[T]) {
	m.g.Handshaking--
	p := a.p
	p.remove(a)
	old := p.live
	p.live = a
	a.state, a.since, a.last = Established, now, now
	m.g.Established++
	m.c.Completed++
	if m.cfg.IdleTimeout > 0 {
		m.schedule(a, now+int64(m.cfg.IdleTimeout))
	} else {
		m.unschedule(a)
	}
	if old != nil {
		old.retired = true
		m.c.Replaced++
		m.end(old, EndRetired, false)
	}
}

// Server tells the Machine about a datagram the server sent on a.
func (m *Machine[T]) Server(now int64, a *Assoc[T], d []byte) Verdict {
	if a.state == Ended {
		return Verdict{Forward: !a.retired}
	}
	a.last = now
	forward := true
	switch a.state {
	case Closing:
		// Rule 6: the server's datagrams restart the linger but do not
		// undo the client's alert: they may be its answers to what the
		// client sent before the alert, and a server that does not answer
		// a close_notify (GnuTLS) sends nothing after them. One that keeps
		// sending keeps the association.
		a.since = now
	case Unverified, Handshaking:
		var rec record.Record
		rec.Parse(d)
		if !rec.AsksForCookie() {
			a.answered = true
		} else if cookie, ok := rec.Cookie(d); ok {
			a.cookie, a.hasCookie = maphash.Bytes(m.seed, cookie), true
		}
		m.serverHello(a, &rec, d)
		if rec.AsksForCookie() && a.state == Unverified && a.p.movedOn(a) {
			// Rule 8: the client has moved on from this ClientHello; a
			// cookie request for it would only make the client restart its
			// current handshake with a cookie that handshake never issued.
			forward = false
			m.c.CookiesWithheld++
		}
		if m.cfg.InferCompletion && a.state == Handshaking && record.CarriesApplicationTraffic(d) {
			m.complete(now, a)
		}
		if a.adopted && a.state == Unverified && rec.Protected() {
			// Rule 12: the server took the client's record and answered.
			if m.verify(now, a) {
				m.complete(now, a)
			}
		}
	}
	if m.cfg.EndOnServerAlert && record.CarriesClosingAlert(d) {
		m.end(a, EndServerAlert, m.quiets(a)).Alert = d
		return Verdict{Forward: forward, Ended: true}
	}
	return Verdict{Forward: forward}
}

// serverHello reads what a ServerHello fragment from a's server says: the
// version it chose and the CID it names (rule 9). A DTLS 1.3 ServerHello
// with a post-quantum key share spans two datagrams, and the CID comes in
// the second: the search resumes there.
func (m *Machine[T]) serverHello(a *Assoc[T], rec *record.Record, d []byte) {
	if rec.Class != record.ClassHandshake || rec.Epoch != 0 || rec.MsgType != record.HandshakeTypeServerHello {
		return
	}
	if rec.FragmentOffset > 0 && !rec.Resume(d, a.sscan) {
		return
	}
	a.sscan = rec.Scan()
	if rec.DTLS13() && !rec.AsksForCookie() {
		a.dtls13 = true
	}
	if m.cids != nil {
		if cid, ok := rec.ServerConnectionID(d); ok {
			m.bindCID(a, cid)
		}
	}
}

// quiets reports whether ending a by a local event starts its client's
// quiet period (rule 3).
func (m *Machine[T]) quiets(a *Assoc[T]) bool {
	return (a.state == Established || a.state == Closing) && !a.retired && !a.p.provedOther(a) &&
		m.peers[a.addr] == a.p // a detached association (rule 9) owns no address
}

// Closed tells the Machine that a's I/O ended on its own: the stack closed
// it, or the shell is shutting down. A completed association quiets its
// client (rule 3).
func (m *Machine[T]) Closed(a *Assoc[T]) {
	if a.state != Ended {
		m.end(a, EndClosed, m.quiets(a))
	}
}

// Abort ends an association the shell could not set up (no socket).
func (m *Machine[T]) Abort(a *Assoc[T]) {
	if a.state != Ended {
		m.end(a, EndAborted, false)
	}
}

func (m *Machine[T]) setClosing(now int64, a *Assoc[T]) {
	m.g.Established--
	m.g.Closing++
	a.state, a.since = Closing, now
	m.pushBack(&m.chead, &m.ctail, a)
	m.schedule(a, now+int64(m.cfg.CloseLinger))
}

func (m *Machine[T]) unclose(a *Assoc[T]) {
	m.unlink(&m.chead, &m.ctail, a)
	m.g.Closing--
	m.g.Established++
	a.state = Established
}

// end removes a and queues its Ending for the shell (Ended), returned so
// that the caller can add what only it knows.
func (m *Machine[T]) end(a *Assoc[T], why EndReason, quiet bool) *Ending[T] {
	switch a.state {
	case Unverified:
		m.unlink(&m.uhead, &m.utail, a)
		m.g.Unverified--
	case Handshaking:
		m.g.Handshaking--
	case Established:
		m.g.Established--
	case Closing:
		m.unlink(&m.chead, &m.ctail, a)
		m.g.Closing--
	}
	if a.rehandshake && (a.state == Unverified || a.state == Handshaking) {
		m.c.RehandshakesAbandoned++
	}
	a.state = Ended
	m.unschedule(a)
	m.unbindCIDs(a)
	p := a.p
	p.remove(a)
	if p.live == nil && p.n == 0 && m.peers[a.addr] == p {
		delete(m.peers, a.addr)
	}
	m.c.Ended[why]++
	m.ended = append(m.ended, Ending[T]{Assoc: a, Why: why, Quiet: quiet})
	return &m.ended[len(m.ended)-1]
}

// Ended appends to dst the associations ended since the last call, in the
// order they ended, and forgets them. A shell calls it after every call
// that may end one (Client, Adopt, Server, Completed, Closed, Abort,
// Expire), before it lets go of the Machine: it starts a quiet client's
// quiet period there, before any later datagram finds the client
// unrouted, and then releases each association's I/O.
func (m *Machine[T]) Ended(dst []Ending[T]) []Ending[T] {
	dst = append(dst, m.ended...)
	clear(m.ended) // the Machine keeps no ended association alive
	m.ended = m.ended[:0]
	return dst
}
