package dtlstest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

// Rehandshake is the RFC 6347 §4.2.8 suite (a client that loses its state
// and comes back from the same addr:port), run against the v2 and v3
// adapters alike. What differs between pion versions is behind its funcs.
type Rehandshake struct {
	// Listen starts the adapter's listener on loopback; it is closed at
	// the end of the test.
	Listen func(t *testing.T, opts ...demux.Option) *demux.Listener
	// PionListen starts pion's own listener on loopback.
	PionListen func(t *testing.T) net.Listener
	// Client opens a UDP socket on local (port 0: any) and runs a pion
	// client handshake on it to server, giving up after timeout. It
	// returns the socket even when the handshake fails.
	Client func(t *testing.T, local, server netip.AddrPort, timeout time.Duration) (*net.UDPConn, net.Conn, error)
	// PionDiesOfPlaintextAlert says that pion's own listener ends an
	// established connection for a forged plaintext close_notify (v2).
	PionDiesOfPlaintextAlert bool
	// Hello is the first ClientHello a client of the stack sends, for the
	// spoofs; nil for pion v2's, which every DTLS 1.2 server answers.
	Hello func(t testing.TB) []byte
	// DTLS13 says the server speaks DTLS 1.3 alone, which openssl
	// s_client -dtls1_2 cannot reach.
	DTLS13 bool
}

func (s Rehandshake) hello(t testing.TB) []byte {
	if s.Hello != nil {
		return s.Hello(t)
	}
	return ClientHello(t)
}

// Run runs every test of the suite as a subtest.
func (s Rehandshake) Run(t *testing.T) {
	t.Run("RebootedClientIsServed", s.rebootedClientIsServed)
	t.Run("PionListenerLocksOutRebootedClient", s.pionListenerLocksOut)
	t.Run("SpoofedClientHelloLeavesLiveAssociation", s.spoofedClientHello)
	t.Run("SpoofedClientHelloThenReboot", s.spoofedClientHelloThenReboot)
	t.Run("CookieRequestCrossingAReboot", s.cookieRequestCrossingAReboot)
	t.Run("SpoofedPlaintextAlertCutsNothing", s.spoofedPlaintextAlert)
	if s.PionDiesOfPlaintextAlert {
		t.Run("PionListenerDiesOfSpoofedPlaintextAlert", s.pionDiesOfPlaintextAlert)
	}
	t.Run("LateCopyOfOwnClientHelloStartsNothing", s.lateClientHelloCopy)
	t.Run("LiveEndsDuringRehandshake", s.liveEndsDuringRehandshake)
	if !s.DTLS13 {
		t.Run("OpenSSLRebootFromBoundPort", s.openSSLReboot)
	}
	t.Run("ManyPeersRehandshakeAtOnce", s.manyPeers)
}

// device is a client with a fixed addr:port that can lose its state
// without a word, as a device that reboots does.
type device struct {
	s     *Rehandshake
	local netip.AddrPort
	uc    *net.UDPConn
	conn  net.Conn
}

// boot starts a fresh client from d.local (any port the first time),
// checks one echo, and returns how long the handshake took.
func (d *device) boot(t *testing.T, server netip.AddrPort, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	uc, c, err := d.s.Client(t, d.local, server, fixture.HandshakeTimeout)
	took := time.Since(start)
	d.uc, d.local = uc, uc.LocalAddr().(*net.UDPAddr).AddrPort()
	if err != nil {
		uc.Close()
		t.Fatalf("handshake from %v after %v: %v", d.local, took, err)
	}
	d.conn = c
	EchoOnce(t, c, msg)
	return took
}

// crash drops the client's state: its socket closes under it, so pion
// cannot send a close_notify, and the server is not told.
func (d *device) crash() {
	d.uc.Close()
	d.conn.Close()
}

