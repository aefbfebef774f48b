package relay_test

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// fakeServer is a UDP socket standing in for the server: it reports what
// reaches it.
func fakeServer(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func received(c *net.UDPConn, within time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 2048)
	_, err := c.Read(buf)
	return err == nil
}

// TestSetUpstream: after SetUpstream a new association goes to the new
// server; the live one stays with the old.
func TestSetUpstream(t *testing.T) {
	a, aAddr := fakeServer(t)
	b, bAddr := fakeServer(t)
	r := start(t, "127.0.0.1:0", aAddr)
	hello := dtlstest.ForgedHellos(t)
	client := func() *net.UDPConn {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addrOf(r)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1 := client()
	c1.Write(hello(1))
	if !received(a, 5*time.Second) {
		t.Fatal("the first server got nothing")
	}
	if err := r.SetUpstream(bAddr); err != nil {
		t.Fatal(err)
	}
	if r.Upstream() != bAddr {
		t.Fatalf("Upstream() = %v, want %v", r.Upstream(), bAddr)
	}
	c2 := client()
	c2.Write(hello(2))
	if !received(b, 5*time.Second) {
		t.Fatal("a new association did not go to the new server")
	}
	// The first client's retransmitted ClientHello belongs to its own
	// association, opened to the first server.
	c1.Write(hello(1))
	if !received(a, 5*time.Second) {
		t.Fatal("the association opened before SetUpstream moved")
	}
	for _, bad := range []netip.AddrPort{{}, netip.MustParseAddrPort("127.0.0.1:0"), addrOf(r)} {
		if err := r.SetUpstream(bad); err == nil {
			t.Errorf("SetUpstream(%v) accepted", bad)
		}
	}
	if r.Upstream() != bAddr {
		t.Fatalf("a refused SetUpstream changed the upstream to %v", r.Upstream())
	}
}

// TestUpstreamDownIsLogged: with nothing listening upstream, the ICMP port
// unreachable the kernel reports becomes a warn line naming the upstream,
// at most one a second however many clients try, and a counter.
func TestUpstreamDownIsLogged(t *testing.T) {
	down, downAddr := fakeServer(t)
	down.Close() // the port is now closed: the kernel answers with ICMP
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r := start(t, "127.0.0.1:0", downAddr, relay.WithLogger(log))
	hello := dtlstest.ForgedHellos(t)
	const n = 20
	begin := time.Now()
	for i := range n {
		// A client each: one client's handshakes share a small cap.
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addrOf(r)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(hello(i))
	}
	dtlstest.WaitFor(t, "five refused datagrams counted", func() bool { return r.Stats().UpstreamErrors >= 5 })
	out := logs.String()
	warns := strings.Count(out, "the upstream refused a datagram or is unreachable")
	most := 1 + int(time.Since(begin)/time.Second)
	if warns < 1 || warns > most || !strings.Contains(out, "upstream="+downAddr.String()) || !strings.Contains(out, "level=WARN") {
		t.Fatalf("%d warn lines for %d refused datagrams, want 1 to %d naming upstream=%v:\n%s", warns, r.Stats().UpstreamErrors, most, downAddr, out)
	}
}
