package pionv2_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv2"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
	"github.com/straydtls/straydtls/udprelay"
)

var loopback = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}

func listen(t *testing.T, opts ...demux.Option) *demux.Listener {
	t.Helper()
	ln, err := pionv2.Listen("udp", loopback, fixture.ServerV2(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.UDPAddr).AddrPort() }

func dial(t *testing.T, addr netip.AddrPort) *dtls.Conn {
	t.Helper()
	c, err := dtls.Dial("udp", net.UDPAddrFromAddrPort(addr), fixture.ClientV2(t))
	if err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	return c
}

// TestStrayDoesNotStallNextClient is the stall probe: after a client
// closes, one epoch-1 handshake record (its Finished) from its addr:port
// reaches the server. Through pion's listener the next client waits out
// the 30 s handshake timeout; through the adapter it does not.
func TestStrayDoesNotStallNextClient(t *testing.T) {
	for _, quiet := range []bool{true, false} {
		name := "peer quiet"
		if !quiet {
			name = "quiet period already over"
		}
		t.Run(name, func(t *testing.T) {
			ln := listen(t, demux.WithHandshakeTimeout(30*time.Second))
			closed := make(chan netip.AddrPort, 1)
			srv := dtlstest.Serve(ln, true, func(c net.Conn) { closed <- addrPort(c.RemoteAddr()) })
			rec := udprelay.NewRecorder()
			// The server closes after its echo; the client's close_notify is
			// held, so that close is the server's own and complete on return.
			rec.HoldAlerts(true)
			relay, err := udprelay.New(addrPort(ln.Addr()), rec.Hook)
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()

			a := dial(t, relay.Addr())
			dtlstest.EchoOnce(t, a, "first client")
			aLocal := addrPort(a.LocalAddr())
			a.Close()
			serverSide := <-closed
			if !quiet {
				ln.Filter().Table().Forget(serverSide)
			}
			relay.Inject(udprelay.ToServer, aLocal, dtlstest.EpochOneHandshake(t, rec, aLocal))

			start := time.Now()
			b := dial(t, relay.Addr())
			took := time.Since(start)
			dtlstest.EchoOnce(t, b, "next client")
			b.Close()
			t.Logf("next client's handshake took %v", took)
			if took > 5*time.Second {
				t.Fatalf("next client stalled %v behind the stray", took)
			}
			s := ln.Stats()
			if s.Created != 2 || s.HandshakeFailed != 0 {
				t.Fatalf("stray became a connection: %+v", s)
			}
			if quiet && s.Filter.Strays[record.ReasonHandshakeEpoch] != 1 {
				t.Fatalf("filter did not drop the stray: %+v", s.Filter)
			}
			if !quiet && s.UnknownPeer != 1 {
				t.Fatalf("demux did not drop the stray from an unknown peer: %+v", s)
			}
			ln.Close()
			srv.Stop()
		})
	}
}

// pionStallTimeout is the handshake timeout TestPionListenerStallsOnStray
// gives pion's listener: short so the test is quick. Pass
// -args -pion.handshake-timeout=30s to measure the stall at pion's default.
var pionStallTimeout = flag.Duration("pion.handshake-timeout", 2*time.Second, "handshake timeout for pion's own listener in TestPionListenerStallsOnStray")

// TestPionListenerStallsOnStray documents the bug with pion's own v2
// listener: the next client waits out the handshake timeout.
func TestPionListenerStallsOnStray(t *testing.T) {
	if testing.Short() {
		t.Skip("takes pion's handshake timeout")
	}
	timeout := *pionStallTimeout
	cfg := fixture.ServerV2(t)
	cfg.ConnectContextMaker = dtlstest.Timeout(timeout)
	ln, err := dtls.Listen("udp", loopback, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan struct{}, 1)
	srv := dtlstest.Serve(ln, true, func(net.Conn) { closed <- struct{}{} })
	rec := udprelay.NewRecorder()
	rec.HoldAlerts(true)
	relay, err := udprelay.New(addrPort(ln.Addr()), rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	a := dial(t, relay.Addr())
	dtlstest.EchoOnce(t, a, "first client")
	aLocal := addrPort(a.LocalAddr())
	a.Close()
	<-closed
	// Inject writes to the server's socket before it returns, so the stray
	// is queued ahead of B's ClientHello and pion's Accept takes it first.
	relay.Inject(udprelay.ToServer, aLocal, dtlstest.EpochOneHandshake(t, rec, aLocal))

	// B waits longer than the server's timeout, so the stall is measured
	// whole instead of B giving up first.
	clientCfg := fixture.ClientV2(t)
	clientCfg.ConnectContextMaker = dtlstest.Timeout(timeout + fixture.HandshakeTimeout)
	start := time.Now()
	b, err := dtls.Dial("udp", net.UDPAddrFromAddrPort(relay.Addr()), clientCfg)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("next client after %v: %v", took, err)
	}
	b.Close()
	t.Logf("pion's own listener: next client's handshake took %v behind one stray (handshake timeout %v)", took, timeout)
	if took < timeout*3/4 {
		t.Fatalf("pion's listener no longer stalls (%v): revisit the README's claim", took)
	}
	ln.Close()
	srv.Stop()
}

// TestManyClientsConcurrently: under -race, many clients at once; no
// connection gets another's data and nothing leaks.
func TestManyClientsConcurrently(t *testing.T) {
	dtlstest.RunManyClients(t, func(t *testing.T) *demux.Listener { return listen(t) }, dtlstest.DialV2(t, 10*time.Second))
}

// TestPortReuse: a client that closes and reconnects from the same
// addr:port within the quiet period gets a new association at once.
func TestPortReuse(t *testing.T) {
	ln := listen(t, demux.WithFilter(strayfilter.WithQuietPeriod(time.Hour)))
	closed := make(chan struct{}, 4)
	srv := dtlstest.Serve(ln, true, func(net.Conn) { closed <- struct{}{} })
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	for i := range 3 {
		uc, err := net.DialUDP("udp", local, ln.Addr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		local = uc.LocalAddr().(*net.UDPAddr) // reuse the same port next time
		start := time.Now()
		c, err := dtls.Client(uc, fixture.ClientV2(t))
		if err != nil {
			t.Fatalf("association %d from %v: %v", i, local, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("association %d took %v", i, took)
		}
		dtlstest.EchoOnce(t, c, fmt.Sprint("round ", i))
		c.Close()
		<-closed
		uc.Close()
	}
	if s := ln.Stats(); s.Created != 3 || s.Filter.Forgets != 2 {
		t.Fatalf("stats %+v: want 3 associations, the quiet peer forgotten twice", s)
	}
	ln.Close()
	srv.Stop()
}

// TestOpenSSLClientsWithLateCloseNotify is the seed's own sequence: echo
// hello | openssl s_client -dtls1_2, with each client's close_notify held
// back by a relay and delivered only after the server closed the
// association.
func TestOpenSSLClientsWithLateCloseNotify(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	ln := listen(t)
	iterations := 100
	if testing.Short() {
		iterations = 10
	}
	dtlstest.RunOpenSSLLateCloseNotify(t, ln, iterations)
	s := ln.Stats()
	if s.Created != uint64(iterations) || s.HandshakeFailed != 0 || s.UnknownPeer != 0 {
		t.Fatalf("bogus connections: %+v", s)
	}
	ln.Close()
}

func TestListenerCloseKeepsAcceptedConns(t *testing.T) {
	defer dtlstest.CheckGoroutines(t)()
	ln := listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c := dial(t, addrPort(ln.Addr()))
	sc := <-accepted
	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
	// The accepted connection still works.
	go func() {
		buf := make([]byte, 100)
		n, err := sc.Read(buf)
		if err == nil {
			sc.Write(buf[:n])
		}
	}()
	dtlstest.EchoOnce(t, c, "after listener close")
	// New clients are not served.
	cfg := fixture.ClientV2(t)
	cfg.ConnectContextMaker = func() (context.Context, func()) {
		return context.WithTimeout(context.Background(), 300*time.Millisecond)
	}
	if c2, err := dtls.Dial("udp", ln.Addr().(*net.UDPAddr), cfg); err == nil {
		c2.Close()
		t.Fatal("a new client was served after Close")
	}
	c.Close()
	sc.Close()
	dtlstest.WaitFor(t, "all per-peer conns closed", func() bool { return ln.Stats().Conns == 0 })
}

func TestConfigIsRequired(t *testing.T) {
	if _, err := pionv2.Listen("udp", loopback, nil); err == nil || !strings.Contains(err.Error(), "config is nil") {
		t.Fatalf("Listen(nil config) = %v", err)
	}
	if _, err := pionv2.Listen("udp", loopback, fixture.ServerV2(t), demux.WithBacklog(0)); !errors.Is(err, strayfilter.ErrInvalidOption) {
		t.Fatalf("Listen(backlog 0) = %v", err)
	}
}