// send writes a raw datagram from the device's own addr:port.
func (d *device) send(b []byte, server netip.AddrPort) error {
	if d.uc.RemoteAddr() != nil {
		_, err := d.uc.Write(b)
		return err
	}
	_, err := d.uc.WriteToUDPAddrPort(b, server)
	return err
}

// serveTracking echoes on every accepted conn and reports each conn the
// server application sees end. Closing the listener and stopping the
// server are left to t.Cleanup.
func serveTracking(t *testing.T, ln net.Listener) <-chan net.Conn {
	ended := make(chan net.Conn, 64)
	srv := Serve(ln, false, func(c net.Conn) { ended <- c })
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	return ended
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.UDPAddr).AddrPort() }

// rebootedClientIsServed: a client that loses its state and comes back
// from the same addr:port, without a close_notify, is served at once, and
// the server application sees the old connection end.
func (s Rehandshake) rebootedClientIsServed(t *testing.T) {
	ln := s.Listen(t)
	ended := serveTracking(t, ln)
	server := addrPort(ln.Addr())

	d := device{s: &s}
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
	st := ln.Stats()
	if st.RehandshakeStarted != 1 || st.RehandshakeCompleted != 1 || st.Peers != 1 || st.Conns != 1 {
		t.Fatalf("stats %+v: want one completed re-handshake and one conn left", st)
	}
}

// pionListenerLocksOut is the same sequence against pion's own listener:
// the new ClientHello reaches the old conn, which drops it, so the device
// cannot connect while the old association lives.
func (s Rehandshake) pionListenerLocksOut(t *testing.T) {
	ln := s.PionListen(t)
	serveTracking(t, ln)
	server := addrPort(ln.Addr())

	d := device{s: &s}
	d.boot(t, server, "before reboot")
	d.crash()
	const wait = 3 * time.Second
	start := time.Now()
	uc, c, err := s.Client(t, d.local, server, wait)
	defer uc.Close()
	if err == nil {
		c.Close()
		t.Fatalf("pion's listener served the rebooted client after %v; the lockout this project fixes is gone", time.Since(start))
	}
	t.Logf("pion's own listener: rebooted client locked out, gave up after %v: %v", time.Since(start), err)
}

