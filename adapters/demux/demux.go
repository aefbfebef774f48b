package demux

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/internal/shell"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

// Reads go in batches of readBatch datagrams (one recvmmsg on Linux) of up
// to maxDatagram bytes: the largest DTLS record (2^14 bytes of plaintext
// plus expansion) and its header fit.
const (
	readBatch   = 32
	maxDatagram = 1<<14 + 2048 + 13
)

// mux owns a filtered socket and routes each datagram to the per-peer Conn
// its association state machine chooses. It is the I/O around that
// machine: the machine decides, the mux reads, delivers, starts and
// closes. Listener and PacketListener put their accept logic on top.
type mux struct {
	fc  *strayfilter.Conn
	cfg config
	// sources: each queued datagram carries its source (withSource), for
	// a stack that follows a client by CID. cidLen is the machine's CID
	// length, read by the read loop without the lock.
	sources bool
	cidLen  atomic.Int32
	// start is told about a Conn made for a new association: the Listener
	// runs its handshake, the PacketListener hands it to Accept.
	start func(*Conn)
	ctx   context.Context // ends every handshake when the listener closes
	stop  context.CancelFunc

	// sh serialises events into the machine, sm, which the read loop also
	// asks without the lock what depends on its configuration alone
	// (SoleTakes, SoleCIDTakes). sh's lock guards what follows.
	sh      *shell.Shell[*Conn]
	sm      *assoc.Machine[*Conn]
	all     map[*Conn]struct{} // Conns not yet closed
	closing bool               // accepting stopped: close the socket with the last Conn

	readDone chan struct{}
	readErr  error

	// sole routes an established peer's datagrams without the lock: the
	// read loop alone uses it, and an entry holds only while its Conn's
	// sole flag is set (see assoc.Machine.Sole). stale counts the entries
	// whose flag was cleared, so the read loop sweeps them now and then.
	sole  map[netip.AddrPort]*Conn
	stale atomic.Int64
	// soleCID is sole for tls12_cid records, keyed by CID: an entry holds
	// while its Conn's cidSole flag is set and cidGen has not moved since
	// (a CID that another association took bumps it; see
	// assoc.Machine.SoleByCID).
	soleCID    map[string]cidRoute
	cidGen     atomic.Uint64
	collisions uint64 // the machine's CIDCollisions when cidGen last moved; under sh's lock
	// src holds a datagram with its source appended when the batch
	// buffer has no room behind it (see withSource).
	src []byte

	stats counters
}

type cidRoute struct {
	c   *Conn
	gen uint64
}

type counters struct {
	bufferFull, accepted, handshakeFailed, backlogOverflow atomic.Uint64
}

func newMux(pc net.PacketConn, cfg config, inferCompletion bool, start func(*Conn)) (*mux, error) {
	// The mux learns closes from the stack closing its Conns, which is exact
	// and works for DTLS 1.3; an alert sent by one association must not
	// silence the other during a re-handshake, so alert detection is off.
	fopts := append(append([]strayfilter.Option(nil), cfg.filterOpts...),
		strayfilter.WithAlertDetection(false), strayfilter.WithCloseEcho(cfg.closeEcho))
	m := &mux{}
	if cfg.cidLen != 0 {
		// A live association's CID records pass a quiet address: its
		// client may have moved onto a port a closed client used.
		fopts = append(fopts, strayfilter.WithExempt(m.liveCID))
	}
	fc, err := strayfilter.New(pc, fopts...)
	if err != nil {
		return nil, err
	}
	*m = mux{
		fc:       fc,
		cfg:      cfg,
		sources:  cfg.cidLen != 0,
		start:    start,
		all:      make(map[*Conn]struct{}),
		sole:     make(map[netip.AddrPort]*Conn),
		soleCID:  make(map[string]cidRoute),
		readDone: make(chan struct{}),
	}
	m.ctx, m.stop = context.WithCancel(context.Background())
	m.cidLen.Store(int32(max(cfg.cidLen, 0)))
	m.sm, err = assoc.New[*Conn](assoc.Config{
		MaxUnverified:     cfg.maxUnverified,
		UnverifiedTimeout: cfg.unverifiedTimeout,
		MaxHandshakes:     cfg.maxPending,
		HandshakeTimeout:  cfg.handshakeTimeout,
		Rehandshake:       cfg.rehandshake,
		InferCompletion:   inferCompletion,
		CIDLength:         max(cfg.cidLen, 0),
		LearnCIDLength:    cfg.cidLen == LearnLength,
		DTLS13:            cfg.dtls13,
	})
	if err != nil {
		m.stop()
		return nil, invalid("%v", err)
	}
	m.sh = shell.New(m.sm, shell.Handler[*Conn](m))
	return m, nil
}

