package dtlstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

// DialThrough runs a client handshake with dial through relay, failing t
// if it does not complete.
func DialThrough(t *testing.T, relay *udprelay.Relay, dial func(uc *net.UDPConn) (net.Conn, error)) (*net.UDPConn, net.Conn) {
	t.Helper()
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(uc)
	if err != nil {
		uc.Close()
		t.Fatalf("handshake: %v", err)
	}
	return uc, c
}

// RebindingClient runs a client (a handshake with dial, CIDs on) through
// a NAT (a relay) that gives it a new port after `before` echoed messages
// and closes the old one, then sends `after` more. It returns how many of
// those were echoed.
//
// Between the two it sends probes until one is echoed, three at most (0
// echoed if none is; EchoRetry says why): the messages after the probe
// are what the server's following is judged by.
func RebindingClient(t *testing.T, server net.Addr, dial func(uc *net.UDPConn) (net.Conn, error), before, after int) int {
	t.Helper()
	nat, err := udprelay.New(server.(*net.UDPAddr).AddrPort(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	uc, c := DialThrough(t, nat, dial)
	defer c.Close()
	for i := range before {
		EchoOnce(t, c, fmt.Sprint("before ", i))
	}
	local := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	oldSide, _ := nat.ServerSide(local)
	newSide, err := nat.Rebind(local)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the NAT moved the client from %v to %v", oldSide, newSide)
	buf := make([]byte, 256)
	probes := EchoRetry(c, "probe", buf, 3, 500*time.Millisecond)
	t.Logf("probes sent until one was echoed at the new port: %d (0: none was)", probes)
	if probes == 0 {
		return 0
	}
	n := 0
	for i := range after {
		if EchoRetry(c, fmt.Sprint("after ", i), buf, 1, time.Second) == 0 {
			break // a lost echo: the server still answers the old port
		}
		n++
	}
	return n
}

// InFlight keeps every datagram clients send through a relay but their
// ClientHellos: what an association leaves in flight. Hook is the relay's
// hook.
type InFlight struct {
	mu   sync.Mutex
	sent [][]byte
}

func (c *InFlight) Hook(p udprelay.Packet) udprelay.Verdict {
	if r := record.Inspect(p.Data); p.Dir == udprelay.ToServer && !r.OpensAssociation() {
		c.mu.Lock()
		c.sent = append(c.sent, bytes.Clone(p.Data))
		c.mu.Unlock()
	}
	return udprelay.Verdict{}
}

// All returns what was captured so far.
func (c *InFlight) All() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.sent...)
}

// WithCID returns the captured datagrams that start with a record
// carrying a CID.
func (c *InFlight) WithCID() [][]byte {
	var out [][]byte
	for _, d := range c.All() {
		if record.HasConnectionID(d) {
			out = append(out, d)
		}
	}
	return out
}

// RequireBogusConn accepts the next connection from pion's own listener ln
// and fails t unless it comes from `from` and its handshake (run by
// handshake) fails within half a second: the connection a stray made.
func RequireBogusConn(t *testing.T, ln net.Listener, from netip.AddrPort, handshake func(ctx context.Context, c net.Conn) error) net.Conn {
	t.Helper()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if got := c.RemoteAddr().(*net.UDPAddr).AddrPort(); got != from {
		t.Fatalf("accepted %v, expected the stray from %v", got, from)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := handshake(ctx, c); err == nil {
		t.Fatal("the stray's handshake completed")
	}
	return c
}