// lateClientHelloCopy: a late copy of the live handshake's own ClientHello
// (the network duplicated or delayed it) starts no re-handshake, because it
// carries the live handshake's client random; it goes to the live
// connection, which ignores it. Before the random was checked, every such
// copy ran a doomed handshake for the handshake timeout.
func (s Rehandshake) lateClientHelloCopy(t *testing.T) {
	ln := s.Listen(t)
	serveTracking(t, ln)
	rec := udprelay.NewRecorder()
	front, err := udprelay.New(addrPort(ln.Addr()), rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	d := device{s: &s}
	d.boot(t, front.Addr(), "live")
	defer d.conn.Close()

	// The client's address as the relay sees it: its socket may be bound
	// to the unspecified address.
	client := netip.AddrPortFrom(front.Addr().Addr(), d.local.Port())
	hellos := rec.ClientHellos(client)
	if len(hellos) == 0 {
		t.Fatalf("no ClientHello recorded from %v", client)
	}
	for i, h := range hellos {
		// From the relay's upstream socket for this client, ahead of the
		// echo on the same path: the server has dispatched the copy by the
		// time the echo comes back.
		front.Inject(udprelay.ToServer, client, h)
		EchoOnce(t, d.conn, fmt.Sprint("after copy ", i))
	}
	if st := ln.Stats(); st.RehandshakeStarted != 0 || st.Conns != 1 || st.Peers != 1 {
		t.Fatalf("stats %+v: a copy of the live handshake's ClientHello started a re-handshake", st)
	}
}

// liveEndsDuringRehandshake: the server application ends the live
// association while the rebooted client's new handshake is pending (the
// soak's pattern: the server closes after its echo while the client is
// already reconnecting). The new association carries on alone, completes
// and is accepted. A relay holds the client's second flight until the live
// connection has been closed, so the order is certain.
func (s Rehandshake) liveEndsDuringRehandshake(t *testing.T) {
	ln := s.Listen(t)
	srv := Serve(ln, false, nil)
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	var hold atomic.Bool
	front, err := udprelay.New(addrPort(ln.Addr()), func(p udprelay.Packet) udprelay.Verdict {
		// The client's flight after the cookie exchange: its key exchange,
		// in the clear (only epoch-0 handshake records have a readable
		// handshake header), not a ClientHello; in DTLS 1.3 its Finished,
		// encrypted.
		r := record.Inspect(p.Data)
		second := r.HasHandshakeHeader && r.MsgType != record.HandshakeTypeClientHello || r.Class == record.ClassCiphertext
		return udprelay.Verdict{Hold: hold.Load() && p.Dir == udprelay.ToServer && second}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	d := device{s: &s}
	d.boot(t, front.Addr(), "live")
	d.crash()

	hold.Store(true)
	type result struct {
		uc   *net.UDPConn
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		uc, c, err := s.Client(t, d.local, front.Addr(), fixture.HandshakeTimeout)
		done <- result{uc, c, err}
	}()
	WaitFor(t, "the new handshake pending, its second flight held", func() bool {
		return front.Held() > 0 && ln.Stats().RehandshakeStarted == 1
	})
	if n := srv.CloseOpen(); n != 1 {
		t.Fatalf("closed %d server connections, want the live one", n)
	}
	WaitFor(t, "the new association carries on alone", func() bool { return ln.Stats().Conns == 1 })
	hold.Store(false)
	front.Release()
	res := <-done
	defer res.uc.Close()
	if res.err != nil {
		t.Fatalf("the new handshake failed after the live association ended: %v", res.err)
	}
	defer res.conn.Close()
	EchoOnce(t, res.conn, "carried on")
	if st := ln.Stats(); st.Accepted != 2 || st.Peers != 1 || st.Conns != 1 {
		t.Fatalf("stats %+v: want the new association accepted and alone", st)
	}
}

// openSSLReboot: `openssl s_client -dtls1_2 -bind` killed mid-association
// (no close_notify) and started again on the same addr:port is served.
func (s Rehandshake) openSSLReboot(t *testing.T) {
	RequireOpenSSL(t)
	ln := s.Listen(t)
	ended := serveTracking(t, ln)
	// A port for s_client to bind, twice: reusing it is what the test is
	// about, so a port taken in between fails the boot with s_client's
	// bind error rather than being tried again elsewhere.
	local := FreePort(t)

	first := StartOpenSSL(t, local, addrPort(ln.Addr()))
	first.Echo(t, "first boot")
	first.Kill()
	second := StartOpenSSL(t, local, addrPort(ln.Addr()))
	second.Echo(t, "second boot")
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the first association never ended")
	}
	if st := ln.Stats(); st.RehandshakeCompleted != 1 {
		t.Fatalf("stats %+v: want one completed re-handshake", st)
	}
}

// manyPeers reboots many devices concurrently; run under -race.
func (s Rehandshake) manyPeers(t *testing.T) {
	const n = 12
	checkGoroutines := CheckGoroutines(t)
	ln := s.Listen(t)
	ended := make(chan net.Conn, 2*n)
	srv := Serve(ln, false, func(c net.Conn) { ended <- c })
	server := addrPort(ln.Addr())
	devices := make([]device, n)
	var wg sync.WaitGroup
	for i := range devices {
		devices[i].s = &s
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
	if st := ln.Stats(); st.RehandshakeCompleted != n || st.Conns != n || st.Peers != n {
		t.Fatalf("stats %+v: want %d completed re-handshakes and %d conns", st, n, n)
	}
	ln.Close()
	srv.Stop()
	for i := range devices {
		devices[i].conn.Close()
	}
	checkGoroutines()
}
