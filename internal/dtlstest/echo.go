package dtlstest

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

// CloseEcho runs the moment the close echo is for: a client whose
// server's close_notify was lost on its way (a relay drops the first
// server→client alert record) writes again on an association the server
// has closed. It returns how long after that write the client's Read
// failed, or an error if it did not within wait. server is what the client
// talks to; closed reports once the server side has closed; dial runs a
// client handshake over a socket connected to the relay.
func CloseEcho(t *testing.T, server netip.AddrPort, closed func() bool, dial func(uc *net.UDPConn) (net.Conn, error), wait time.Duration) (time.Duration, error) {
	t.Helper()
	var dropped atomic.Bool
	front, err := udprelay.New(server, func(p udprelay.Packet) udprelay.Verdict {
		r := record.Inspect(p.Data)
		lose := p.Dir == udprelay.ToClient && r.Class == record.ClassAlert && dropped.CompareAndSwap(false, true)
		return udprelay.Verdict{Drop: lose}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(front.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(uc)
	if err != nil {
		uc.Close()
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	EchoOnce(t, c, "before the close")
	WaitFor(t, "the server closes", closed)
	if !dropped.Load() {
		t.Fatal("the server's close_notify was not seen on its way to drop it")
	}
	// The client does not know: it writes on, and waits for an answer.
	start := time.Now()
	if _, err := c.Write([]byte("after the close")); err != nil {
		return 0, err
	}
	c.SetReadDeadline(start.Add(wait))
	buf := make([]byte, 256)
	_, err = c.Read(buf)
	took := time.Since(start)
	if err == nil {
		t.Fatal("the closed association answered")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return took, err
	}
	return took, nil
}
