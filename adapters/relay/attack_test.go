package relay_test

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/udprelay"
)

// The seed's stack behind the relay, under forged input. Mbed TLS's
// example server takes the first datagram from any address as a new
// connection; these tests check that what a forger sends through the relay
// never gives it one that fails.

// TestMbedTLSThroughRelay: the seed's sequence (echo | openssl s_client,
// its close_notify late) against the real Mbed TLS server behind the
// relay, and one forged ClientHello from the client's own addr:port right
// after each server close. The server answers the forged ClientHello only
// with a HelloVerifyRequest, which is no answer: the late close_notify
// stays dropped, and no server connection fails. When a HelloVerifyRequest
// counted as the server answering, all ten failed (BAD_HS_CLIENT_HELLO).
func TestMbedTLSThroughRelay(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	const n = 10
	mbed := dtlstest.StartMbedTLS(t)
	r := start(t, "127.0.0.1:0", mbed.Addr)
	rec := udprelay.NewRecorder()
	rec.HoldAlerts(true)
	front, err := udprelay.New(addrOf(r), rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	forged := dtlstest.ForgedHellos(t)
	for i := range n {
		out, err := dtlstest.OpenSSLClient(front.Addr(), fmt.Sprintf("hello %d\n", i))
		if err != nil {
			t.Fatalf("iteration %d: openssl s_client: %v\n%s", i, err, out)
		}
		dtlstest.WaitFor(t, "the server echoes and closes", func() bool { return mbed.Count("ok") == i+1 || mbed.Count("fail") > 0 })
		dtlstest.WaitFor(t, "the relay sees the server's close_notify", func() bool { return r.Stats().ServerClosed == uint64(i+1) })
		clients := rec.Clients()
		client := clients[len(clients)-1]
		front.Inject(udprelay.ToServer, client, forged(i))
		dtlstest.WaitFor(t, "the forged ClientHello opened an association", func() bool { return r.Stats().Opened == uint64(2*(i+1)) })
		if err := front.Flush(); err != nil {
			t.Fatal(err)
		}
		if held := front.Release(); held != 1 {
			t.Fatalf("iteration %d: released %d datagrams, want the client's close_notify", i, held)
		}
		dtlstest.WaitFor(t, "the late close_notify dropped", func() bool { return r.Stats().TotalStrays() == uint64(i+1) })
	}
	dtlstest.WaitFor(t, "the server answered every forged ClientHello", func() bool { return mbed.Count("hvr") >= 2*n })
	if ok, fail := mbed.Count("ok"), mbed.Count("fail"); ok != n || fail != 0 {
		t.Fatalf("Mbed TLS: %d connections echoed, %d failed; want %d and 0:\n%s", ok, fail, n, strings.Join(mbed.Lines(), "\n"))
	}
	t.Logf("relay %+v", r.Stats())
}

// TestHelloFloodInFrontOfMbedTLS: 20,000 forged ClientHellos at 2,000 a
// second from 1,000 addresses at the relay in front of the Mbed TLS
// server, while a real client connects once a second: every real client is
// served, and the relay's upstream sockets go back to none once the
// flood's associations time out. The relay used to open an upstream socket
// per ClientHello for the handshake timeout: 137 a second locked clients
// out.
//
// The server's own failures are logged, not checked: under this load a
// real client's close_notify can reach the relay before the relay has read
// the server's close_notify, and it is forwarded to a server that has
// already forgotten the client (the package's Limits). Forged datagrams
// have no part in it; TestMbedTLSThroughRelay checks what they can do.
func TestHelloFloodInFrontOfMbedTLS(t *testing.T) {
	mbed := dtlstest.StartMbedTLS(t)
	testFloodThroughRelay(t, mbed.Addr)
	t.Logf("Mbed TLS: %d cookies sent, %d connections echoed, %d failed", mbed.Count("hvr"), mbed.Count("ok"), mbed.Count("fail"))
}

// TestHelloFloodStraightAtMbedTLS is the flood at the Mbed TLS server
// without the relay, for contrast: run with -flood.contrast.
func TestHelloFloodStraightAtMbedTLS(t *testing.T) {
	if !*dtlstest.FloodContrast {
		t.Skip("a contrast measurement; run with -flood.contrast")
	}
	mbed := dtlstest.StartMbedTLS(t)
	f := dtlstest.NewFlood(t, 2000, 1000)
	f.Every = time.Second
	f.Run(t, mbed.Addr, dtlstest.ConnectOnce(t, mbed.Addr, dtlstest.DialV2(t, 10*time.Second)))
	t.Logf("%v\nMbed TLS: %d cookies sent, %d connections echoed, %d failed; real clients failed: %v",
		f, mbed.Count("hvr"), mbed.Count("ok"), mbed.Count("fail"), f.Failures)
}

// TestHelloFloodInFrontOfPion is the same flood in front of a pion v3
// server with its cookie exchange. The server is pion behind this
// project's adapter: pion's own listener keeps a conn and three goroutines
// for every ClientHello from a new address, forever (v3 has no handshake
// timeout), and the relay gives every forged ClientHello an address of
// its own.
func TestHelloFloodInFrontOfPion(t *testing.T) {
	ln, err := pionv3.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, fixture.ServerV3(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := dtlstest.Serve(ln, true, nil) // echo and close, as Mbed TLS
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	testFloodThroughRelay(t, ln.Addr().(*net.UDPAddr).AddrPort())
}

func testFloodThroughRelay(t *testing.T, server netip.AddrPort) {
	t.Helper()
	baseFDs := openFDs(t)
	r := start(t, "127.0.0.1:0", server, relay.WithUnverifiedTimeout(2*time.Second))
	f := dtlstest.NewFlood(t, 2000, 1000)
	f.Every = time.Second
	// The client gives up after 10 s: the Mbed TLS server itself answers
	// slowly under this flood (single-threaded, it drops ClientHellos from
	// its socket queue; straight at it, real handshakes took a median 3 s).
	// It is a pion v2 client: both servers echo and close at once, and a
	// pion v3 client that gets the echo and the close_notify before it
	// reads picks one of the two at random (its Read selects on both), so
	// it reads EOF now and then under load; v2 drains the data first.
	f.Run(t, addrOf(r), dtlstest.ConnectOnce(t, addrOf(r), dtlstest.DialV2(t, 10*time.Second)))
	s := r.Stats()
	peakFDs := openFDs(t)
	t.Logf("%v\nrelay: opened %d, verified %d, evicted %d, refused %d; %d descriptors at the end of the flood (%d before)",
		f, s.Opened, s.Verified, s.Evicted, s.Refused, peakFDs, baseFDs)
	for _, err := range f.Failures {
		t.Errorf("a real client was not served during the flood: %v", err)
	}
	if f.Sent > 2*relay.DefaultMaxUnverified && s.Evicted == 0 {
		t.Errorf("%d associations opened, none evicted, for %d forged ClientHellos: the flood did not fill the cap", s.Opened, f.Sent)
	}
	dtlstest.WaitFor(t, "the flood's associations time out", func() bool { return r.Stats().Associations == 0 })
	// Left open: the relay's listening socket and the pump loop's epoll
	// and eventfd descriptors, and one to spare as before.
	dtlstest.WaitFor(t, "descriptors back to where they were", func() bool { return openFDs(t) <= baseFDs+4 })
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestGnuTLSAtTheCap: gnutls-serv does not answer a client's close_notify,
// so only the client's alert says an association is over. Ten sequential
// openssl clients through a relay capped at five associations are all
// served: each one's closing association lingers, and is reclaimed when
// the slot is needed. Before, every finished association kept its slot for
// the idle timeout (5 minutes), and the sixth client was refused.
func TestGnuTLSAtTheCap(t *testing.T) {
	gnutls := dtlstest.StartGnuTLS(t)
	r := start(t, "127.0.0.1:0", gnutls.Addr, relay.WithMaxAssociations(5))
	connect := dtlstest.ConnectOnce(t, addrOf(r), dtlstest.DialV3(t, 5*time.Second))
	for i := range 10 {
		if _, err := connect(); err != nil {
			t.Fatalf("client %d of 10 not served: %v\nrelay %+v", i+1, err, r.Stats())
		}
		dtlstest.WaitFor(t, "the client's close_notify seen", func() bool {
			s := r.Stats()
			return uint64(s.Closing)+s.Reclaimed+s.Lingered+s.ServerClosed == uint64(i+1)
		})
	}
	s := r.Stats()
	t.Logf("relay %+v", s)
	if s.Reclaimed < 5 || s.Refused != 0 {
		t.Fatalf("stats %+v: want closing associations reclaimed and nothing refused", s)
	}
}

// TestGnuTLSAtTheCapWithOpenSSL is TestGnuTLSAtTheCap with the README's
// client, `echo hi | openssl s_client -dtls1_2 -quiet -no_ign_eof`, which
// sends its close_notify right behind its message: gnutls-serv's echo
// crosses the close_notify, and used to make the association live again,
// for the idle timeout, so the sixth client was refused. The server's
// datagrams now restart the linger without undoing the client's alert.
func TestGnuTLSAtTheCapWithOpenSSL(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	gnutls := dtlstest.StartGnuTLS(t)
	r := start(t, "127.0.0.1:0", gnutls.Addr, relay.WithMaxAssociations(5))
	for i := range 10 {
		msg := fmt.Sprintf("hi %d", i)
		if out, err := dtlstest.OpenSSLClient(addrOf(r), msg+"\n", "-quiet", "-no_ign_eof"); err != nil {
			t.Fatalf("client %d of 10: %v\n%s\nrelay %+v", i+1, err, out, r.Stats())
		}
		gnutls.WaitFor(t, "client "+fmt.Sprint(i+1)+"'s message", func(l string) bool { return strings.HasSuffix(l, "command: "+msg) })
		dtlstest.WaitFor(t, "the client's close_notify seen", func() bool {
			s := r.Stats()
			return uint64(s.Closing)+s.Reclaimed+s.Lingered == uint64(i+1)
		})
	}
	s := r.Stats()
	t.Logf("relay %+v", s)
	if s.Refused != 0 || s.Live > 5 {
		t.Fatalf("stats %+v: want nothing refused", s)
	}
}

// TestRefusedClientIsLogged: a client turned away at the cap on
// associations gets a warn line naming the cap, at most one a second
// however many are refused, besides the counter.
func TestRefusedClientIsLogged(t *testing.T) {
	server := dtlstest.NewNaiveServer(t, 5*time.Second, true)
	var logs syncBuffer
	r := start(t, "127.0.0.1:0", server.Addr(), relay.WithMaxAssociations(1),
		relay.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	dial := dtlstest.DialV3(t, 5*time.Second)
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addrOf(r)))
	if err != nil {
		t.Fatal(err)
	}
	live, err := dial(uc) // holds the one association
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	begin := time.Now()
	refused := dtlstest.ConnectOnce(t, addrOf(r), dtlstest.DialV3(t, 500*time.Millisecond))
	for range 3 {
		if _, err := refused(); err == nil {
			t.Fatal("a client was served past the cap")
		}
	}
	out := logs.String()
	warns := strings.Count(out, "refused a client that proved its address")
	most := 1 + int(time.Since(begin)/time.Second)
	if s := r.Stats(); s.Refused < 3 || warns < 1 || warns > most || !strings.Contains(out, "max_associations=1") {
		t.Fatalf("%d refused, %d warn lines (want 1 to %d naming max_associations=1):\n%s\n%+v", s.Refused, warns, most, out, s)
	}
}

// TestUpstreamIsSelf: a relay whose upstream is its own listening address
// would send every ClientHello back to itself as a new client.
func TestUpstreamIsSelf(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	self := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := relay.New(pc, self); err == nil {
		t.Fatal("a relay to itself was accepted")
	}
	pc.Close()
	wild, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	port := wild.LocalAddr().(*net.UDPAddr).Port
	for _, up := range []string{"127.0.0.1", "127.0.0.2"} {
		if _, err := relay.New(wild, netip.AddrPortFrom(netip.MustParseAddr(up), uint16(port))); err == nil {
			t.Errorf("a relay on the wildcard address to %s on its own port was accepted", up)
		}
	}
	r, err := relay.New(wild, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port+1)))
	if err != nil {
		t.Fatalf("a relay to another port: %v", err)
	}
	r.Close()
}

