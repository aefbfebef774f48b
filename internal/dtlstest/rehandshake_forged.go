package dtlstest

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

// spoofedClientHello: a ClientHello from a live peer's address (an
// off-path attacker's spoof) starts an unverified handshake that cannot
// pass the cookie exchange; the live association keeps working, the
// unverified one is abandoned at its timeout, and conns and goroutines
// return to where they were.
func (s Rehandshake) spoofedClientHello(t *testing.T) {
	hello := s.hello(t)
	ln := s.Listen(t, demux.WithUnverifiedTimeout(300*time.Millisecond))
	ended := serveTracking(t, ln)
	server := addrPort(ln.Addr())
	d := device{s: &s}
	d.boot(t, server, "live")
	defer d.conn.Close()
	baseline := ln.Stats()
	checkGoroutines := CheckGoroutines(t)

	for i := range 3 {
		if err := d.send(hello, server); err != nil { // from the live peer's own addr:port
			t.Fatal(err)
		}
		EchoOnce(t, d.conn, fmt.Sprint("still live ", i))
	}
	WaitFor(t, "the spoofed handshake abandoned", func() bool {
		st := ln.Stats()
		return st.RehandshakeAbandoned >= 1 && st.Unverified == 0 && st.PendingHandshakes == 0
	})
	EchoOnce(t, d.conn, "still live at the end")
	st := ln.Stats()
	if st.RehandshakeCompleted != 0 || st.Conns != baseline.Conns || st.Peers != baseline.Peers {
		t.Fatalf("stats %+v, baseline %+v", st, baseline)
	}
	select {
	case c := <-ended:
		t.Fatalf("the live connection %v ended", c.RemoteAddr())
	default:
	}
	checkGoroutines()
}

// spoofedClientHelloThenReboot: a spoofed ClientHello from a live
// client's addr:port, then the real client reboots on that port. Its
// ClientHello carries its own random, so it opens its own handshake
// instead of landing in the spoofed one, and it is served at once. Before
// ClientHellos were routed by client random, the spoofed handshake took
// the real one's datagrams and locked the client out for 30 s.
//
// The device crashes only once the spoofed handshake's cookie request has
// reached it: one still on its way when the rebooted client has sent its
// ClientHello is the race cookieRequestCrossingAReboot shows, which no
// server can prevent. Without the wait, a loaded machine that ran the
// spoof's handshake late ran into that race (AccessDenied from pion).
func (s Rehandshake) spoofedClientHelloThenReboot(t *testing.T) {
	hello := s.hello(t)
	ln := s.Listen(t)
	ended := serveTracking(t, ln)
	var cookieRequests atomic.Int32
	front := hookedFront(t, ln, func(r *udprelay.Relay, p udprelay.Packet) udprelay.Verdict {
		if p.Dir == udprelay.ToClient && isCookieRequest(p.Data) {
			// Sent here, so that it is counted only once it sits in the
			// client's socket: a crash after that discards it.
			r.Inject(p.Dir, p.Client, p.Data)
			cookieRequests.Add(1)
			return udprelay.Verdict{Drop: true}
		}
		return udprelay.Verdict{}
	})
	d := device{s: &s}
	d.boot(t, front.Addr(), "before the spoof")
	before := cookieRequests.Load()
	if err := d.send(hello, front.Addr()); err != nil {
		t.Fatal(err)
	}
	EchoOnce(t, d.conn, "after the spoof") // the spoof has been dispatched
	WaitFor(t, "the spoofed handshake's cookie request delivered", func() bool {
		return cookieRequests.Load() > before
	})
	d.crash()
	took := d.boot(t, front.Addr(), "after the reboot")
	defer d.conn.Close()
	t.Logf("re-handshake after a spoofed ClientHello took %v", took)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the old connection never ended")
	}
	if st := ln.Stats(); st.RehandshakeCompleted != 1 || st.RehandshakeStarted != 2 {
		t.Fatalf("stats %+v: want two re-handshakes started (the spoof, the reboot), one completed", st)
	}
}

