package relay_test

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/fixture"
)

// TestOneGoroutineReadsEveryUpstreamSocket: on Linux the relay's upstream
// sockets are read by one epoll loop, not a goroutine each, and what one
// wake-up reads goes to the clients in one sendmmsg. 64 clients through an
// unfiltered relay (an upstream socket per client address) are all echoed
// while the relay's goroutines stay flat, on an IPv4, an IPv6 and a
// dual-stack listening socket (where IPv4 clients are v4-mapped), and
// closing the relay ends every association, each reported once.
func TestOneGoroutineReadsEveryUpstreamSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the pump loop is Linux only (epoll)")
	}
	for _, c := range []struct {
		name, network, listen string
		client                netip.Addr
	}{
		{"ipv4", "udp4", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1")},
		{"ipv6", "udp", "[::1]:0", netip.IPv6Loopback()},
		{"dual-stack", "udp", ":0", netip.MustParseAddr("127.0.0.1")},
	} {
		t.Run(c.name, func(t *testing.T) { oneGoroutine(t, c.network, c.listen, c.client) })
	}
}

func oneGoroutine(t *testing.T, network, listen string, client netip.Addr) {
	const clients = 64
	echo, echoAddr := fakeServer(t)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	r, err := relay.Listen(network, listen, echoAddr.String(), relay.WithFiltering(false))
	if err != nil {
		t.Fatal(err)
	}
	var ended atomic.Int64
	relay.OnEnded(r, func(netip.AddrPort) { ended.Add(1) })
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()

	before := runtime.NumGoroutine()
	for i := range clients {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(client, addrOf(r).Port())))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := fmt.Sprint("client ", i)
		buf := make([]byte, 64)
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(fixture.HandshakeTimeout))
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != msg {
			t.Fatalf("client %d: read %q, %v; want its echo", i, buf[:n], err)
		}
	}
	if s := r.Stats(); s.Opened != clients {
		t.Fatalf("%d upstream sockets opened, want %d", s.Opened, clients)
	}
	// The loop itself and a timer may start; a goroutine per socket would
	// add 64.
	if grew := runtime.NumGoroutine() - before; grew > 4 {
		t.Errorf("%d more goroutines for %d upstream sockets", grew, clients)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if got := ended.Load(); got != clients {
		t.Errorf("%d associations reported ended after Close, want %d", got, clients)
	}
}