// TestClientAlertEndsTheServersHandshake checks rule 10's premise against
// the C servers the relay is for: a client's plaintext fatal alert in the
// middle of a handshake (a pion client that cannot verify the server's
// certificate) ends the handshake at the server, so the relay ends the
// association with it; and the server then serves the next client's
// handshake. Were a
// server to carry on, the relay would have cut a handshake it could finish.
func TestClientAlertEndsTheServersHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   func(testing.TB) *dtlstest.ExternalServer
		aborted func(line string) bool // the server abandoned a handshake for an alert
	}{
		// MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE
		{"mbedtls", dtlstest.StartMbedTLS, func(l string) bool { return l == "fail -0x7780 handshake" }},
		{"gnutls", dtlstest.StartGnuTLS, func(l string) bool { return strings.Contains(l, "fatal alert has been received") }},
		{"openssl", dtlstest.StartOpenSSLServer, func(l string) bool { return strings.Contains(l, "SSL alert number") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := tc.start(t)
			r := start(t, "127.0.0.1:0", server.Addr)
			pc := listenLoopback(t, "127.0.0.1:0")
			defer pc.Close()
			giveUp(t, pc, r.Addr())
			server.WaitFor(t, "it abandoned the handshake for the client's alert", tc.aborted)
			if s := r.Stats(); s.ClientAborted != 1 || s.Associations != 0 {
				t.Fatalf("stats %+v: want the handshake ended by its client's alert", s)
			}
			// The next client's handshake (s_server does not echo).
			uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addrOf(r)))
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			next, err := dtlstest.DialV3(t, 5*time.Second)(uc)
			if err != nil {
				t.Fatalf("the next client: %v\nserver said:\n%s", err, strings.Join(server.Lines(), "\n"))
			}
			next.Close()
		})
	}
}
