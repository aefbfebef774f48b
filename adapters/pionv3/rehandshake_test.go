package pionv3_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// device is a client with a fixed addr:port that can lose its state
// without a word, as a device that reboots does.
type device struct {
	local netip.AddrPort
	uc    *net.UDPConn
	conn  *dtls.Conn
}

// boot starts a fresh pion client from d.local (any port the first time)
// and checks one echo.
func (d *device) boot(t *testing.T, server netip.AddrPort, msg string) time.Duration {
	t.Helper()
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(d.local))
	if err != nil {
		t.Fatal(err)
	}
	d.uc, d.local = uc, uc.LocalAddr().(*net.UDPAddr).AddrPort()
	start := time.Now()
	c, err := dtls.Client(uc, net.UDPAddrFromAddrPort(server), dtlstest.ClientV3(t))
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), dtlstest.HandshakeTimeout)
		err = c.HandshakeContext(ctx)
		cancel()
	}
	took := time.Since(start)
	if err != nil {
		uc.Close()
		t.Fatalf("handshake from %v after %v: %v", d.local, took, err)
	}
	d.conn = c
	echoOnce(t, c, msg)
	return took
}

// crash drops the client's state: its socket closes under it, so pion
// cannot send a close_notify, and the server is not told.
func (d *device) crash() {
	d.uc.Close()
	d.conn.Close()
}

// serveTracking echoes on every accepted conn and reports each conn the
// server application sees end.
// Closing the listener and stopping the server are left to t.Cleanup.
func serveTracking(t *testing.T, ln net.Listener) <-chan net.Conn {
	ended := make(chan net.Conn, 64)
	srv := dtlstest.Serve(ln, false, func(c net.Conn) { ended <- c })
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	return ended
}

// TestRebootedClientIsServed is RFC 6347 §4.2.8: a client that loses its
// state and comes back from the same addr:port, without a close_notify, is
// served at once, and the server application sees the old connection end.
func TestRebootedClientIsServed(t *testing.T) {
	ln := listen(t)
	ended := serveTracking(t, ln)
	server := addrPort(ln.Addr())

	var d device
	d.boot(t, server, "before reboot")
	d.crash()
	took := d.boot(t, server, "after reboot")
	defer d.conn.Close()
	t.Logf("handshake after reboot took %v", took)
	if took > 5*time.Second {
		t.Fatalf("rebooted client served after %v", took)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the server application never saw the old connection end")
	}
	s := ln.Stats()
	if s.RehandshakeStarted != 1 || s.RehandshakeCompleted != 1 || s.Peers != 1 || s.Conns != 1 {
		t.Fatalf("stats %+v: want one completed re-handshake and one conn left", s)
	}
}

// TestPionListenerLocksOutRebootedClient is the same sequence against
// pion's own listener: the new ClientHello reaches the old conn, which
// drops it, so the device cannot connect while the old association lives.
func TestPionListenerLocksOutRebootedClient(t *testing.T) {
	ln, err := dtls.Listen("udp", loopback, dtlstest.ServerV3(t))
	if err != nil {
		t.Fatal(err)
	}
	serveTracking(t, ln)
	server := addrPort(ln.Addr())

	var d device
	d.boot(t, server, "before reboot")
	d.crash()
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(d.local))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	const wait = 3 * time.Second
	start := time.Now()
	c, err := dtls.Client(uc, net.UDPAddrFromAddrPort(server), dtlstest.ClientV3(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err = c.HandshakeContext(ctx); err == nil {
		c.Close()
		t.Fatalf("pion's listener served the rebooted client after %v; the lockout this project fixes is gone", time.Since(start))
	}
	t.Logf("pion's own listener: rebooted client locked out, gave up after %v: %v", time.Since(start), err)
}

// TestSpoofedClientHelloLeavesLiveAssociation: a ClientHello from a live
// peer's address (an off-path attacker's spoof) starts a pending handshake
// that cannot pass the cookie exchange; the live association keeps working,
// the pending one is abandoned at its timeout, and conns and goroutines
// return to where they were.
func TestSpoofedClientHelloLeavesLiveAssociation(t *testing.T) {
	hello := dtlstest.ClientHello(t)
	ln := listen(t, demux.WithHandshakeTimeout(300*time.Millisecond))
	ended := serveTracking(t, ln)
	var d device
	d.boot(t, addrPort(ln.Addr()), "live")
	defer d.conn.Close()
	baseline := ln.Stats()
	checkGoroutines := dtlstest.CheckGoroutines(t)

	for i := range 3 {
		if _, err := d.uc.WriteTo(hello, ln.Addr()); err != nil { // from the live peer's own addr:port
			t.Fatal(err)
		}
		echoOnce(t, d.conn, fmt.Sprint("still live ", i))
	}
	dtlstest.WaitFor(t, "pending handshake abandoned", func() bool {
		return ln.Stats().RehandshakeAbandoned >= 1 && ln.Stats().PendingHandshakes == 0
	})
	echoOnce(t, d.conn, "still live at the end")
	s := ln.Stats()
	if s.RehandshakeCompleted != 0 || s.Conns != baseline.Conns || s.Peers != baseline.Peers {
		t.Fatalf("stats %+v, baseline %+v", s, baseline)
	}
	select {
	case c := <-ended:
		t.Fatalf("the live connection %v ended", c.RemoteAddr())
	default:
	}
	checkGoroutines()
}

// TestOpenSSLRebootFromBoundPort: `openssl s_client -dtls1_2 -bind` killed
// mid-association (no close_notify) and started again on the same
// addr:port is served.
func TestOpenSSLRebootFromBoundPort(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	ln := listen(t)
	ended := serveTracking(t, ln)
	// A free port for s_client to bind.
	probe, err := net.ListenUDP("udp", loopback)
	if err != nil {
		t.Fatal(err)
	}
	local := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close()

	first := dtlstest.StartOpenSSL(t, local, addrPort(ln.Addr()))
	first.Echo(t, "first boot")
	first.Kill()
	second := dtlstest.StartOpenSSL(t, local, addrPort(ln.Addr()))
	second.Echo(t, "second boot")
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the first association never ended")
	}
	if s := ln.Stats(); s.RehandshakeCompleted != 1 {
		t.Fatalf("stats %+v: want one completed re-handshake", s)
	}
}

// TestManyPeersRehandshakeAtOnce reboots many devices concurrently; run
// under -race.
func TestManyPeersRehandshakeAtOnce(t *testing.T) {
	const n = 12
	checkGoroutines := dtlstest.CheckGoroutines(t)
	ln := listen(t)
	ended := make(chan net.Conn, 2*n)
	srv := dtlstest.Serve(ln, false, func(c net.Conn) { ended <- c })
	server := addrPort(ln.Addr())
	devices := make([]device, n)
	var wg sync.WaitGroup
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			devices[i].boot(t, server, fmt.Sprint("device ", i, " first"))
		}()
	}
	wg.Wait()
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			devices[i].crash()
			devices[i].boot(t, server, fmt.Sprint("device ", i, " again"))
		}()
	}
	wg.Wait()
	for range n {
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("not every old connection ended")
		}
	}
	if s := ln.Stats(); s.RehandshakeCompleted != n || s.Conns != n || s.Peers != n {
		t.Fatalf("stats %+v: want %d completed re-handshakes and %d conns", s, n, n)
	}
	ln.Close()
	srv.Stop()
	for i := range devices {
		devices[i].conn.Close()
	}
	checkGoroutines()
}
