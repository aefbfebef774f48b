package demux

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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
// of its source, creating a Conn only for a datagram that opens an
// association. Listener and PacketListener put their accept logic on top.
type mux struct {
	fc  *strayfilter.Conn
	cfg config
	// newConn is told about a Conn made for a new association (live or
	// pending). It returns false to refuse it, in which case the Conn is
	// discarded before it ever sees a datagram.
	newConn func(*Conn) bool

	mu        sync.Mutex
	peers     map[netip.AddrPort]*peer
	conns     int // Conns not yet closed
	pending   int // handshakes under way (counted by the Listener)
	accepting bool
	closing   bool // accepting stopped: close the socket with the last Conn

	readDone chan struct{}
	readErr  error

	stats counters
}

// peer is what a remote address has: its live association and, while a
// rebooted client re-handshakes from the same address (RFC 6347 §4.2.8), a
// pending one.
type peer struct {
	live    *Conn
	pending *Conn
}

type counters struct {
	created, refused, unknownPeer, notAccepting, bufferFull atomic.Uint64
	accepted, handshakeFailed, backlogOverflow              atomic.Uint64
	rehandshakeStarted, rehandshakeCompleted                atomic.Uint64
	rehandshakeAbandoned                                    atomic.Uint64
}

func newMux(pc net.PacketConn, cfg config, newConn func(*Conn) bool) (*mux, error) {
	// The mux learns closes from the stack closing its Conns, which is exact
	// and works for DTLS 1.3; an alert sent by one association must not
	// silence the other during a re-handshake, so alert detection is off.
	fopts := append(append([]strayfilter.Option(nil), cfg.filterOpts...), strayfilter.WithAlertDetection(false))
	fc, err := strayfilter.New(pc, fopts...)
	if err != nil {
		return nil, err
	}
	m := &mux{
		fc:        fc,
		cfg:       cfg,
		newConn:   newConn,
		peers:     make(map[netip.AddrPort]*peer),
		accepting: true,
		readDone:  make(chan struct{}),
	}
	return m, nil
}

// start begins reading; the caller has finished setting up what newConn
// needs.
func (m *mux) start() { go m.readLoop() }

func (m *mux) readLoop() {
	defer close(m.readDone)
	err := m.read()
	m.mu.Lock()
	m.readErr = err
	var all []*Conn
	for _, p := range m.peers {
		all = append(all, p.live)
		if p.pending != nil {
			all = append(all, p.pending)
		}
	}
	m.mu.Unlock()
	// The socket is gone: every Conn's reader sees EOF once its buffer drains.
	for _, c := range all {
		if c != nil {
			c.buf.Close()
		}
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
		for i := range n {
			m.dispatch(b.Addrs[i], b.Bufs[i][:b.N[i]])
		}
	}
}

// dispatch routes one datagram. It allocates nothing for a known peer.
func (m *mux) dispatch(ap netip.AddrPort, p []byte) {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	m.mu.Lock()
	pe := m.peers[ap]
	if pe == nil {
		m.dispatchNew(ap, p) // unlocks
		return
	}
	live, pending := pe.live, pe.pending
	if pending == nil {
		if m.cfg.rehandshake && m.accepting && live != nil && live.established && len(p) > 0 && p[0] == strayfilter.ContentTypeHandshake {
			// A ClientHello with a new random after the handshake is a
			// client starting over from the same address; one with the live
			// handshake's random is a late copy of its own and goes to it.
			if rnd, ok := strayfilter.ClientRandom(p); ok && (!live.hasRandom || rnd != live.random) {
				m.startPending(ap, pe, p) // unlocks
				return
			}
		}
		m.mu.Unlock()
		live.deliver(p)
		return
	}
	m.mu.Unlock()
	// While a re-handshake is pending, epoch-0 records belong to it; later
	// epochs go to both, and each stack discards what it cannot
	// authenticate (RFC 6347 §4.1.2.7). Nothing in a datagram can switch
	// this routing: only a completed handshake does.
	r := strayfilter.Inspect(p)
	if r.ClearText() {
		pending.deliver(p)
		return
	}
	if live != nil {
		live.deliver(p)
	}
	pending.deliver(p)
}

