package demux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v2/deadline"
	"github.com/pion/transport/v2/packetio"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/record"
)

// connBufferLimit bounds what one peer can queue while its reader is slow.
const connBufferLimit = 1 << 20

// Conn is one association on the shared socket. It is both a net.Conn
// (for pion/dtls v2's Server) and a net.PacketConn (for v3's): reads
// return what the demultiplexer routed to this association, writes go to
// the peer through the filtered socket. Closing it ends the association;
// a completed one puts its peer into its quiet period unless another
// association of the same peer carries on.
type Conn struct {
	m *mux
	a *assoc.Assoc[*Conn]
	// cur is the peer's address. It changes only for an association
	// routed by Connection ID, when its stack sends to a new address.
	cur atomic.Pointer[peerAddr]
	// from caches the last source other than cur that ReadFrom reported,
	// so a client that moved costs no allocation per datagram.
	from atomic.Pointer[peerAddr]

	buf           *packetio.Buffer
	writeDeadline *deadline.Deadline
	// ctx ends when the Conn closes, so a handshake on it stops at once.
	ctx    context.Context
	cancel context.CancelFunc

	// settled is set once the handshake completed (or the association
	// ended): from then on writes need no look from the machine.
	settled atomic.Bool
	// retired is set when a newer association of the same peer replaced
	// this one.
	retired atomic.Bool
	// sole is set while the read loop may route the peer's datagrams to
	// this Conn without the lock (assoc.Machine.Sole); whoever ends the
	// association clears it.
	sole atomic.Bool
	// cidSole is sole for the route by Connection ID (mux.soleCID).
	cidSole atomic.Bool
	// alert is the last closing alert the stack sent on this association,
	// kept for the peer's quiet period (WithCloseEcho).
	alert atomic.Pointer[[]byte]
	// dtls13 is set on completion when its server chose DTLS 1.3, whose
	// close_notify is encrypted: the last small record the stack wrote
	// (last, under lastMu) stands in for it (WithCloseEcho).
	dtls13 atomic.Bool
	lastMu sync.Mutex
	last   [conntrack.MaxAlert]byte
	nlast  int
	// stack reports where the stack sends its records now (FollowStack).
	stack atomic.Pointer[func() net.Addr]
	once  sync.Once
}

var (
	_ net.Conn       = (*Conn)(nil)
	_ net.PacketConn = (*Conn)(nil)
)

// peerAddr is an address in both forms, so that the *net.UDPAddr a stack
// is handed for an address is always the same pointer: pion compares
// addresses by identity.
type peerAddr struct {
	ap netip.AddrPort
	ua *net.UDPAddr
}

func newConn(m *mux, a *assoc.Assoc[*Conn]) *Conn {
	ap := a.Peer()
	c := &Conn{
		m:             m,
		a:             a,
		buf:           packetio.NewBuffer(),
		writeDeadline: deadline.New(),
	}
	c.cur.Store(&peerAddr{ap, net.UDPAddrFromAddrPort(ap)})
	c.ctx, c.cancel = context.WithCancel(m.ctx)
	c.buf.SetLimitSize(connBufferLimit)
	return c
}

// sourceLen is what a mux routing by Connection ID appends to each queued
// datagram: its source address (16 bytes) and port. A client's records
// may come from any address, and its stack must see which.
const sourceLen = 18

// sourceBufs hold a datagram and its source while ReadFrom takes them
// apart: shared, so an association costs no buffer of its own.
var sourceBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram+sourceLen); return &b }}

// deliver queues a datagram from the peer for the reader (under a mux
// routing by Connection ID, with its source appended: mux.withSource); a
// full buffer drops it, as a full socket buffer would.
func (c *Conn) deliver(p []byte) {
	if _, err := c.buf.Write(p); errors.Is(err, packetio.ErrFull) {
		c.m.stats.bufferFull.Add(1)
	}
}

// Peer returns the remote address as a netip.AddrPort.
func (c *Conn) Peer() netip.AddrPort { return c.cur.Load().ap }

// Read reads the next datagram from the peer.
func (c *Conn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFrom(b)
	return n, err
}

// ReadFrom reads the next datagram from the peer. Under a listener routing
// by Connection ID the address is the datagram's source, which a client
// that moved may have changed; otherwise it is always the peer's.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	cur := c.cur.Load()
	if !c.m.sources {
		n, err := c.buf.Read(b)
		return n, cur.ua, err
	}
	sb := sourceBufs.Get().(*[]byte)
	defer sourceBufs.Put(sb)
	n, err := c.buf.Read(*sb)
	if err != nil || n < sourceLen {
		return 0, cur.ua, err
	}
	d := (*sb)[:n-sourceLen]
	src := (*sb)[n-sourceLen : n]
	from := netip.AddrPortFrom(netip.AddrFrom16([16]byte(src[:16])).Unmap(), uint16(src[16])<<8|uint16(src[17]))
	n = copy(b, d)
	if n < len(d) {
		err = io.ErrShortBuffer
	}
	if from == cur.ap {
		return n, cur.ua, err
	}
	if f := c.from.Load(); f != nil && f.ap == from {
		return n, f.ua, err
	}
	f := &peerAddr{from, net.UDPAddrFromAddrPort(from)}
	c.from.Store(f)
	return n, f.ua, err
}

