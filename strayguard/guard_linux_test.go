//go:build linux

package strayguard_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/straydtls/straydtls/internal/captured"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayguard"
)

// attach attaches a Guard on loopback for ports until the test ends. It
// skips where BPF at tcx is not allowed (not root, an old kernel), but not
// in CI, which runs as root on a kernel with tcx: there it fails.
func attach(t testing.TB, ports []uint16, opts ...strayguard.Option) *strayguard.Guard {
	t.Helper()
	g, err := strayguard.Attach("lo", ports, opts...)
	if errors.Is(err, strayguard.ErrPermission) || errors.Is(err, strayguard.ErrNotSupported) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs as root on a kernel with tcx, so this must not fail: %v", err)
		}
		t.Skipf("BPF at tcx is not allowed here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// datagram returns the captured datagram whose file name ends in suffix.
func datagram(t testing.TB, suffix string) []byte {
	t.Helper()
	for _, f := range captured.Records(t, false) {
		if strings.HasSuffix(f.Name, suffix) {
			return f.Data
		}
	}
	t.Fatalf("no captured datagram named *%s", suffix)
	return nil
}

// peer is a UDP socket on loopback.
func peer(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func send(t testing.TB, from *net.UDPConn, to netip.AddrPort, p []byte) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort(p, to); err != nil {
		t.Fatal(err)
	}
}

// next returns the next datagram c reads, failing after 5 s.
func next(t testing.TB, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestQuietPeriod: the server's closing alert makes the client quiet; its
// late application data is dropped, and a ClientHello from it passes
// without ending the quiet period; the server's ServerHello ends it.
// Loopback keeps a socket pair's datagrams in order, so the datagram the
// server reads after a stray shows the stray was dropped.
func TestQuietPeriod(t *testing.T) {
	server, client := peer(t), peer(t)
	g := attach(t, []uint16{addr(server).Port()}, strayguard.WithQuietPeriod(time.Hour))
	alert := datagram(t, "openssl-s_client-08-server-alert-epoch1.hex")
	appData := datagram(t, "openssl-s_client-06-client-application-data-epoch1.hex")
	hello := datagram(t, "openssl-s_client-00-client-ClientHello-frag0.hex")
	serverHello := datagram(t, "openssl-s_client-03-server-ServerHello-frag0.hex")
	stun := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

	send(t, client, addr(server), appData)
	if got := next(t, server); string(got) != string(appData) {
		t.Fatal("a client that is not quiet lost a datagram")
	}
	send(t, server, addr(client), alert)
	next(t, client)
	if _, quiet, err := g.Quiet(addr(client), addr(server).Port()); err != nil || !quiet {
		t.Fatalf("client not quiet after the server's alert (%v)", err)
	}
	send(t, client, addr(server), appData)
	send(t, client, addr(server), stun)
	if got := next(t, server); string(got) != string(stun) {
		t.Fatalf("server read %x, want the STUN datagram (the stray before it dropped)", got)
	}
	send(t, client, addr(server), hello)
	if got := next(t, server); string(got) != string(hello) {
		t.Fatal("the quiet client's ClientHello did not pass")
	}
	if _, quiet, _ := g.Quiet(addr(client), addr(server).Port()); !quiet {
		t.Fatal("a ClientHello ended the quiet period; only the server's ServerHello may")
	}
	send(t, server, addr(client), serverHello)
	next(t, client)
	if _, quiet, _ := g.Quiet(addr(client), addr(server).Port()); quiet {
		t.Fatal("the server's ServerHello did not end the quiet period")
	}
	send(t, client, addr(server), appData)
	if got := next(t, server); string(got) != string(appData) {
		t.Fatal("the client's datagram was dropped after its quiet period ended")
	}

	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := strayguard.Stats{ClosingAlerts: 1, ServerHellos: 1, Hellos: 1, Foreign: 1}
	want.Strays[record.ReasonApplicationData] = 1
	if s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
}
