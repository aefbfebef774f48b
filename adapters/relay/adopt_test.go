package relay_test

import (
	"net"
	"net/netip"
	"testing"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// TestColdRestartWithCIDs: a relay that stops without handing over (killed,
// crashed) loses its associations. Its successor on the same address
// adopts a client whose records carry the server's CID (rule 12): the
// server follows the CID to the new upstream socket and the client echoes
// on, without a new handshake. A client without CIDs has nothing a server
// could follow, and its datagrams are dropped; so are a quiet client's CID
// records, which are strays.
func TestColdRestartWithCIDs(t *testing.T) {
	srv, server := dtlstest.ServePionV3(t, fixture.ServerV3CID(t))
	first, err := relay.Listen("udp", "127.0.0.1:0", server.String())
	if err != nil {
		t.Fatal(err)
	}
	stop := serving(t, first)
	addr := addrOf(first)
	dial := func(cfg *dtlsv3.Config) *dtlsv3.Conn {
		c, err := dtlsv3.Client(listenLoopback(t, "127.0.0.1:0"), net.UDPAddrFromAddrPort(addr), cfg)
		if err != nil {
			t.Fatal(err)
		}
		echo(t, c, "before")
		t.Cleanup(func() { c.Close() })
		return c
	}
	withCID := dial(fixture.ClientV3CID(t))
	without := dial(fixture.ClientV3(t))
	quiet := dial(fixture.ClientV3CID(t))
	stop() // no hand-over: the associations are gone

	second, err := relay.Listen("udp", addr.String(), server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer serving(t, second)()
	second.Table().MarkClosed(quiet.LocalAddr().(*net.UDPAddr).AddrPort())

	echo(t, withCID, "after a cold restart")
	if s := second.Stats(); s.Adopted != 1 || s.Live != 1 {
		t.Errorf("adopted %d, live %d; want the CID client's association adopted and completed", s.Adopted, s.Live)
	}
	for _, c := range []*dtlsv3.Conn{without, quiet} {
		c.Write([]byte("lost"))
	}
	dtlstest.WaitFor(t, "the other two clients' records dropped", func() bool {
		s := second.Stats()
		return s.DroppedUnknown >= 1 && s.TotalStrays() >= 1
	})
	if s := second.Stats(); s.Adopted != 1 || s.Opened != 1 {
		t.Errorf("adopted %d, opened %d; want only the CID client's", s.Adopted, s.Opened)
	}
	if a := srv.Accepted.Load(); a != 3 {
		t.Errorf("the server completed %d handshakes; want 3, one per client", a)
	}
}

// TestForgedCIDFlood: CID records from 5,000 forged sources cost what
// forged ClientHellos cost (rule 12): at most WithMaxUnverified adopted
// associations at a time, the oldest evicted, each with one upstream
// socket; none becomes live, and a real client's association goes on.
func TestForgedCIDFlood(t *testing.T) {
	srv, server := pionEchoServer(t)
	r := start(t, "127.0.0.1:0", server, relay.WithMaxUnverified(64))
	real := dialV3(t, listenLoopback(t, "127.0.0.1:0"), addrOf(r), "before")
	defer real.Close()
	rec := append([]byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 0, 24}, make([]byte, 24)...)
	for i := range 5000 {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 3, byte(i >> 8), byte(i)}), uint16(1024+i))
		relay.HandleOne(r, rec, from)
		if s := r.Stats(); s.Unverified > 64 {
			t.Fatalf("after %d forged CID records: %d unverified associations; want at most the cap, 64", i+1, s.Unverified)
		}
	}
	s := r.Stats()
	if s.Adopted != 5000 || s.Evicted < 5000-64 || s.Live != 1 {
		t.Errorf("adopted %d, evicted %d, live %d; want 5,000 adopted, all but 64 evicted, the real client's alone live", s.Adopted, s.Evicted, s.Live)
	}
	echo(t, real, "after the flood")
	if a := srv.Accepted.Load(); a != 1 {
		t.Errorf("the server completed %d handshakes; want the real client's", a)
	}
}
