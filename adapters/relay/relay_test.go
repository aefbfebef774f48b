package relay_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

// start runs a relay in front of upstream on the loopback address of
// network and stops it when the test ends.
func start(t testing.TB, listen string, upstream netip.AddrPort, opts ...relay.Option) *relay.Relay {
	t.Helper()
	r, err := relay.Listen("udp", listen, upstream.String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	t.Cleanup(func() {
		r.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return r
}

func addrOf(r *relay.Relay) netip.AddrPort { return r.Addr().(*net.UDPAddr).AddrPort() }

// seed runs the seed's sequence n times: `echo hello i | openssl s_client
// -dtls1_2` through a front relay that holds each client's close_notify
// until the naive server has echoed, closed and the strayrelay has seen its
// close_notify, then delivers it late.
func seed(t *testing.T, filter bool, n int) (*dtlstest.NaiveServer, *relay.Relay, int) {
	dtlstest.RequireOpenSSL(t)
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, false)
	r := start(t, "127.0.0.1:0", naive.Addr(), relay.WithFiltering(filter))
	rec := udprelay.NewRecorder()
	rec.HoldAlerts(true)
	front, err := udprelay.New(addrOf(r), rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	held := 0
	for i := range n {
		want := fmt.Sprintf("hello %d\n", i)
		out, err := dtlstest.OpenSSLClient(front.Addr(), want)
		if err != nil {
			t.Fatalf("iteration %d: openssl s_client: %v\n%s", i, err, out)
		}
		select {
		case got := <-naive.Echoed:
			if got != want {
				t.Fatalf("iteration %d: server echoed %q, want %q", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: the server echoed nothing\n%s", i, out)
		}
		if filter {
			// The late close_notify must arrive after the relay saw the
			// server's: that is the seed's order, made certain.
			dtlstest.WaitFor(t, "relay sees the server's close_notify", func() bool {
				return r.Stats().ServerClosed == uint64(i+1)
			})
		}
		if err := front.Flush(); err != nil {
			t.Fatal(err)
		}
		held += front.Release()
	}
	if held < n {
		t.Fatalf("only %d of %d clients sent a close_notify to delay", held, n)
	}
	return naive, r, held
}

// TestOpenSSLClientsThroughRelay is the seed's bug in front of a server
// that takes the first datagram from any new address as a new connection:
// 100 sequential s_client runs, each with a late close_notify, all succeed
// and the server never sees a bogus connection. Each run meets the race
// (the test's relay holds the close_notify until the server closed), so
// more runs would repeat, not widen, what this shows.
func TestOpenSSLClientsThroughRelay(t *testing.T) {
	n := 100
	if testing.Short() {
		n = 20
	}
	naive, r, held := seed(t, true, n)
	dtlstest.WaitFor(t, "late close_notifies dropped", func() bool {
		return r.Stats().Strays[record.ReasonAlert] == uint64(held)
	})
	if b := naive.Bogus.Load(); b != 0 {
		t.Errorf("server saw %d bogus connections", b)
	}
	if c, f := naive.Conns.Load(), naive.Failures.Load(); c != int64(n) || f != 0 {
		t.Errorf("server: %d connections, %d failures; want %d and 0", c, f, n)
	}
	s := r.Stats()
	if s.Opened != uint64(n) || s.ServerClosed != uint64(n) || s.Associations != 0 {
		t.Errorf("relay stats %+v: want %d opened and closed by the server, none left", s, n)
	}
}

// TestUnfilteredRelayShowsTheBug is the same sequence with the filtering
// off: every late close_notify reaches the server as a new connection.
// Without it the test above could pass for the wrong reason.
func TestUnfilteredRelayShowsTheBug(t *testing.T) {
	naive, _, held := seed(t, false, 3)
	dtlstest.WaitFor(t, "a bogus connection per late close_notify", func() bool {
		return naive.Bogus.Load() == int64(held)
	})
	dtlstest.WaitFor(t, "bogus connections fail", func() bool {
		return naive.Failures.Load() == int64(held)
	})
}

// dialV3 runs a pion v3 client over pc to addr and checks one echo.
func dialV3(t *testing.T, pc net.PacketConn, addr netip.AddrPort, msg string) *dtlsv3.Conn {
	t.Helper()
	c, err := dtlsv3.Client(pc, net.UDPAddrFromAddrPort(addr), fixture.ClientV3(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake through the relay: %v", err)
	}
	echo(t, c, msg)
	return c
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("echo of %q: %v", msg, err)
	}
	if string(buf[:n]) != msg {
		t.Fatalf("echo = %q, want %q", buf[:n], msg)
	}
}

func listenLoopback(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// TestPortReuse: a client that reconnects from the same addr:port right
// after the server closed its association gets a fresh upstream socket and
// a working association.
func TestPortReuse(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, false)
	r := start(t, "127.0.0.1:0", naive.Addr())
	pc := listenLoopback(t, "127.0.0.1:0")
	local := pc.LocalAddr().String()
	c := dialV3(t, pc, addrOf(r), "first")
	dtlstest.WaitFor(t, "relay sees the server's close_notify", func() bool { return r.Stats().ServerClosed == 1 })
	c.Close()

	pc = listenLoopback(t, local)
	c = dialV3(t, pc, addrOf(r), "second")
	c.Close()
	peers := naive.Peers()
	if len(peers) != 2 || peers[0] == peers[1] {
		t.Fatalf("server saw peers %v; want two different upstream addresses", peers)
	}
	if b := naive.Bogus.Load(); b != 0 {
		t.Errorf("server saw %d bogus connections", b)
	}
}

// TestReconnectBeforeServerCloseArrives is what the soak found: a client
// reconnects from the same addr:port after the server closed its
// association, but before the server's close_notify reached the relay. Its
// new ClientHello must not ride the old association's upstream socket:
// when the late close_notify ends that association it takes the new
// handshake with it, the client's next flight lands on a fresh upstream
// socket where the server ignores a ClientHello with message_seq 1, and the
// client stalls until its handshake times out.
func TestReconnectBeforeServerCloseArrives(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, false)
	// Between the relay and the server: the server's alerts are held until
	// the test releases them; the client's are dropped, so the server never
	// takes one for a new connection.
	mid, err := udprelay.New(naive.Addr(), func(p udprelay.Packet) udprelay.Verdict {
		alert := len(p.Data) > 0 && p.Data[0] == record.ContentTypeAlert
		return udprelay.Verdict{Hold: alert && p.Dir == udprelay.ToClient, Drop: alert && p.Dir == udprelay.ToServer}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer mid.Close()
	r := start(t, "127.0.0.1:0", mid.Addr())

	pc := listenLoopback(t, "127.0.0.1:0")
	local := pc.LocalAddr().String()
	c := dialV3(t, pc, addrOf(r), "first")
	dtlstest.WaitFor(t, "the server's close_notify held", func() bool { return mid.Held() == 1 })
	c.Close()

	pc = listenLoopback(t, local)
	c, err = dtlsv3.Client(pc, r.Addr(), fixture.ClientV3(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("second handshake: %v", err)
	}
	if peers := naive.Peers(); len(peers) != 2 || peers[0] == peers[1] {
		t.Fatalf("server saw peers %v; want the second association on its own upstream address", peers)
	}
	// The old association's close_notify arrives at last; it must end
	// nothing of the new one.
	if n := mid.Release(); n != 1 {
		t.Fatalf("released %d datagrams, want the one close_notify", n)
	}
	echo(t, c, "second")
	s := r.Stats()
	if s.Rehandshakes != 1 || s.Replaced != 1 || s.Table.QuietPeers != 0 || naive.Bogus.Load() != 0 {
		t.Fatalf("stats %+v, %d bogus: want one re-handshake that replaced the old association, no client quiet, nothing bogus",
			s, naive.Bogus.Load())
	}
}

// TestLateCopyOfClientHelloStartsNothing: a late copy of the live
// handshake's own ClientHello (duplicated or delayed by the network) carries
// that handshake's random and goes to the live association; it starts no
// new one, which would hold an upstream socket and a server handshake that
// nobody answers.
func TestLateCopyOfClientHelloStartsNothing(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, true)
	r := start(t, "127.0.0.1:0", naive.Addr())
	rec := udprelay.NewRecorder()
	front, err := udprelay.New(addrOf(r), rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	pc := listenLoopback(t, "127.0.0.1:0")
	c := dialV3(t, pc, front.Addr(), "live")
	defer c.Close()
	client := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	hellos := rec.ClientHellos(client)
	if len(hellos) == 0 {
		t.Fatalf("no ClientHello recorded from %v", client)
	}
	for i, h := range hellos {
		// Ahead of the echo on the same path, so the relay has handled it
		// by the time the echo comes back.
		front.Inject(udprelay.ToServer, client, h)
		echo(t, c, fmt.Sprint("after copy ", i))
	}
	if s := r.Stats(); s.Rehandshakes != 0 || s.Opened != 1 || s.Associations != 1 {
		t.Fatalf("stats %+v: a copy of the live handshake's ClientHello started an association", s)
	}
}

// TestIPv6 relays a client on ::1 to an IPv4 upstream.
func TestIPv6(t *testing.T) {
	pc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, false)
	r := start(t, "[::1]:0", naive.Addr())
	dialV3(t, pc, addrOf(r), "over ipv6").Close()
	if s := r.Stats(); s.Opened != 1 {
		t.Fatalf("stats %+v: want one association", s)
	}
}

// Records a hostile client might send from a live client's address.
var (
	epochOneAlert = []byte{0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 26,
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26}
	plaintextFatalAlert = []byte{0x15, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40}
	clientHello         = []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12,
		1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	garbage = []byte("\x00\x01\x00\x00not dtls at all")
)

// TestSpoofedInputCutsNothing: alerts, ClientHellos and garbage sent from
// a live client's own addr:port end nothing; the association goes on. An
// encrypted alert makes it closing, and the echo traffic right after
// makes it live again; a plaintext alert is dropped (no server may accept
// one after the handshake). A ClientHello with a new random opens an
// unverified association on its own upstream socket, which cannot get
// past the server's cookie and ends at the unverified timeout without
// touching the live one.
func TestSpoofedInputCutsNothing(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, true)
	r := start(t, "127.0.0.1:0", naive.Addr(), relay.WithUnverifiedTimeout(300*time.Millisecond))
	pc := listenLoopback(t, "127.0.0.1:0")
	c := dialV3(t, pc, addrOf(r), "before")
	defer c.Close()
	realHello := dtlstest.ClientHello(t)
	for i, d := range [][]byte{epochOneAlert, plaintextFatalAlert, clientHello, realHello, garbage, {}, make([]byte, 60000)} {
		if _, err := pc.WriteTo(d, r.Addr()); err != nil {
			t.Fatal(err)
		}
		echo(t, c, fmt.Sprintf("after spoof %d", i))
	}
	dtlstest.WaitFor(t, "the spoofed handshake timed out", func() bool { return r.Stats().UnverifiedTimeouts == 1 })
	echo(t, c, "at the end")
	s := r.Stats()
	if s.Associations != 1 || s.Live != 1 || s.Closing != 0 || s.Opened != 2 || s.Rehandshakes != 1 || s.Replaced != 0 ||
		s.ServerClosed != 0 || s.Lingered != 0 || s.DroppedInvalid != 1 || s.Table.QuietPeers != 0 {
		t.Fatalf("stats %+v: want the live association untouched, one spoofed handshake ended, the plaintext alert dropped", s)
	}
}

// TestFloods: garbage from many addresses creates nothing; a ClientHello
// flood fills the cap on unverified associations and evicts the oldest,
// never refusing one; a live association keeps working, and the flood's
// associations end at the unverified timeout, releasing their sockets.
func TestFloods(t *testing.T) {
	const cap = 20
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, true)
	r := start(t, "127.0.0.1:0", naive.Addr(),
		relay.WithMaxUnverified(cap), relay.WithUnverifiedTimeout(300*time.Millisecond))
	pc := listenLoopback(t, "127.0.0.1:0")
	c := dialV3(t, pc, addrOf(r), "live")
	defer c.Close()

	const senders, each = 100, 20
	socks := make([]*net.UDPConn, senders)
	for i := range socks {
		socks[i] = listenLoopback(t, "127.0.0.1:0")
		defer socks[i].Close()
	}
	// Each sender's burst is drained before the next, so the socket buffer
	// never overflows and every datagram is accounted for.
	for i, s := range socks {
		for j := range each {
			d := [][]byte{epochOneAlert, plaintextFatalAlert, garbage, {0x17, 0xfe, 0xfd, 0, 1}}[j%4]
			s.WriteTo(d, r.Addr())
		}
		dtlstest.WaitFor(t, "garbage dropped", func() bool { return r.Stats().DroppedUnknown == uint64((i+1)*each) })
	}
	if s := r.Stats(); s.Opened != 1 || s.Associations != 1 {
		t.Fatalf("garbage opened associations: %+v", s)
	}

	for _, s := range socks {
		s.WriteTo(clientHello, r.Addr())
	}
	dtlstest.WaitFor(t, "ClientHellos opened", func() bool { return r.Stats().Opened == 1+senders })
	if s := r.Stats(); s.Unverified != cap || s.Evicted != senders-cap || s.Refused != 0 {
		t.Fatalf("stats %+v: want %d unverified, %d evicted, none refused", s, cap, senders-cap)
	}
	echo(t, c, "still live")
	dtlstest.WaitFor(t, "flood associations time out", func() bool {
		s := r.Stats()
		return s.Associations == 1 && s.UnverifiedTimeouts == cap
	})
	echo(t, c, "still live after")
}

// TestIdleTimeout: an established association with no traffic ends after
// the idle timeout; what its client sends later is dropped, not taken as a
// new association.
func TestIdleTimeout(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 2*time.Second, true)
	r := start(t, "127.0.0.1:0", naive.Addr(), relay.WithIdleTimeout(200*time.Millisecond))
	pc := listenLoopback(t, "127.0.0.1:0")
	c := dialV3(t, pc, addrOf(r), "hello")
	defer c.Close()
	dtlstest.WaitFor(t, "idle timeout", func() bool { return r.Stats().IdleClosed == 1 })
	c.Write([]byte("late"))
	dtlstest.WaitFor(t, "late data dropped", func() bool { return r.Stats().DroppedUnknown >= 1 })
	if s := r.Stats(); s.Associations != 0 || s.Opened != 1 || naive.Conns.Load() != 1 {
		t.Fatalf("stats %+v, server conns %d: want the one association, ended", s, naive.Conns.Load())
	}
}

func TestOptionsAndAddresses(t *testing.T) {
	table, err := conntrack.New()
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		opts []relay.Option
		want string
	}{
		{[]relay.Option{relay.WithQuietPeriod(0)}, "quiet period 0s"},
		{[]relay.Option{relay.WithIdleTimeout(-time.Second)}, "idle timeout -1s"},
		{[]relay.Option{relay.WithHandshakeTimeout(0)}, "handshake timeout 0s"},
		{[]relay.Option{relay.WithMaxAssociations(0)}, "max associations 0"},
		{[]relay.Option{relay.WithMaxQuietPeers(-1)}, "max quiet peers -1"},
		{[]relay.Option{relay.WithMaxUnverified(0)}, "max unverified associations 0"},
		{[]relay.Option{relay.WithUnverifiedTimeout(0)}, "unverified timeout 0s"},
		{[]relay.Option{relay.WithCloseLinger(-time.Second)}, "close linger -1s"},
		{[]relay.Option{relay.WithTable(nil)}, "table is nil"},
		{[]relay.Option{relay.WithLogger(nil)}, "logger is nil"},
		{[]relay.Option{relay.WithReaders(0)}, "readers 0"},
		{[]relay.Option{relay.WithTable(table), relay.WithQuietPeriod(time.Second)}, "WithQuietPeriod conflicts with WithTable"},
		{[]relay.Option{relay.WithMaxQuietPeers(5), relay.WithTable(table)}, "WithMaxQuietPeers conflicts with WithTable"},
	}
	for _, b := range bad {
		_, err := relay.Listen("udp", "127.0.0.1:0", "127.0.0.1:5684", b.opts...)
		if !errors.Is(err, relay.ErrInvalidOption) || !strings.Contains(err.Error(), b.want) {
			t.Errorf("err = %v, want ErrInvalidOption naming %q", err, b.want)
		}
	}
	pc := listenLoopback(t, "127.0.0.1:0")
	defer pc.Close()
	if _, err := relay.New(pc, netip.MustParseAddrPort("127.0.0.1:5684"), relay.WithReaders(2)); !errors.Is(err, relay.ErrInvalidOption) || !strings.Contains(err.Error(), "WithReaders(2) needs Listen") {
		t.Errorf("New with WithReaders(2): %v", err)
	}
	for _, c := range []struct{ network, listen, upstream string }{
		{"tcp", "127.0.0.1:0", "127.0.0.1:5684"},
		{"udp", "127.0.0.1:0", "no-port"},
		{"udp", "not an address", "127.0.0.1:5684"},
		{"udp", "192.0.2.1:0", "127.0.0.1:5684"}, // TEST-NET-1: not ours to bind
		{"udp", "127.0.0.1:0", "127.0.0.1:0"},
	} {
		if r, err := relay.Listen(c.network, c.listen, c.upstream); err == nil {
			r.Close()
			t.Errorf("Listen(%q, %q, %q) succeeded", c.network, c.listen, c.upstream)
		}
	}
}

// TestReaders: with three SO_REUSEPORT sockets on the listening address,
// each read by its own goroutine, every client is served whichever socket
// the kernel hashes it to, and Close stops them all.
func TestReaders(t *testing.T) {
	check := dtlstest.CheckGoroutines(t)
	ln, err := pionv3.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, fixture.ServerV3(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := dtlstest.Serve(ln, false, nil)
	r, err := relay.Listen("udp", "127.0.0.1:0", ln.Addr().String(), relay.WithReaders(3))
	if err != nil {
		t.Fatal(err)
	}
	// Every socket gets what the first got (the kernel may cap it).
	wantRcv, wantSnd := r.SocketBuffers()
	for i, pc := range relay.ListeningSockets(r) {
		if rcv, snd := relay.SocketBuffersOf(pc); rcv != wantRcv || snd != wantSnd {
			t.Errorf("listening socket %d has buffers %d and %d; the first has %d and %d", i, rcv, snd, wantRcv, wantSnd)
		}
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	const clients = 12
	for i := range clients {
		pc := listenLoopback(t, "127.0.0.1:0")
		c := dialV3(t, pc, addrOf(r), fmt.Sprint("client ", i))
		echo(t, c, fmt.Sprint("client ", i, " again"))
		c.Close()
	}
	if s := r.Stats(); s.Verified != clients {
		t.Fatalf("stats %+v; want %d associations verified", s, clients)
	}
	r.Close()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ln.Close()
	srv.Stop()
	check()
}

// TestClientAbandonsHandshake: a client that gives up its handshake with a
// fatal alert (here it cannot verify the server's certificate) ends the
// server's handshake, so the relay ends the association once it has
// forwarded the alert. Whatever the client's address sends afterwards (in
// the chaos test that failed, a previous association's close_notify that the
// network delayed) is dropped instead of reaching a server that has
// forgotten the handshake and would take it as a new connection.
func TestClientAbandonsHandshake(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 10*time.Second, false)
	r := start(t, "127.0.0.1:0", naive.Addr())
	front, err := udprelay.New(addrOf(r), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	pc := listenLoopback(t, "127.0.0.1:0")
	client := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	giveUp(t, pc, net.UDPAddrFromAddrPort(front.Addr()))
	dtlstest.WaitFor(t, "the server's handshake fails on the client's alert", func() bool { return naive.Failures.Load() == 1 })
	if err := front.Flush(); err != nil {
		t.Fatal(err)
	}
	before := r.Stats()
	if before.Verified != 1 || before.ClientAborted != 1 || before.Associations != 0 {
		t.Fatalf("stats %+v: want one verified handshake, ended by its client's alert", before)
	}
	// An encrypted close_notify of an earlier association, late.
	late := append([]byte{record.ContentTypeAlert, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 3, 0, 26}, make([]byte, 26)...)
	front.Inject(udprelay.ToServer, client, late)
	dtlstest.WaitFor(t, "the relay handles the late record", func() bool { return handled(r.Stats()) == handled(before)+1 })
	if s := r.Stats(); s.ToServer != before.ToServer || s.DroppedUnknown != before.DroppedUnknown+1 {
		t.Fatalf("stats %+v: the record after the client's alert was not dropped", s)
	}
}

// TestReconnectAfterALateServerFlight is the relay chaos failure of
// 2026-11-26, replayed step by step. A client reconnects from the port of an
// association the server has just closed, while the network still carries
// that old association's datagrams both ways: the server's flight reaches
// the new handshake's client, which cannot verify it and gives up with a
// fatal alert; then the old association's close_notify reaches the relay.
// The server abandoned the new handshake on the alert, so the close_notify
// must not reach it: a server back to waiting for clients takes it for a
// new connection.
func TestReconnectAfterALateServerFlight(t *testing.T) {
	naive := dtlstest.NewNaiveServer(t, 10*time.Second, false)
	r := start(t, "127.0.0.1:0", naive.Addr())
	const (
		recordFlight = iota // the first association: keep the server's flight
		swapFlight          // the second: its server's flight is replaced by the first's
	)
	var (
		phase    atomic.Int32
		mu       sync.Mutex
		flight   [][]byte
		front    *udprelay.Relay
		swapOnce sync.Once
	)
	serverFlight := func(d []byte) bool {
		rec := record.Inspect(d)
		return rec.Class == record.ClassHandshake && rec.Epoch == 0 && rec.HasHandshakeHeader && rec.MsgType != record.HandshakeTypeHelloVerifyRequest
	}
	hook := func(p udprelay.Packet) udprelay.Verdict {
		switch ph := phase.Load(); {
		case p.Dir == udprelay.ToClient && ph == recordFlight && serverFlight(p.Data):
			mu.Lock()
			flight = append(flight, append([]byte(nil), p.Data...))
			mu.Unlock()
		case p.Dir == udprelay.ToServer && p.Data[0] == record.ContentTypeAlert && record.Inspect(p.Data).Epoch == 1:
			// The first client's close_notify, whether it answers the
			// server's or comes of Close.
			return udprelay.Verdict{Hold: true}
		case p.Dir == udprelay.ToClient && ph == swapFlight && serverFlight(p.Data):
			swapOnce.Do(func() {
				mu.Lock()
				old := flight
				mu.Unlock()
				go func() {
					for _, d := range old {
						front.Inject(udprelay.ToClient, p.Client, d)
					}
				}()
			})
			return udprelay.Verdict{Drop: true}
		}
		return udprelay.Verdict{}
	}
	front, err := udprelay.New(addrOf(r), hook)
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()

	pc := listenLoopback(t, "127.0.0.1:0")
	local := pc.LocalAddr().String()
	c := dialV3(t, pc, front.Addr(), "first")
	dtlstest.WaitFor(t, "relay sees the server's close_notify", func() bool { return r.Stats().ServerClosed == 1 })
	c.Close() // it has written its close_notify (or two: pion may answer the server's too)
	if err := front.Flush(); err != nil {
		t.Fatal(err)
	}
	if front.Held() == 0 {
		t.Fatal("the first client sent no close_notify to delay")
	}

	phase.Store(swapFlight)
	pc = listenLoopback(t, local)
	c2, err := dtlsv3.Client(pc, net.UDPAddrFromAddrPort(front.Addr()), fixture.ClientV3(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	handshakeFails(t, c2, "the second handshake completed on the first association's server flight")
	dtlstest.WaitFor(t, "the server abandons the second handshake", func() bool { return naive.Failures.Load() == 1 })
	if err := front.Flush(); err != nil {
		t.Fatal(err)
	}
	before := r.Stats()
	n := uint64(front.Release())
	dtlstest.WaitFor(t, "the relay handles the late close_notify", func() bool { return handled(r.Stats()) == handled(before)+n })
	if s := r.Stats(); s.ToServer != before.ToServer || s.TotalStrays() != before.TotalStrays()+n {
		t.Fatalf("the late close_notify was not dropped as a stray:\nbefore %+v\nafter  %+v", before, s)
	}
	if s := r.Stats(); s.ClientAborted != 1 || s.Associations != 0 {
		t.Fatalf("stats %+v: want the second handshake ended by its client's alert", s)
	}
}

// giveUp runs the handshake of a pion v3 client that verifies the server's
// certificate, which the self-signed test certificate fails: the client
// gives up with a plaintext fatal alert (bad_certificate).
func giveUp(t *testing.T, pc net.PacketConn, server net.Addr) {
	t.Helper()
	cfg := fixture.ClientV3(t)
	cfg.InsecureSkipVerify = false
	c, err := dtlsv3.Client(pc, server, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	handshakeFails(t, c, "the handshake succeeded with a certificate the client cannot verify")
}

// handshakeFails runs c's handshake and fails the test with why if it
// completes.
func handshakeFails(t *testing.T, c *dtlsv3.Conn, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err == nil {
		t.Fatal(why)
	}
}

// handled counts the client datagrams the relay forwarded or dropped.
// FromClients counts a datagram when it is read, these once it is handled,
// so a test waits on this one.
func handled(s relay.Stats) uint64 {
	return s.ToServer + s.TotalStrays() + s.DroppedUnknown + s.DroppedInvalid
}
