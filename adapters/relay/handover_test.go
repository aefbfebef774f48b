package relay_test

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// serving starts r and returns a func that closes it and waits for Serve.
func serving(t *testing.T, r *relay.Relay) func() {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	return func() {
		r.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
}

func pionEchoServer(t *testing.T) (*dtlstest.EchoServer, netip.AddrPort) {
	t.Helper()
	return dtlstest.ServePionV3(t, fixture.ServerV3(t))
}

// TestHandover hands a relay carrying live associations and a quiet
// client over to a successor, three times, as a restart would, in one
// process: every client goes on echoing on the association it has (the
// server completes no new handshake), the quiet client's strays are still
// dropped with its alert echoed, and the counters carry on.
func TestHandover(t *testing.T) {
	srv, server := pionEchoServer(t)
	cur, err := relay.Listen("udp", "127.0.0.1:0", server.String())
	if err != nil {
		t.Fatal(err)
	}
	stop := serving(t, cur)
	addr := addrOf(cur)
	const n = 20
	var clients []*dtlsv3.Conn
	for range n {
		c := dialV3(t, listenLoopback(t, "127.0.0.1:0"), addr, "hello")
		defer c.Close()
		clients = append(clients, c)
	}
	quiet := listenLoopback(t, "127.0.0.1:0")
	alert := []byte{0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 5, 0, 2, 1, 0}
	cur.Table().MarkClosedWithAlert(quiet.LocalAddr().(*net.UDPAddr).AddrPort(), alert)

	for round := range 3 {
		h, err := cur.Freeze()
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Listeners) != 1 || len(h.Upstreams) != n {
			t.Fatalf("round %d: handed over %d listeners and %d upstream sockets; want 1 and %d", round, len(h.Listeners), len(h.Upstreams), n)
		}
		next, err := relay.Adopt(h, server)
		if err != nil {
			t.Fatal(err)
		}
		stopNext := serving(t, next)
		stop() // the old process exits
		cur, stop = next, stopNext

		for i, c := range clients {
			echo(t, c, "after hand-over "+string(rune('a'+round))+string(rune('a'+i)))
		}
		before := cur.Stats().TotalStrays()
		quiet.WriteTo([]byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 3, 1, 2, 3}, net.UDPAddrFromAddrPort(addr))
		quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		if k, err := quiet.Read(buf); err != nil || string(buf[:k]) != string(alert) {
			t.Fatalf("round %d: the quiet client's stray got %x, %v; want its alert echoed", round, buf[:k], err)
		}
		if s := cur.Stats(); s.TotalStrays() != before+1 || s.Live != n || s.Opened != n {
			t.Fatalf("round %d: strays %d (were %d), live %d, opened %d; want one more stray, %d live and opened", round, s.TotalStrays(), before, s.Live, s.Opened, n)
		}
	}
	stop()
	if a := srv.Accepted.Load(); a != n {
		t.Errorf("the server completed %d handshakes; want %d, one per client", a, n)
	}
}

// TestFailedHandoverServesOn: a relay whose successor never took over
// serves on after Thaw, and a successor that cannot read the state it was
// handed starts clean on the listening socket and says so.
func TestFailedHandoverServesOn(t *testing.T) {
	_, server := pionEchoServer(t)
	var logs syncBuffer
	r, err := relay.Listen("udp", "127.0.0.1:0", server.String())
	if err != nil {
		t.Fatal(err)
	}
	stop := serving(t, r)
	c := dialV3(t, listenLoopback(t, "127.0.0.1:0"), addrOf(r), "before")
	defer c.Close()
	h, err := r.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Freeze(); err == nil {
		t.Error("a second Freeze succeeded")
	}
	h.Close() // the successor failed
	r.Thaw()
	echo(t, c, "after a failed hand-over")

	h, err = r.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	h.State = []byte(`{"Version":999}`)
	next, err := relay.Adopt(h, server, relay.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	stopNext := serving(t, next)
	defer stopNext()
	stop()
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "starting clean") {
		t.Errorf("no warning that the state was not read:\n%s", out)
	}
	if s := next.Stats(); s.Associations != 0 {
		t.Errorf("a clean start carries %d associations", s.Associations)
	}
	dialV3(t, listenLoopback(t, "127.0.0.1:0"), addrOf(next), "a new client").Close()
}
