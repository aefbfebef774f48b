package relay_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// TestDTLS13ThroughRelay: the relay in front of a DTLS 1.3 server (pion
// v4's own listener; no C server here speaks 1.3). Every handshake passes
// with its HelloRetryRequest, whose cookie the client echoes in the second
// of two datagrams, which verifies it; completion is inferred from the
// server's first record at epoch 3. A DTLS 1.3 close is encrypted, so the
// relay cannot see it: each association ends at the idle timeout, and a
// client coming back from the same port meanwhile is served at once (its
// new handshake replaces the old association).
func TestDTLS13ThroughRelay(t *testing.T) {
	ln, err := dtls.ListenAddr("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, fixture.ServerV4At(t, protocol.Version1_3)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := dtlstest.Serve(ln, false, nil)
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	const idle = 300 * time.Millisecond
	r := start(t, "127.0.0.1:0", ln.Addr().(*net.UDPAddr).AddrPort(), relay.WithIdleTimeout(idle))
	client := fixture.ClientV4At(t, protocol.Version1_3)

	// Three clients, each from a port of its own.
	for i := range 3 {
		uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addrOf(r)))
		if err != nil {
			t.Fatal(err)
		}
		c, err := dtlstest.DialV4(client, 5*time.Second)(uc)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		dtlstest.EchoOnce(t, c, fmt.Sprint("client ", i))
		c.Close()
	}
	s := r.Stats()
	if s.Opened != 3 || s.Verified != 3 || s.Live != 3 {
		t.Fatalf("stats %+v; want three associations verified by their HelloRetryRequest cookies, completed", s)
	}
	dtlstest.WaitFor(t, "every association ends at the idle timeout", func() bool { return r.Stats().Associations == 0 })
	if s := r.Stats(); s.IdleClosed != 3 || s.ServerClosed != 0 {
		t.Fatalf("stats %+v; want three ended idle", s)
	}

	// One port, two associations in turn, the second before the first's
	// idle end: its handshake completes and replaces the first.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sock := fixture.NewShared(pc)
	for i := range 2 {
		c, err := dtls.Client(dtlstest.SendFirst(sock.Lend()), net.UDPAddrFromAddrPort(addrOf(r)), client...)
		if err != nil {
			t.Fatal(err)
		}
		if err := handshake(c); err != nil {
			t.Fatalf("association %d from %v: %v", i, pc.LocalAddr(), err)
		}
		dtlstest.EchoOnce(t, c, fmt.Sprint("round ", i))
		c.Close()
	}
	if s := r.Stats(); s.Replaced != 1 {
		t.Fatalf("stats %+v; want the second association to replace the first", s)
	}
}

func handshake(c *dtls.Conn) error { return dtlstest.Handshake(c, 5*time.Second) }