// Settled is the shell's: the read loop reads the CID length and whether
// CIDs changed hands without the lock.
func (m *mux) Settled(sm *assoc.Machine[*Conn]) {
	if n := int32(sm.CIDLength()); n != m.cidLen.Load() {
		m.cidLen.Store(n) // learned from a ServerHello (LearnLength)
	}
	if n := sm.CIDCollisions(); n != m.collisions {
		// A CID changed hands (a ServerHello, or a verification that
		// claimed one): every lock-free CID route asks again.
		m.collisions = n
		m.cidGen.Add(1)
	}
}

// Ended is the shell's, run with its lock held.
func (m *mux) Ended(e assoc.Ending[*Conn]) bool {
	a, c := e.Assoc, e.Assoc.Handle
	if e.Quiet {
		// Quiet before unrouted: the machine has already unrouted the
		// peer, but no datagram sees it until the lock is released. The
		// random lets the filter tell a late copy of the association's
		// ClientHello from the client's next one.
		cl := conntrack.Closure{}
		cl.ClientRandom, cl.HasRandom = a.ClientRandom()
		if c != nil {
			cl.Alert = c.closingAlert()
		}
		_ = m.fc.MarkClosedWith(a.Peer(), cl)
	}
	if c == nil {
		return false
	}
	if c.sole.Swap(false) {
		m.stale.Add(1)
	}
	if c.cidSole.Swap(false) {
		m.stale.Add(1)
	}
	if e.Why == assoc.EndClosed {
		return false // the Conn itself reported the close
	}
	if e.Why == assoc.EndRetired {
		c.retired.Store(true)
	}
	return true
}

// Release is the shell's: it closes a Conn the machine ended.
func (m *mux) Release(c *Conn) { c.Close() }

func (m *mux) now() int64 { return m.sh.Now() }

// run begins reading; the caller has finished setting up what start
// needs.
func (m *mux) run() { go m.readLoop() }

func (m *mux) readLoop() {
	defer close(m.readDone)
	err := m.read()
	m.sh.Lock()
	m.readErr = err
	m.sh.StopLocked()
	all := make([]*Conn, 0, len(m.all))
	for c := range m.all {
		all = append(all, c)
	}
	m.sh.Unlock()
	// The socket is gone: every Conn's reader sees EOF once its buffer drains.
	for _, c := range all {
		c.buf.Close()
	}
}

func (m *mux) read() error {
	b := strayfilter.NewBatch(readBatch, maxDatagram)
	for {
		n, err := m.fc.ReadBatchAddrPort(b)
		if err != nil {
			// Like pion's listener: a read error ends the listener. On an
			// unconnected UDP socket that means it was closed.
			return err
		}
		now := m.now()
		for i := range n {
			m.dispatch(now, b.Addrs[i], b.Bufs[i][:b.N[i]], b.Parsed(i))
		}
	}
}

// dispatch routes one datagram. A datagram for an established peer with
// nothing beside it takes no lock, nor does a tls12_cid record for an
// established association; it allocates nothing for a known peer.
func (m *mux) dispatch(now int64, ap netip.AddrPort, p []byte, parsed *record.Parsed) {
	ap = unmapped(ap)
	q := p // what the Conns queue
	var cid []byte
	if m.sources {
		q = m.withSource(p, ap)
		if c, ok := record.ConnectionID(p, int(m.cidLen.Load())); ok {
			cid = c
			if rt, ok := m.soleCID[string(cid)]; ok && rt.c.cidSole.Load() && rt.gen == m.cidGen.Load() && m.sm.SoleCIDTakes(p) {
				rt.c.deliver(q)
				return
			}
		}
	}
	if c := m.sole[ap]; c != nil && c.sole.Load() && m.sm.SoleTakes(p) && (!m.sources || c.Peer() == ap) {
		c.deliver(q)
		return
	}
	m.sh.Lock()
	r := m.sm.ClientParsed(now, ap, p, parsed)
	var opened *Conn
	if r.Open != nil {
		opened = newConn(m, r.Open)
		r.Open.Handle = opened
		m.all[opened] = struct{}{}
	}
	if a := m.sm.Sole(ap); a != nil && a.Handle != nil {
		a.Handle.sole.Store(true)
		m.sole[ap] = a.Handle
	} else {
		delete(m.sole, ap)
	}
	if cid != nil {
		if a := m.sm.SoleByCID(cid); a != nil && a.Handle != nil {
			a.Handle.cidSole.Store(true)
			if rt, ok := m.soleCID[string(cid)]; !ok || rt.c != a.Handle || rt.gen != m.cidGen.Load() {
				m.soleCID[string(cid)] = cidRoute{a.Handle, m.cidGen.Load()}
			}
		} else {
			delete(m.soleCID, string(cid))
		}
	}
	m.sh.Unlock()
	if opened != nil {
		m.start(opened)
	}
	for i := range r.N {
		r.To[i].Handle.deliver(q)
	}
	if n := m.stale.Load(); n > 64 && n > int64(len(m.sole)+len(m.soleCID))/4 {
		m.sweep()
	}
}

