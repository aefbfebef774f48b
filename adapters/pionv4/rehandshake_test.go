package pionv4_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestRehandshake is RFC 6347 §4.2.8 (RFC 9147 §5.11 in DTLS 1.3)
// against the v4 adapter: a client that loses its state and comes back
// from the same addr:port is served at once (and pion's own listener locks
// it out); a spoofed ClientHello leaves the live association alone;
// openssl s_client rebooted on a bound port; many peers at once.
func TestRehandshake(t *testing.T) {
	inModes(t, allModes, func(t *testing.T) {
		dtlstest.Rehandshake{
			Listen:     func(t *testing.T, opts ...demux.Option) *demux.Listener { return listen(t, opts...) },
			PionListen: pionListen,
			Client: func(t *testing.T, local, server netip.AddrPort, timeout time.Duration) (*net.UDPConn, net.Conn, error) {
				uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
				if err != nil {
					t.Fatal(err)
				}
				c, err := dtls.Client(dtlstest.SendFirst(uc), net.UDPAddrFromAddrPort(server), clientOptions(t)...)
				if err != nil {
					return uc, nil, err
				}
				if err := dtlstest.Handshake(c, timeout); err != nil {
					return uc, nil, err
				}
				return uc, c, nil
			},
			Hello:  func(t testing.TB) []byte { return dtlstest.ClientHelloV4(t, clientOptions(t)) },
			DTLS13: cur.version == protocol.Version1_3,
		}.Run(t)
	})
}
