package pionv3_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestRehandshake is RFC 6347 §4.2.8 against the v3 adapter: a client that
// loses its state and comes back from the same addr:port is served at once
// (and pion's own listener locks it out); a spoofed ClientHello leaves the
// live association alone; openssl s_client rebooted on a bound port; many
// peers at once.
func TestRehandshake(t *testing.T) { bothModes(t, rehandshake) }

func rehandshake(t *testing.T) {
	dtlstest.Rehandshake{
		Listen:     listen,
		PionListen: pionListen,
		Client: func(t *testing.T, local, server netip.AddrPort, timeout time.Duration) (*net.UDPConn, net.Conn, error) {
			uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
			if err != nil {
				t.Fatal(err)
			}
			c, err := dtls.Client(uc, net.UDPAddrFromAddrPort(server), clientConfig(t))
			if err != nil {
				return uc, nil, err
			}
			if err := dtlstest.Handshake(c, timeout); err != nil {
				return uc, nil, err
			}
			return uc, c, nil
		},
	}.Run(t)
}

// pionListen starts pion's own listener on loopback, for contrast.
func pionListen(t *testing.T) net.Listener {
	ln, err := dtls.Listen("udp", loopback, serverConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
