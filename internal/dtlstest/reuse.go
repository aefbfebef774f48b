package dtlstest

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/internal/spoof"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
	"github.com/straydtls/straydtls/udprelay"
)

// RunPortReuse runs three associations in turn from one client socket,
// each closed by the server: every ClientHello must end the quiet period
// the previous close started. listen starts the adapter's listener with
// the options given; handshake runs a client over a socket it may use only
// until the client is closed (fixture.Shared), to the server at addr.
func RunPortReuse(t *testing.T, listen func(t *testing.T, opts ...demux.Option) *demux.Listener, handshake func(pc net.PacketConn, addr net.Addr) (net.Conn, error)) {
	t.Helper()
	ln := listen(t, demux.WithFilter(strayfilter.WithQuietPeriod(time.Hour)))
	closed := make(chan struct{}, 4)
	// The server closes each association once its client read the echo.
	srv := Serve(ln, false, func(net.Conn) { closed <- struct{}{} })
	defer srv.Stop()
	defer ln.Close()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sock := fixture.NewShared(pc)
	for i := range 3 {
		c, err := handshake(sock.Lend(), ln.Addr())
		if err != nil {
			t.Fatalf("association %d from %v: %v", i, pc.LocalAddr(), err)
		}
		EchoOnce(t, c, fmt.Sprint("round ", i))
		if n := srv.CloseOpen(); n != 1 {
			t.Fatalf("round %d: the server had %d connections open, want 1", i, n)
		}
		c.Close()
		<-closed
	}
	if s := ln.Stats(); s.Created != 3 || s.Filter.Forgets != 2 {
		t.Fatalf("stats %+v: want 3 associations, the quiet peer forgotten twice", s)
	}
}

// RunForgedCIDFlood sends n forged records from 1,000 loopback addresses
// at 5,000 a second to ln, whose one live client c keeps echoing
// throughout. forged(i) is the i-th record: the odd ones carry a CID no
// association has, the even ones c's own. The unknown half must be
// dropped by CID, the rest delivered to c's association (whose stack
// discards them), and nothing may move or add an association.
func RunForgedCIDFlood(t *testing.T, ln *demux.Listener, c net.Conn, n int, forged func(i int) []byte) {
	t.Helper()
	before := ln.Stats()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := spoof.Flood(ln.Addr().(*net.UDPAddr).AddrPort(), n, 1000, 5000, forged, stop)
		done <- err
	}()
	echoes := 0
	for flooding := true; flooding; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			flooding = false
		default:
			EchoOnce(t, c, fmt.Sprint("during the flood ", echoes))
			echoes++
		}
	}
	close(stop)
	WaitFor(t, "every forged record judged", func() bool {
		return ln.Stats().UnknownCID-before.UnknownCID == uint64(n/2)
	})
	EchoOnce(t, c, "after the flood")
	s := ln.Stats()
	t.Logf("%d echoes during the flood; %d forged records with unknown CIDs dropped, %d with the live CID delivered to the stack and discarded", echoes, s.UnknownCID-before.UnknownCID, n-n/2)
	// Nothing else dropped them: the live CID's half reached the stack.
	if s.Created != 1 || s.Conns != 1 || s.Peers != 1 || s.Moved != 0 || s.Unverified != 0 ||
		s.UnknownPeer != before.UnknownPeer || s.Invalid != before.Invalid {
		t.Fatalf("stats %+v; want the live association alone, unmoved", s)
	}
}

// RunCIDRecordsFromANewAddress sends records carrying the CID of ln's one
// live client c from a new address: replays of the client's own and
// forgeries. The stack cannot authenticate them (or has seen them), so
// they must move nothing: c's association still answers c.
func RunCIDRecordsFromANewAddress(t *testing.T, ln *demux.Listener, c net.Conn, records [][]byte) {
	t.Helper()
	attacker, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	for _, d := range records {
		attacker.Write(d)
	}
	// On loopback a datagram is in the server's socket queue when Write
	// returns, so the server reads every forgery before the next echo,
	// which the client's relay forwards later still.
	for i := range 3 {
		EchoOnce(t, c, fmt.Sprint("after the forgeries ", i))
	}
	if s := ln.Stats(); s.Moved != 0 || s.Created != 1 || s.UnknownCID != 0 || s.Invalid != 0 {
		t.Fatalf("stats %+v; want the forgeries delivered to the association, and it unmoved", s)
	}
}

// RunLateRecordsOfAClosedAssociation replays late, the datagrams a client
// sent on an association with CIDs that the server has closed, from a new
// port straight at ln and through relay from the client's own address
// (local), which is quiet. Those carrying the CID must be dropped as
// unknown CIDs from the new port, the rest as unknown peers, and all of
// them as strays from the quiet address; then the next client (next) is
// served at once and no connection came of the strays.
func RunLateRecordsOfAClosedAssociation(t *testing.T, ln *demux.Listener, relay *udprelay.Relay, local netip.AddrPort, late [][]byte, next func() net.Conn) {
	t.Helper()
	cids := 0
	for _, d := range late {
		if record.HasConnectionID(d) {
			cids++
		}
	}
	if cids < 2 {
		t.Fatalf("captured %d datagrams with a CID; want the message and its close_notify at least", cids)
	}
	WaitFor(t, "the association's end", func() bool { return ln.Stats().Conns == 0 })
	before := ln.Stats()
	fresh, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for _, d := range late {
		fresh.Write(d)
		relay.Inject(udprelay.ToServer, local, d)
	}
	strays := func(s demux.Stats) (n uint64) {
		for _, v := range s.Filter.Strays {
			n += v
		}
		return n
	}
	var s demux.Stats
	defer func() {
		if t.Failed() {
			t.Logf("late %d (%d with a CID); before %+v\nafter %+v", len(late), cids, before, s)
		}
	}()
	WaitFor(t, "every late datagram judged", func() bool {
		s = ln.Stats()
		return s.UnknownCID-before.UnknownCID == uint64(cids) &&
			s.UnknownPeer-before.UnknownPeer == uint64(len(late)-cids) &&
			// The client's own close_notify may still be on its way.
			strays(s)-strays(before) >= uint64(len(late))
	})
	start := time.Now()
	b := next()
	took := time.Since(start)
	EchoOnce(t, b, "next client")
	b.Close()
	t.Logf("%d late datagrams (%d with a CID) from a new port and from the quiet one: next client's handshake took %v", len(late), cids, took)
	if s := ln.Stats(); s.Created != 2 || s.Accepted != 2 || s.HandshakeFailed != 0 {
		t.Fatalf("stats %+v; want 2 associations, both real", s)
	}
}
