package dtlstest

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	dtlsv4 "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"
)

// V4 names a DTLS version a pion/dtls v4 test runs: v4 speaks 1.2 and 1.3
// and prefers 1.3, so every suite runs once pinned to each.
type V4 struct {
	Name    string
	Version protocol.Version
}

// V4Versions are the versions the v4 suites run in.
var V4Versions = []V4{{"dtls12", protocol.Version1_2}, {"dtls13", protocol.Version1_3}}

// DialV4 runs a pion/dtls v4 client handshake with opts over uc, a socket
// connected to the server, giving up after timeout.
func DialV4(opts []dtlsv4.ClientOption, timeout time.Duration) func(uc *net.UDPConn) (net.Conn, error) {
	return func(uc *net.UDPConn) (net.Conn, error) {
		c, err := dtlsv4.Client(connected(uc), uc.RemoteAddr(), opts...)
		if err != nil {
			return nil, err
		}
		return c, Handshake(c, timeout)
	}
}

// connected is a connected *net.UDPConn as the net.PacketConn pion v4's
// Client takes: it writes with Write, which a connected socket requires,
// whatever address pion names; and it sends first (SendFirst).
func connected(uc *net.UDPConn) net.PacketConn { return SendFirst(writeConnected{uc}) }

type writeConnected struct{ *net.UDPConn }

func (c writeConnected) WriteTo(b []byte, _ net.Addr) (int, error) { return c.UDPConn.Write(b) }

// SendFirst returns pc for a pion v4 client whose reads wait for its first
// write. pion v4.0.2's client generates its first flight
// (flight13.flight1Generate resets State13.CID) while its reader may
// already unpack a datagram (Conn.unpackDatagram reads State13.CID), with
// no lock between them: a datagram waiting in a socket that a previous
// association used (a server's late close_notify, a close echo) makes the
// race detector report pion's race (RELIABILITY.md). A client that sends
// before it reads, as every client does, never meets it. A read deadline
// in the past (pion's way to cancel a read) ends a waiting read at once.
func SendFirst(pc net.PacketConn) net.PacketConn {
	return &sendFirst{PacketConn: pc, sent: make(chan struct{}), kick: make(chan struct{}, 1)}
}

type sendFirst struct {
	net.PacketConn
	once sync.Once
	sent chan struct{} // closed at the first write
	kick chan struct{} // a deadline moved into the past
}

func (s *sendFirst) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := s.PacketConn.WriteTo(b, addr)
	s.once.Do(func() { close(s.sent) })
	return n, err
}

func (s *sendFirst) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-s.sent:
	case <-s.kick:
		return 0, nil, os.ErrDeadlineExceeded
	}
	return s.PacketConn.ReadFrom(b)
}

func (s *sendFirst) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return s.PacketConn.SetReadDeadline(t)
}

func (s *sendFirst) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.PacketConn.SetWriteDeadline(t)
}

// ClientHelloV4 returns the first datagram a pion v4 client with opts
// sends, caught on a socket that never answers: its first ClientHello (in
// DTLS 1.3, with the X25519 key share it offers first, one datagram).
func ClientHelloV4(t testing.TB, opts []dtlsv4.ClientOption) []byte {
	t.Helper()
	return firstDatagram(t, func(ctx context.Context, uc *net.UDPConn) {
		c, err := dtlsv4.Client(connected(uc), uc.RemoteAddr(), opts...)
		if err != nil {
			t.Errorf("pion v4 client: %v", err)
			return
		}
		c.HandshakeContext(ctx)
		c.Close()
	})
}
