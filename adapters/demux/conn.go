package demux

import (
	"bytes"
	"context"
	"errors"
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
	m     *mux
	a     *assoc.Assoc[*Conn]
	addr  netip.AddrPort
	raddr *net.UDPAddr

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
	// alert is the last closing alert the stack sent on this association,
	// kept for the peer's quiet period (WithCloseEcho).
	alert atomic.Pointer[[]byte]
	once  sync.Once
}

var (
	_ net.Conn       = (*Conn)(nil)
	_ net.PacketConn = (*Conn)(nil)
)

func newConn(m *mux, a *assoc.Assoc[*Conn]) *Conn {
	ap := a.Peer()
	c := &Conn{
		m:             m,
		a:             a,
		addr:          ap,
		raddr:         net.UDPAddrFromAddrPort(ap),
		buf:           packetio.NewBuffer(),
		writeDeadline: deadline.New(),
	}
	c.ctx, c.cancel = context.WithCancel(m.ctx)
	c.buf.SetLimitSize(connBufferLimit)
	return c
}

// deliver queues a datagram for the reader; a full buffer drops it, as a
// full socket buffer would.
func (c *Conn) deliver(p []byte) {
	if _, err := c.buf.Write(p); errors.Is(err, packetio.ErrFull) {
		c.m.stats.bufferFull.Add(1)
	}
}

// Peer returns the remote address as a netip.AddrPort.
func (c *Conn) Peer() netip.AddrPort { return c.addr }

// Read reads the next datagram from the peer.
func (c *Conn) Read(b []byte) (int, error) { return c.buf.Read(b) }

// ReadFrom reads the next datagram from the peer.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.buf.Read(b)
	return n, c.raddr, err
}

// Write sends a datagram to the peer.
func (c *Conn) Write(b []byte) (int, error) {
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
	} else if c.m.cfg.closeEcho && len(b) <= conntrack.MaxAlert && record.CarriesClosingAlert(b) {
		a := bytes.Clone(b)
		c.alert.Store(&a)
	}
	return c.m.fc.WriteToUDPAddrPort(b, c.addr)
}

// WriteTo sends a datagram to the peer. The address is ignored: a Conn
// speaks to one peer only.
func (c *Conn) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }

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
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

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