// cookieRequestCrossingAReboot is the race behind rule 8 of
// internal/assoc, made certain: the spoofed handshake's cookie request
// reaches the rebooted client after it sent its ClientHello and before
// its own server's cookie request. The client then echoes the spoofed
// handshake's cookie in its own handshake, whose server ends it with a
// fatal alert, and pion's client keeps the first cookie request of a
// handshake (it drops the second as a copy), so nothing can repair it.
// The listener withholds such a cookie request once it has seen the
// client's new ClientHello; one already sent cannot be recalled. If pion
// ever recovers from it, this test fails and says so.
func (s Rehandshake) cookieRequestCrossingAReboot(t *testing.T) {
	hello := s.hello(t)
	ln := s.Listen(t)
	serveTracking(t, ln)
	var holding, rebooting atomic.Bool
	front := hookedFront(t, ln, func(r *udprelay.Relay, p udprelay.Packet) udprelay.Verdict {
		switch {
		case p.Dir == udprelay.ToClient && isCookieRequest(p.Data) && holding.CompareAndSwap(true, false):
			return udprelay.Verdict{Hold: true} // the spoofed handshake's
		case p.Dir == udprelay.ToServer && isClientHello(p.Data) && rebooting.CompareAndSwap(true, false):
			r.Release() // ahead of the rebooted client's ClientHello
		}
		return udprelay.Verdict{}
	})
	d := device{s: &s}
	d.boot(t, front.Addr(), "before the spoof")
	holding.Store(true)
	if err := d.send(hello, front.Addr()); err != nil {
		t.Fatal(err)
	}
	EchoOnce(t, d.conn, "after the spoof")
	WaitFor(t, "the spoofed handshake's cookie request held", func() bool { return front.Held() == 1 })
	d.crash()
	rebooting.Store(true)
	uc, c, err := s.Client(t, d.local, front.Addr(), fixture.HandshakeTimeout)
	defer uc.Close()
	if err == nil {
		c.Close()
		t.Fatal("the rebooted client was served after a foreign cookie request reached it first; " +
			"pion now recovers, and the race cookieRequestCrossingAReboot documents is gone")
	}
	t.Logf("a foreign cookie request ahead of the client's own: %v", err)
}

// hookedFront starts a relay in front of ln, closed at the end of the
// test, whose hook can act on the relay itself (inject, release). Nothing
// reaches the hook before the test sends through the relay.
func hookedFront(t *testing.T, ln net.Listener, hook func(*udprelay.Relay, udprelay.Packet) udprelay.Verdict) *udprelay.Relay {
	var relay atomic.Pointer[udprelay.Relay] // set once New returns: the hook's goroutines start before
	front, err := udprelay.New(addrPort(ln.Addr()), func(p udprelay.Packet) udprelay.Verdict {
		return hook(relay.Load(), p)
	})
	if err != nil {
		t.Fatal(err)
	}
	relay.Store(front)
	t.Cleanup(func() { front.Close() })
	return front
}

// isCookieRequest: a HelloVerifyRequest, or a DTLS 1.3 HelloRetryRequest.
func isCookieRequest(b []byte) bool {
	r := record.Inspect(b)
	return r.AsksForCookie()
}

func isClientHello(b []byte) bool {
	r := record.Inspect(b)
	return r.HasHandshakeHeader && r.MsgType == record.HandshakeTypeClientHello
}

// spoofedPlaintextAlert: plaintext (epoch-0) alerts from a live client's
// addr:port, a close_notify and a fatal one, end nothing: no stack may
// accept them once keys are agreed (RFC 6347 §4.1.2.7), and the adapter
// drops them. pion v2 would act on them.
func (s Rehandshake) spoofedPlaintextAlert(t *testing.T) {
	ln := s.Listen(t)
	ended := serveTracking(t, ln)
	server := addrPort(ln.Addr())
	d := device{s: &s}
	d.boot(t, server, "before")
	defer d.conn.Close()
	for i, alert := range [][]byte{plaintextAlert(1, 0), plaintextAlert(2, 40)} {
		if err := d.send(alert, server); err != nil {
			t.Fatal(err)
		}
		EchoOnce(t, d.conn, fmt.Sprint("after spoofed alert ", i))
	}
	select {
	case c := <-ended:
		t.Fatalf("the live connection %v ended", c.RemoteAddr())
	default:
	}
	if st := ln.Stats(); st.Invalid != 2 {
		t.Fatalf("stats %+v: want both alerts dropped as invalid", st)
	}
}

// pionDiesOfPlaintextAlert is the same spoof against pion's own listener:
// one forged 15-byte datagram ends the association.
func (s Rehandshake) pionDiesOfPlaintextAlert(t *testing.T) {
	ln := s.PionListen(t)
	serveTracking(t, ln)
	server := addrPort(ln.Addr())
	d := device{s: &s}
	d.boot(t, server, "before")
	defer d.conn.Close()
	if err := d.send(plaintextAlert(1, 0), server); err != nil {
		t.Fatal(err)
	}
	if _, err := d.conn.Write([]byte("after")); err != nil {
		return // already ended
	}
	buf := make([]byte, 64)
	d.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := d.conn.Read(buf); err == nil {
		t.Fatalf("pion's listener echoed %q after a forged plaintext close_notify; the kill this project prevents is gone", buf[:n])
	}
}

func plaintextAlert(level, desc byte) []byte {
	return []byte{21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x42, 0, 2, level, desc}
}