// dispatchNew handles a datagram from a peer without an association; it
// is called with m.mu held and releases it.
func (m *mux) dispatchNew(ap netip.AddrPort, p []byte) {
	if !m.accepting {
		m.mu.Unlock()
		m.stats.notAccepting.Add(1)
		return
	}
	if !strayfilter.Inspect(p).OpensAssociation() {
		m.mu.Unlock()
		m.stats.unknownPeer.Add(1)
		return
	}
	c := m.makeConn(ap, p)
	if !m.newConn(c) {
		m.mu.Unlock()
		m.stats.refused.Add(1)
		return
	}
	m.peers[ap] = &peer{live: c}
	m.conns++
	m.mu.Unlock()
	m.stats.created.Add(1)
	c.deliver(p)
}

// startPending begins a re-handshake for a peer that has a live
// association; called with m.mu held, it releases it.
func (m *mux) startPending(ap netip.AddrPort, pe *peer, p []byte) {
	c := m.makeConn(ap, p)
	c.pending = true
	if !m.newConn(c) {
		m.mu.Unlock()
		m.stats.refused.Add(1)
		return
	}
	pe.pending = c
	m.conns++
	m.mu.Unlock()
	m.stats.rehandshakeStarted.Add(1)
	c.deliver(p)
}

// promoteLocked makes a pending association whose handshake completed the
// peer's live one. It returns the association it retires, which the caller
// closes once m.mu is released, and false if c was closed meanwhile. It is
// called with m.mu held.
func (m *mux) promoteLocked(c *Conn) (retired *Conn, ok bool) {
	pe := m.peers[c.addr]
	if pe == nil || pe.pending != c {
		return nil, false
	}
	retired = pe.live
	pe.live, pe.pending = c, nil
	c.pending = false
	c.established = true
	if retired != nil {
		retired.retired.Store(true)
	}
	return retired, true
}

// connClosed removes c from routing. The peer enters its quiet period only
// if no association is left for it: a failed re-handshake must not silence
// the live association, nor the retired one the association replacing it.
func (m *mux) connClosed(c *Conn) {
	m.mu.Lock()
	pe := m.peers[c.addr]
	if pe != nil {
		switch c {
		case pe.live:
			pe.live = nil
		case pe.pending:
			pe.pending = nil
			if pe.live != nil {
				m.stats.rehandshakeAbandoned.Add(1)
			}
		}
		if pe.live == nil && pe.pending != nil {
			// The live association ended during a re-handshake: the pending
			// one carries on alone.
			pe.live, pe.pending = pe.pending, nil
			pe.live.pending = false
		}
		if pe.live == nil && pe.pending == nil {
			// Quiet before unrouted, so no datagram finds the peer neither
			// routed nor quiet.
			if !c.retired.Load() {
				_ = m.fc.MarkClosedAddrPort(c.addr)
			}
			delete(m.peers, c.addr)
		}
	}
	m.conns--
	closeSocket := m.closing && m.conns == 0
	m.mu.Unlock()
	if closeSocket {
		m.fc.Close()
	}
}

// stopAccepting is the listener's Close: no new associations; the socket
// closes when the last Conn does (at once if there is none), so accepted
// connections live on.
func (m *mux) stopAccepting() {
	m.mu.Lock()
	m.accepting = false
	m.closing = true
	closeNow := m.conns == 0
	m.mu.Unlock()
	if closeNow {
		m.fc.Close()
	}
}

// makeConn makes the Conn for the association that first opens.
func (m *mux) makeConn(ap netip.AddrPort, first []byte) *Conn {
	c := newConn(m, ap)
	c.random, c.hasRandom = strayfilter.ClientRandom(first)
	return c
}