// withSource returns p with its source appended: a Conn under a mux
// routing by Connection ID reports each datagram's source to its stack.
// p is the read loop's own batch buffer, so the source goes in behind it
// where there is room, and only a datagram that fills the buffer is
// copied (into m.src).
func (m *mux) withSource(p []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().As16()
	q := p
	if cap(p)-len(p) < sourceLen {
		m.src = append(m.src[:0], p...)
		q = m.src
	}
	q = append(q, a[:]...)
	return append(q, byte(ap.Port()>>8), byte(ap.Port()))
}

// liveCID is the filter's exemption under a mux routing by Connection ID:
// a quiet address's tls12_cid record passes if a live association has its
// CID. It runs in the read loop, only for a quiet peer's datagrams.
func (m *mux) liveCID(_ netip.AddrPort, p []byte) bool {
	cid, ok := record.ConnectionID(p, int(m.cidLen.Load()))
	if !ok {
		return false
	}
	m.sh.Lock()
	defer m.sh.Unlock()
	return m.sm.ByCID(cid) != nil
}

// moved is Conn.WriteTo's: c's stack sends to ua, a new address. The
// machine decides whether the association moves (rule 9); the datagram
// goes wherever the peer now is.
func (m *mux) moved(c *Conn, ua *net.UDPAddr) *peerAddr {
	to := unmapped(ua.AddrPort())
	m.sh.Lock()
	defer m.sh.Unlock()
	m.sm.Moved(c.a, to)
	if c.a.Peer() != to {
		return c.cur.Load()
	}
	cur := &peerAddr{to, ua}
	c.cur.Store(cur)
	if c.sole.Swap(false) {
		m.stale.Add(1) // the next datagram from its new address asks again
	}
	return cur
}

// issueCID is Conn.IssueCID's.
func (m *mux) issueCID(c *Conn, cid []byte) {
	m.sh.Lock()
	m.sm.IssueCID(c.a, cid)
	m.sh.Unlock()
}

// sweep drops the sole-route entries whose Conn ended. Only the read loop
// calls it.
func (m *mux) sweep() {
	for ap, c := range m.sole {
		if !c.sole.Load() {
			delete(m.sole, ap)
		}
	}
	gen := m.cidGen.Load()
	for cid, rt := range m.soleCID {
		if !rt.c.cidSole.Load() || rt.gen != gen {
			delete(m.soleCID, cid)
		}
	}
	m.stale.Store(0)
}

// serverSent tells the machine what the stack sent on c before its
// handshake completed (a HelloVerifyRequest's cookie, a ServerHello) and
// reports whether it may go out.
func (m *mux) serverSent(c *Conn, b []byte) bool {
	m.sh.Lock()
	v := m.sm.Server(m.now(), c.a, b)
	if st := c.a.State(); st == assoc.Established || st == assoc.Ended {
		c.settled.Store(true)
	}
	m.sh.Unlock()
	return v.Forward
}

// completed tells the machine c's handshake completed. It returns false if
// c's association ended meanwhile.
func (m *mux) completed(c *Conn) bool {
	m.sh.Lock()
	ok := m.sm.Completed(m.now(), c.a)
	if ok {
		c.dtls13.Store(c.a.DTLS13())
		c.settled.Store(true)
	}
	m.sh.Unlock()
	return ok
}

// connClosed tells the machine that c's stack closed it. A completed
// association quiets its peer unless another proved association of the
// peer carries on (see package assoc, rule 3).
func (m *mux) connClosed(c *Conn) {
	m.sh.Lock()
	m.sm.Closed(c.a)
	delete(m.all, c)
	closeSocket := m.closing && len(m.all) == 0
	m.sh.Unlock()
	if closeSocket {
		m.shutdown()
	}
}

// stopAccepting is the listener's Close: no new associations; the socket
// closes when the last Conn does (at once if there is none), so accepted
// connections live on.
func (m *mux) stopAccepting() {
	m.sh.Lock()
	m.sm.StopAccepting()
	m.closing = true
	closeNow := len(m.all) == 0
	m.sh.Unlock()
	if closeNow {
		m.shutdown()
	}
}

func (m *mux) shutdown() {
	m.stop()
	m.fc.Close()
}
