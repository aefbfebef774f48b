package pionv2_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// TestRehandshake is RFC 6347 §4.2.8 against the v2 adapter: a client that
// loses its state and comes back from the same addr:port is served at once
// (and pion's own listener locks it out); a spoofed ClientHello leaves the
// live association alone; openssl s_client rebooted on a bound port; many
// peers at once.
func TestRehandshake(t *testing.T) {
	dtlstest.Rehandshake{
		Listen:     listen,
		PionListen: pionListen,
		// pion v2's client takes a connected socket.
		Client: func(t *testing.T, local, server netip.AddrPort, timeout time.Duration) (*net.UDPConn, net.Conn, error) {
			uc, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(local), net.UDPAddrFromAddrPort(server))
			if err != nil {
				t.Fatal(err)
			}
			cfg := fixture.ClientV2(t)
			cfg.ConnectContextMaker = dtlstest.Timeout(timeout)
			c, err := dtls.Client(uc, cfg)
			if err != nil {
				return uc, nil, err
			}
			return uc, c, nil
		},
		PionDiesOfPlaintextAlert: true,
	}.Run(t)
}

// pionListen starts pion's own listener on loopback, for contrast.
func pionListen(t *testing.T) net.Listener {
	ln, err := dtls.Listen("udp", loopback, fixture.ServerV2(t))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
