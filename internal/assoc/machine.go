package assoc

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/record"
)

// MaxPerPeer bounds the handshakes one addr:port can have under way at
// once (rule 2): enough for a rebooted client beside a few forged
// ClientHellos, small enough that a peer costs a fixed amount.
const MaxPerPeer = 4

// State is where an association is in its life.
type State uint8

// States of an association.
const (
	Unverified  State = iota + 1 // opened by a ClientHello; its source is not proved
	Handshaking                  // the client proved its address; the handshake runs
	Established                  // the handshake completed
	Closing                      // the client sent a closing alert (rule 6)
	Ended
)

var stateNames = [...]string{"invalid", "unverified", "handshaking", "established", "closing", "ended"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "invalid"
}

// EndReason says why an association ended.
type EndReason uint8

// Reasons an association ends.
const (
	EndEvicted           EndReason = iota // an unverified association made room for a newer one
	EndUnverifiedTimeout                  // its client never proved its address
	EndHandshakeTimeout                   // its handshake did not complete in time
	EndIdle                               // nothing crossed for the idle timeout
	EndLinger                             // closed by the client, and nothing crossed during the linger
	EndReclaimed                          // closing, and its slot was needed
	EndServerAlert                        // the server sent a closing alert
	EndRetired                            // a newer association of the same client completed
	EndClosed                             // the shell's I/O ended: the stack closed it, or shutdown
	EndAborted                            // the shell could not set it up
	EndRefused                            // completed unverified, and the association cap was full
	EndClientAlert                        // the client gave up its handshake with a fatal alert
	NumEndReasons
)

var endNames = [NumEndReasons]string{
	"evicted", "unverified-timeout", "handshake-timeout", "idle", "linger",
	"reclaimed", "server-alert", "retired", "closed", "aborted", "refused",
	"client-alert",
}

func (e EndReason) String() string {
	if e < NumEndReasons {
		return endNames[e]
	}
	return "invalid"
}

// Drop says why a client datagram went to no association.
type Drop uint8

// Reasons a client datagram is dropped.
const (
	DropNone          Drop = iota
	DropNoAssociation      // not a ClientHello, from a peer without an association
	DropNotAccepting       // a ClientHello that would open one after StopAccepting
	DropRefused            // a cookie echo the caps could not admit, or a ClientHello from a peer whose every handshake is verified
	DropInvalid            // an epoch-0 record no stack accepts in the association's state (rule 5)
	DropUnproved           // a record the peer's unanswered handshakes cannot take yet (rule 4)
	DropUnknownCID         // a tls12_cid record whose CID no association has (rule 9)
	NumDrops
)

var dropNames = [NumDrops]string{"none", "no-association", "not-accepting", "refused", "invalid", "unproved", "unknown-cid"}

func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return "invalid"
}

// Config sets a Machine's caps, timeouts and rules. Zero caps and timeouts
// mean none, except where Validate says otherwise.
type Config struct {
	// MaxUnverified caps Unverified associations (rule 1); at least 1.
	MaxUnverified int
	// UnverifiedTimeout ends an association whose client has not proved
	// its address this long after its first ClientHello; positive.
	UnverifiedTimeout time.Duration
	// MaxHandshakes caps verified handshakes under way; 0 for no cap.
	MaxHandshakes int
	// MaxAssociations caps verified associations of every state
	// (handshaking, established, closing); 0 for no cap.
	MaxAssociations int
	// HandshakeTimeout ends a handshake that has not completed this long
	// after its first ClientHello; positive.
	HandshakeTimeout time.Duration
	// IdleTimeout ends an established association after this long with no
	// datagram either way; 0 for never.
	IdleTimeout time.Duration
	// CloseLinger is how long an association lingers after the client's
	// closing alert (rule 6); 0 turns the rule off.
	CloseLinger time.Duration
	// Rehandshake lets a ClientHello with a new random start a handshake
	// beside the peer's established association (RFC 6347 §4.2.8). Off, it
	// goes to the established association, whose stack decides.
	Rehandshake bool
	// InferCompletion completes a verified handshake when its server sends
	// a protected record (rule 7), for shells that cannot ask the stack.
	InferCompletion bool
	// EndOnServerAlert ends an association once its server sent a closing
	// alert (see record.CarriesClosingAlert).
	EndOnServerAlert bool
	// EndOnClientAlert ends a verified handshake once its client's
	// plaintext fatal alert has been delivered to it (rule 10), for shells
	// that cannot ask the stack.
	EndOnClientAlert bool
	// CIDLength is the length of the Connection IDs the server receives
	// (RFC 9146): 0 when it negotiates none, record.CIDUnknown when the
	// shell cannot know. Rule 5 splits datagrams into records with it; a
	// positive length turns on routing by CID (rule 9).
	CIDLength int
	// DTLS13 says the stack may speak DTLS 1.3, whose ACK records may be
	// sent at epoch 0; otherwise an epoch-0 ACK is invalid too (rule 5).
	DTLS13 bool
}

