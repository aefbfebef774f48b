package strayfilter_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/strayfilter"
)

// quietPair is a wrapped loopback socket and a peer of it that is quiet.
func quietPair(t *testing.T) (*strayfilter.Conn, net.PacketConn, net.PacketConn) {
	t.Helper()
	raw := listenLoopback(t)
	c, err := strayfilter.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer := listenLoopback(t)
	if err := c.MarkClosed(peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return c, raw, peer
}

// A reconnecting client's ClientHello read into a message split over
// several buffers ([13]byte, then [2048]byte) passes, and ends the quiet
// period. Only the first buffer used to be inspected: the ClientHello
// looked truncated, was dropped as malformed, and the client stayed quiet.
func TestReadBatchSplitBuffers(t *testing.T) {
	c, raw, peer := quietPair(t)
	hello := loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex")
	peer.WriteTo(hello, raw.LocalAddr())
	ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, 13), make([]byte, 2048)}}}
	n, err := c.ReadBatch(ms, 0)
	if err != nil || n != 1 || ms[0].N != len(hello) {
		t.Fatalf("ReadBatch = %d, %v (N %d); want the %d-byte ClientHello", n, err, ms[0].N, len(hello))
	}
	if c.Table().Quiet(peer.LocalAddr().(*net.UDPAddr).AddrPort()) {
		t.Fatal("the ClientHello did not end the quiet period")
	}
}

// A datagram cut short by a small read buffer is not what was sent, so the
// filter cannot judge it: it passes on every read path. It used to be
// judged on what was left: a ClientHello looked malformed and was dropped.
func TestTruncatedDatagramsPass(t *testing.T) {
	hello := loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex")
	short := len(hello) / 2
	reads := map[string]func(c *strayfilter.Conn) (int, error){
		"ReadFrom": func(c *strayfilter.Conn) (int, error) {
			n, _, err := c.ReadFrom(make([]byte, short))
			return n, err
		},
		"ReadFromUDPAddrPort": func(c *strayfilter.Conn) (int, error) {
			n, _, err := c.ReadFromUDPAddrPort(make([]byte, short))
			return n, err
		},
		"ReadFromUDP": func(c *strayfilter.Conn) (int, error) {
			n, _, err := c.ReadFromUDP(make([]byte, short))
			return n, err
		},
		"ReadMsgUDPAddrPort": func(c *strayfilter.Conn) (int, error) {
			n, _, _, _, err := c.ReadMsgUDPAddrPort(make([]byte, short), nil)
			return n, err
		},
		"ReadBatch": func(c *strayfilter.Conn) (int, error) {
			ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, short)}}}
			if _, err := c.ReadBatch(ms, 0); err != nil {
				return 0, err
			}
			return ms[0].N, nil
		},
		"ReadBatchAddrPort": func(c *strayfilter.Conn) (int, error) {
			b := strayfilter.NewBatch(2, short)
			if _, err := c.ReadBatchAddrPort(b); err != nil {
				return 0, err
			}
			return b.N[0], nil
		},
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			c, raw, peer := quietPair(t)
			peer.WriteTo(hello, raw.LocalAddr())
			if n, err := read(c); err != nil || n != short {
				t.Fatalf("read = %d, %v; want the first %d bytes of the ClientHello", n, err, short)
			}
			if s := c.Stats(); s.TotalStrays() != 0 {
				t.Fatalf("a truncated datagram was judged and dropped: %+v", s)
			}
		})
	}
}

// nonIPConn reports a source address that is not an IP address.
type nonIPConn struct{ fakeConnBase }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe:0" }

func (nonIPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	return copy(b, "datagram"), pipeAddr{}, nil
}

// ReadBatchAddrPort cannot name a source that is not an IP address and
// port: it says so instead of losing the datagram without a count.
func TestReadBatchAddrPortNonIPSource(t *testing.T) {
	c, err := strayfilter.New(nonIPConn{})
	if err != nil {
		t.Fatal(err)
	}
	c.MarkClosedAddrPort(netip.MustParseAddrPort("192.0.2.1:1")) // the filter is on
	_, err = c.ReadBatchAddrPort(strayfilter.NewBatch(1, 64))
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want errors.ErrUnsupported", err)
	}
	// ReadFrom passes it as it is.
	if n, addr, err := c.ReadFrom(make([]byte, 64)); err != nil || n != 8 || addr != (pipeAddr{}) {
		t.Fatalf("ReadFrom = %d, %v, %v", n, addr, err)
	}
}

// fakeConnBase is the rest of a net.PacketConn, doing nothing.
type fakeConnBase struct{}

func (fakeConnBase) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (fakeConnBase) Close() error                              { return nil }
func (fakeConnBase) LocalAddr() net.Addr                       { return pipeAddr{} }
func (fakeConnBase) SetDeadline(time.Time) error               { return nil }
func (fakeConnBase) SetReadDeadline(time.Time) error           { return nil }
func (fakeConnBase) SetWriteDeadline(time.Time) error          { return nil }

// TestNoAlertKeptWithoutEcho: without WithCloseEcho the table keeps no
// closing alert for a quiet peer (nothing would send it, and it costs 148
// bytes a peer), whether the alert was written through the Conn or given
// to MarkClosedWithAlert; with it, both are kept.
func TestNoAlertKeptWithoutEcho(t *testing.T) {
	alert := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	written, given := udpAddr("192.0.2.7:7000"), udpAddr("192.0.2.8:7000")
	for _, echo := range []bool{false, true} {
		c, err := strayfilter.New(newFakeConn(), strayfilter.WithCloseEcho(echo))
		if err != nil {
			t.Fatal(err)
		}
		c.WriteTo(alert, written)
		c.MarkClosedWithAlert(given.AddrPort(), alert)
		var buf [conntrack.MaxAlert]byte
		for _, p := range []*net.UDPAddr{written, given} {
			if !c.Table().Quiet(p.AddrPort()) {
				t.Fatalf("echo %v: %v not quiet", echo, p)
			}
			if _, kept := c.Table().Stray(p.AddrPort(), 1000, buf[:]); kept != echo {
				t.Errorf("echo %v: alert for %v kept: %v", echo, p, kept)
			}
		}
	}
}