// Write sends a datagram to the peer.
func (c *Conn) Write(b []byte) (int, error) { return c.write(b, c.cur.Load()) }

func (c *Conn) write(b []byte, to *peerAddr) (int, error) {
	select {
	case <-c.writeDeadline.Done():
		return 0, context.DeadlineExceeded
	default:
	}
	if !c.settled.Load() {
		// During the handshake the machine reads what the stack sends:
		// the cookie it must see echoed, whether the server answered.
		if !c.m.serverSent(c, b) {
			return len(b), nil
		}
	} else if c.retired.Load() {
		// The peer's addr:port now belongs to the association that replaced
		// this one. What the old stack still sends (its close_notify under
		// the old keys) cannot help the new one and has been seen to stall
		// OpenSSL's client, so it is swallowed.
		return len(b), nil
	} else if c.m.cfg.closeEcho && len(b) <= conntrack.MaxAlert {
		if record.CarriesClosingAlert(b) {
			a := bytes.Clone(b)
			c.alert.Store(&a)
		} else if c.dtls13.Load() {
			c.lastMu.Lock()
			c.nlast = copy(c.last[:], b)
			c.lastMu.Unlock()
		}
	}
	return c.m.fc.WriteToUDPAddrPort(b, to.ap)
}

// closingAlert is what the close echo sends the peer again: the closing
// alert the stack sent, or, in DTLS 1.3, whose alerts hide their content
// type, the last small record it wrote, which a stack that closes sends
// its close_notify as.
func (c *Conn) closingAlert() []byte {
	if p := c.alert.Load(); p != nil {
		return *p
	}
	c.lastMu.Lock()
	defer c.lastMu.Unlock()
	if c.nlast == 0 {
		return nil
	}
	return bytes.Clone(c.last[:c.nlast])
}

// WriteTo sends a datagram to the peer. A Conn speaks to one peer only, so
// the address is ignored, but for one thing: under a listener routing by
// Connection ID, an established association's stack names a new address
// once it authenticated a record from there (RFC 9146 §6), and the peer
// then moves there (see package assoc, rule 9). With FollowStack, only a
// write to where the stack now sends moves the peer; one elsewhere (a
// return routability check, RFC 9853, probing a path the stack has not
// taken) goes there and moves nothing.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	cur := c.cur.Load()
	if c.m.sources && addr != nil {
		if ua, ok := addr.(*net.UDPAddr); ok {
			if to := unmapped(ua.AddrPort()); to != cur.ap {
				if !c.follows(to) {
					return c.write(b, &peerAddr{to, ua})
				}
				cur = c.m.moved(c, ua)
			}
		}
	}
	return c.write(b, cur)
}

// FollowStack tells the Conn where its stack sends records now, for a
// stack that validates a client's new path before it takes it (pion v4's
// RFC 9853 return routability checks): stack returns that address (pion:
// the conn's RemoteAddr). Without it, every write to a new address moves
// the peer.
func (c *Conn) FollowStack(stack func() net.Addr) { c.stack.Store(&stack) }

// follows reports whether the stack now sends to to.
func (c *Conn) follows(to netip.AddrPort) bool {
	f := c.stack.Load()
	if f == nil {
		return true
	}
	ua, ok := (*f)().(*net.UDPAddr)
	return ok && unmapped(ua.AddrPort()) == to
}

// IssueCID tells the listener that the stack issued cid for this
// association: a CID its client may put in records from any address
// (DTLS 1.3's NewConnectionID travels encrypted). Call it from the stack's
// CID generator; the pion v4 adapter does. See package assoc, rule 9.
func (c *Conn) IssueCID(cid []byte) { c.m.issueCID(c, cid) }

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Close ends this association. Pending reads return io.EOF.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.buf.Close()
		c.m.connClosed(c)
	})
	return nil
}

// LocalAddr returns the shared socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.m.fc.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.cur.Load().ua }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.writeDeadline.Set(t)
	return c.buf.SetReadDeadline(t)
}

// SetReadDeadline sets the read deadline; a time in the past (pion's way to
// cancel a read) ends a blocked read at once.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.buf.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Set(t)
	return nil
}