// ErrInvalidConfig is wrapped by Validate's errors.
var ErrInvalidConfig = errors.New("invalid association config")

// Validate reports the first setting that is out of range.
func (c *Config) Validate() error {
	switch {
	case c.MaxUnverified < 1:
		return fmt.Errorf("max unverified associations %d: must be at least 1: %w", c.MaxUnverified, ErrInvalidConfig)
	case c.UnverifiedTimeout <= 0:
		return fmt.Errorf("unverified timeout %v: must be positive: %w", c.UnverifiedTimeout, ErrInvalidConfig)
	case c.HandshakeTimeout <= 0:
		return fmt.Errorf("handshake timeout %v: must be positive: %w", c.HandshakeTimeout, ErrInvalidConfig)
	case c.MaxHandshakes < 0, c.MaxAssociations < 0:
		return fmt.Errorf("caps %d and %d: must not be negative: %w", c.MaxHandshakes, c.MaxAssociations, ErrInvalidConfig)
	case c.IdleTimeout < 0, c.CloseLinger < 0:
		return fmt.Errorf("idle timeout %v and close linger %v: must not be negative: %w", c.IdleTimeout, c.CloseLinger, ErrInvalidConfig)
	case c.CIDLength < record.CIDUnknown || c.CIDLength > 255:
		return fmt.Errorf("connection ID length %d: must be 0 to 255, or record.CIDUnknown: %w", c.CIDLength, ErrInvalidConfig)
	}
	return nil
}

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
	// 9); empty without one.
	cid string

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

// ConnectionID returns the CID the association's records are routed by
// (rule 9), empty if none.
func (a *Assoc[T]) ConnectionID() string { return a.cid }

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

// Route is where one client datagram goes.
type Route[T any] struct {
	// To are the associations to deliver the datagram to, in order.
	To [MaxPerPeer + 1]*Assoc[T]
	N  int
	// Open is an association this datagram opened (it is also in To):
	// the shell sets up its I/O and Handle before delivering.
	Open *Assoc[T]
	// Drop says why the datagram went nowhere, when N is 0.
	Drop Drop
	// Ended is true when the datagram ended the association it goes to (a
	// client's fatal alert, with EndOnClientAlert): deliver it, then
	// release.
	Ended bool
}

func (r *Route[T]) add(a *Assoc[T]) { r.To[r.N] = a; r.N++ }

// Counters count what a Machine decided since it was made.
type Counters struct {
	Opened       uint64 // associations ClientHellos opened
	Rehandshakes uint64 // of those, opened beside an established association of the peer
	Verified     uint64 // clients that proved their address
	Refused      uint64 // cookie echoes dropped at a cap, and ClientHellos from a peer with MaxPerPeer verified handshakes
	Completed    uint64 // handshakes that completed
	Replaced     uint64 // established associations a newer one of the same client retired
	// RehandshakesAbandoned counts re-handshakes that ended before completing.
	RehandshakesAbandoned uint64
	// CookiesWithheld counts cookie requests not forwarded (rule 8).
	CookiesWithheld uint64
	// CIDsBound counts CIDs routed to the association whose server named
	// them; CIDCollisions those that another association had until then
	// (the newer takes the route, unless it is unverified and the other is
	// not).
	CIDsBound, CIDCollisions uint64
	// Moved counts peer address updates (rule 9); MovedDetached those
	// whose new address had another association, which keeps it.
	Moved, MovedDetached uint64
	Ended                [NumEndReasons]uint64
	Dropped              [NumDrops]uint64
}

// Gauges are a Machine's associations now, by state.
type Gauges struct {
	Peers, Unverified, Handshaking, Established, Closing int
}

