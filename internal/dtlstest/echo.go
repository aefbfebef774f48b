package dtlstest

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
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
	return closeEcho(t, server, nil, closed, dial, wait, true)
}

// CloseEchoEncrypted is CloseEcho for a server whose close_notify hides
// its content type (DTLS 1.3): closeServer makes the server close once
// the client has read its echo, and the relay drops the first datagram
// the server sends after that, its close_notify.
func CloseEchoEncrypted(t *testing.T, server netip.AddrPort, closeServer func(), closed func() bool, dial func(uc *net.UDPConn) (net.Conn, error), wait time.Duration) (time.Duration, error) {
	t.Helper()
	return closeEcho(t, server, closeServer, closed, dial, wait, true)
}

// closeEcho is CloseEcho and CloseEchoEncrypted; notifies says the server
// is sure to send its close_notify, which the test then waits to see
// dropped before the client writes.
func closeEcho(t *testing.T, server netip.AddrPort, closeServer func(), closed func() bool, dial func(uc *net.UDPConn) (net.Conn, error), wait time.Duration, notifies bool) (time.Duration, error) {
	t.Helper()
	var armed, dropped atomic.Bool
	var after atomic.Int32 // datagrams to the client after the dropped close_notify
	tr := newTrace(t)
	front, err := udprelay.New(server, func(p udprelay.Packet) udprelay.Verdict {
		if p.Dir != udprelay.ToClient {
			tr.add(p, false)
			return udprelay.Verdict{}
		}
		if dropped.Load() {
			after.Add(1)
		}
		var close bool
		if closeServer == nil {
			close = record.Inspect(p.Data).Class == record.ClassAlert
		} else {
			close = armed.Load()
		}
		drop := close && dropped.CompareAndSwap(false, true)
		tr.add(p, drop)
		return udprelay.Verdict{Drop: drop}
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
	tr.mark("the client read its echo")
	if closeServer != nil {
		// Everything the server sent before the echo crossed the relay
		// ahead of it: what it sends next is its close_notify.
		armed.Store(true)
		closeServer()
	}
	WaitFor(t, "the server closes", closed)
	tr.mark("the server closed")
	if notifies {
		WaitFor(t, "the server's close_notify dropped on its way", dropped.Load)
	}
	// The client does not know: it writes on, and waits for an answer.
	tr.mark("the client writes again")
	start := time.Now()
	if _, err := c.Write([]byte("after the close")); err != nil {
		if after.Load() > 0 {
			// The client learned before it wrote: a datagram it sent on
			// its own after the close (a retransmitted flight, when the
			// server's ACK was slow) earned it the echo, and nothing else
			// reaches a client after its close_notify was dropped.
			return 0, nil
		}
		return 0, err
	}
	c.SetReadDeadline(start.Add(wait))
	buf := make([]byte, 256)
	_, err = c.Read(buf)
	took := time.Since(start)
	tr.mark(fmt.Sprintf("the client's read returned (%v)", err))
	if err == nil {
		t.Fatal("the closed association answered")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return took, err
	}
	return took, nil
}

// CloseEchoSuite is the close echo against an adapter: the server's
// close_notify is lost; the client writes on. Its datagram is a stray, and
// the adapter sends it the close_notify again, so the client's Read fails
// at once. With the echo off, and behind pion's own listener, the client
// waits for its own timeout.
type CloseEchoSuite struct {
	// Listen starts the adapter's listener on loopback.
	Listen func(t *testing.T, opts ...demux.Option) *demux.Listener
	// PionListen starts pion's own listener on loopback.
	PionListen func(t *testing.T) net.Listener
	// Dial runs a client handshake over a socket connected to the server.
	Dial func(uc *net.UDPConn) (net.Conn, error)
	// Encrypted says the server's close_notify hides its content type
	// (DTLS 1.3): the test closes the server and drops what it sends
	// next (CloseEchoEncrypted).
	Encrypted bool
}

// CloseEchoWait is how long a client is given to learn of the close: far
// beyond an echo's round trip, far below pion's own timeouts.
const CloseEchoWait = 3 * time.Second

// Run runs the adapter with and without the echo, and pion's own
// listener, as subtests.
func (s CloseEchoSuite) Run(t *testing.T) {
	// The server closes after its first echo, or, with Encrypted, when
	// the test closes it (srv.CloseOpen).
	serve := func(ln net.Listener, onClose func(net.Conn)) *EchoServer {
		srv := Serve(ln, !s.Encrypted, onClose)
		t.Cleanup(func() {
			ln.Close()
			srv.Stop()
		})
		return srv
	}
	adapter := func(opts ...demux.Option) func(t *testing.T) (net.Listener, *EchoServer, func() bool) {
		return func(t *testing.T) (net.Listener, *EchoServer, func() bool) {
			ln := s.Listen(t, opts...)
			return ln, serve(ln, nil), func() bool { return ln.Stats().Filter.QuietPeers == 1 }
		}
	}
	for _, c := range []struct {
		name   string
		listen func(t *testing.T) (net.Listener, *EchoServer, func() bool)
		learns bool
		// notifies: the server surely sends its close_notify. pion's own
		// listener under v2 (v2.2.12) at times sends none: its Close
		// cancels its read loop before writing it, and the read loop may
		// close the socket first (see package pionv2, closeOrder). Its
		// client waits for its timeout either way; the relay drops the
		// close_notify if one comes, whenever it comes.
		notifies bool
	}{
		{"adapter", adapter(), true, true},
		{"adapter-echo-off", adapter(demux.WithCloseEcho(false)), false, true},
		{"pion", func(t *testing.T) (net.Listener, *EchoServer, func() bool) {
			ln := s.PionListen(t)
			var closed atomic.Bool
			return ln, serve(ln, func(net.Conn) { closed.Store(true) }), closed.Load
		}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, srv, closed := c.listen(t)
			server := ln.Addr().(*net.UDPAddr).AddrPort()
			var took time.Duration
			var err error
			var closeServer func()
			if s.Encrypted {
				closeServer = func() { srv.CloseOpen() }
			}
			took, err = closeEcho(t, server, closeServer, closed, s.Dial, CloseEchoWait, c.notifies)
			t.Logf("%s: the client's read ended %v after its write (%v)", c.name, took.Round(100*time.Microsecond), err)
			if learned := err == nil; learned != c.learns {
				t.Fatalf("client learned of the close: %v, want %v", learned, c.learns)
			}
		})
	}
}

// EchoRetry writes msg on conn and waits up to wait for its echo, at most
// tries times, skipping anything else that arrives (a late echo of an
// earlier message). It returns the attempt whose wait saw the echo, from
// 1, or 0 if none did or the conn failed (the server closed first).
//
// A client that moved to a new address probes this way before its
// message: pion v3 (v3.1.15) hands the first record from a new address to
// the application before it updates the address it writes to
// (Conn.handleIncomingPacket), so the echo of that record may go to the
// old address, a race that is pion's, with its own listener as with ours.
// Once an echo arrived at the new address the server follows the client,
// and what comes after tests that and nothing else.
func EchoRetry(conn net.Conn, msg string, buf []byte, tries int, wait time.Duration) int {
	for i := range tries {
		if _, err := conn.Write([]byte(msg)); err != nil {
			return 0
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if !isTimeout(err) {
					return 0
				}
				break
			}
			if string(buf[:n]) == msg {
				return i + 1
			}
		}
	}
	return 0
}

// EchoOnce writes msg on c and checks that it comes back.
func EchoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != msg {
		t.Fatalf("echo of %q: got %q, %v", msg, buf[:n], err)
	}
}