// Machine is the association state machine. See the package documentation
// for its rules.
type Machine[T any] struct {
	cfg   Config
	onEnd func(a *Assoc[T], why EndReason, quiet bool)
	seed  maphash.Seed
	peers map[netip.AddrPort]*peer[T]
	cids  map[string]*Assoc[T] // rule 9; nil without CID routing

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

// New returns an empty Machine. onEnd is called for every association
// that ends, inside the call that ended it: the shell releases the
// association's I/O there and, when quiet is true, starts the client's
// quiet period. It must not call back into the Machine.
func New[T any](cfg Config, onEnd func(a *Assoc[T], why EndReason, quiet bool)) (*Machine[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if onEnd == nil {
		return nil, fmt.Errorf("nil end callback: %w", ErrInvalidConfig)
	}
	m := &Machine[T]{cfg: cfg, onEnd: onEnd, seed: maphash.MakeSeed(), peers: make(map[netip.AddrPort]*peer[T]), accepting: true}
	m.hsOK = record.Types(record.ContentTypeChangeCipherSpec, record.ContentTypeAlert, record.ContentTypeHandshake)
	m.liveOK = record.Types(record.ContentTypeChangeCipherSpec, record.ContentTypeHandshake)
	if cfg.DTLS13 {
		m.hsOK |= record.Types(record.ContentTypeACK)
		m.liveOK |= record.Types(record.ContentTypeACK)
	}
	if cfg.CIDLength > 0 {
		m.cids = make(map[string]*Assoc[T])
	}
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
	if d[0] == record.ContentTypeHandshake || d[0] == record.ContentTypeConnectionID && m.cids != nil {
		return false // a ClientHello may open a handshake; a CID routes by itself
	}
	return m.epoch0(d)&^m.liveOK == 0
}

func (m *Machine[T]) epoch0(d []byte) record.TypeSet {
	if len(d) < 13 {
		return 0 // no whole record: stacks discard it
	}
	return record.Epoch0Types(d, m.cfg.CIDLength)
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
func (m *Machine[T]) Client(now int64, from netip.AddrPort, d []byte) (r Route[T]) {
	if m.cids != nil && len(d) > 0 && d[0] == record.ContentTypeConnectionID {
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
	var rec record.Record
	rec.Parse(d)
	if rec.OpensAssociation() {
		m.clientHello(now, from, p, &rec, d, &r)
		return r
	}
	if p == nil {
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
			m.toHandshake(now, a, &rec, d, &r)
		} else if a := p.newest(isAnswered[T]); a != nil {
			// A server without cookies: the client answers its first flight.
			if m.verify(now, a) {
				m.toHandshake(now, a, &rec, d, &r)
			} else {
				return m.drop(&r, DropRefused)
			}
		} else if p.live != nil {
			m.toLive(now, p.live, d, &r)
		}
	default: // protected
		// Verify first: a closing association may be reclaimed for it,
		// and it must not be the one this datagram is about to close.
		for i := 0; i < p.n; i++ {
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
			if a := p.hs[i]; a.state == Handshaking && a.answered {
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

func (m *Machine[T]) clientHello(now int64, from netip.AddrPort, p *peer[T], rec *record.Record, d []byte, r *Route[T]) {
	ch, hasRandom := rec.ClientHello(d)
	if p != nil {
		if hasRandom {
			if a := p.byRandom(ch.Random); a != nil {
				if a.state == Unverified && a.hasCookie && len(ch.Cookie) > 0 && maphash.Bytes(m.seed, ch.Cookie) == a.cookie {
					if !m.verify(now, a) {
						m.drop(r, DropRefused)
						return
					}
				}
				m.deliver(now, a, r)
				return
			}
			if a := p.newest(func(a *Assoc[T]) bool { return !a.hasRandom }); a != nil {
				// Opened by a later fragment of this ClientHello.
				a.random, a.hasRandom = ch.Random, true
				m.deliver(now, a, r)
				return
			}
		} else if p.n > 0 {
			// A later fragment: the random that would route it is in the
			// first, so it goes with the newest handshake.
			m.deliver(now, p.hs[p.n-1], r)
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
	r.Open = a
	r.add(a)
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
	if a.cid != "" {
		m.claimCID(a) // rule 9: one it could not take unverified
	}
	// The timer still holds the unverified deadline, which is earlier; it
	// finds the handshake deadline when it gets there.
	return true
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

// Verdict is what to do with a datagram the server (or the local stack)
// sent on an association.
type Verdict struct {
	// Forward is false when the datagram must not reach the client: its
	// association was retired, and the client's newer one must not see it.
	Forward bool
	// Ended is true when the datagram ended the association (a server's
	// closing alert, with EndOnServerAlert): forward it, then release.
	Ended bool
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
		m.unclose(a)
	case Unverified, Handshaking:
		var rec record.Record
		rec.Parse(d)
		if !rec.AsksForCookie() {
			a.answered = true
		} else if cookie, ok := rec.Cookie(d); ok {
			a.cookie, a.hasCookie = maphash.Bytes(m.seed, cookie), true
		}
		if m.cids != nil {
			if cid, ok := rec.ServerConnectionID(d); ok {
				m.bindCID(a, cid)
			}
		}
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
	}
	if m.cfg.EndOnServerAlert && record.CarriesClosingAlert(d) {
		m.end(a, EndServerAlert, m.quiets(a))
		return Verdict{Forward: forward, Ended: true}
	}
	return Verdict{Forward: forward}
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

// NextDue returns when Expire next has work, if it ever has.
func (m *Machine[T]) NextDue() (int64, bool) {
	if len(m.heap) == 0 {
		return 0, false
	}
	return m.heap[0].due, true
}

// Expire ends every association whose deadline has passed.
func (m *Machine[T]) Expire(now int64) {
	for len(m.heap) > 0 && m.heap[0].due <= now {
		a := m.heap[0]
		at, why, ok := m.deadline(a)
		switch {
		case !ok:
			m.unschedule(a)
		case at > now:
			a.due = at
			m.down(0)
		default:
			m.end(a, why, false)
		}
	}
}

// deadline is when a's current state runs out, and why.
func (m *Machine[T]) deadline(a *Assoc[T]) (int64, EndReason, bool) {
	switch a.state {
	case Unverified:
		return a.opened + int64(m.cfg.UnverifiedTimeout), EndUnverifiedTimeout, true
	case Handshaking:
		return a.opened + int64(m.cfg.HandshakeTimeout), EndHandshakeTimeout, true
	case Established:
		return a.last + int64(m.cfg.IdleTimeout), EndIdle, m.cfg.IdleTimeout > 0
	case Closing:
		return a.since + int64(m.cfg.CloseLinger), EndLinger, true
	}
	return 0, 0, false
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

// end removes a and tells the shell.
func (m *Machine[T]) end(a *Assoc[T], why EndReason, quiet bool) {
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
	if a.cid != "" {
		m.unbindCID(a)
	}
	p := a.p
	p.remove(a)
	if p.live == nil && p.n == 0 && m.peers[a.addr] == p {
		delete(m.peers, a.addr)
	}
	m.c.Ended[why]++
	m.onEnd(a, why, quiet)
}

func (m *Machine[T]) pushBack(head, tail **Assoc[T], a *Assoc[T]) {
	a.prev, a.next = *tail, nil
	if *tail != nil {
		(*tail).next = a
	} else {
		*head = a
	}
	*tail = a
}

func (m *Machine[T]) unlink(head, tail **Assoc[T], a *Assoc[T]) {
	if a.prev != nil {
		a.prev.next = a.next
	} else {
		*head = a.next
	}
	if a.next != nil {
		a.next.prev = a.prev
	} else {
		*tail = a.prev
	}
	a.prev, a.next = nil, nil
}

// The timer heap holds every association with a deadline, keyed by due.
// Deadlines that move later (a handshake verified, an idle association
// that saw traffic) are found lazily when the old due comes round, so a
// datagram never touches the heap.

func (m *Machine[T]) schedule(a *Assoc[T], due int64) {
	if a.heapIdx >= 0 {
		if due < a.due {
			a.due = due
			m.up(a.heapIdx)
		}
		return
	}
	a.due = due
	a.heapIdx = len(m.heap)
	m.heap = append(m.heap, a)
	m.up(a.heapIdx)
}

func (m *Machine[T]) unschedule(a *Assoc[T]) {
	i := a.heapIdx
	if i < 0 {
		return
	}
	last := len(m.heap) - 1
	m.swap(i, last)
	m.heap[last] = nil
	m.heap = m.heap[:last]
	a.heapIdx = -1
	if i < last {
		m.down(i)
		m.up(i)
	}
}

func (m *Machine[T]) swap(i, j int) {
	m.heap[i], m.heap[j] = m.heap[j], m.heap[i]
	m.heap[i].heapIdx = i
	m.heap[j].heapIdx = j
}

func (m *Machine[T]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if m.heap[parent].due <= m.heap[i].due {
			return
		}
		m.swap(i, parent)
		i = parent
	}
}

func (m *Machine[T]) down(i int) {
	n := len(m.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		small := l
		if r := l + 1; r < n && m.heap[r].due < m.heap[l].due {
			small = r
		}
		if m.heap[i].due <= m.heap[small].due {
			return
		}
		m.swap(i, small)
		i = small
	}
}
