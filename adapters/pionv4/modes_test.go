package pionv4_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// mode is what the package's helpers make configs for: a DTLS version,
// and whether the server makes Connection IDs (8 bytes, followed as pion's
// policy says) that the client sends. The package's tests do not run in
// parallel.
type mode struct {
	version protocol.Version
	cid     bool
	policy  dtls.CIDPathMigrationPolicy
}

var cur = mode{version: protocol.Version1_2}

func (m mode) String() string {
	name := "dtls12"
	if m.version == protocol.Version1_3 {
		name = "dtls13"
	}
	if m.cid {
		name += "-cid"
	}
	return name
}

var (
	versions = []protocol.Version{protocol.Version1_2, protocol.Version1_3}
	loopback = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
)

// serverOptions are the mode's server options.
func serverOptions(t testing.TB) []dtls.ServerOption {
	opts := fixture.ServerV4At(t, cur.version)
	if cur.cid {
		opts = append(opts, dtls.WithConnectionID(dtls.RandomCIDGenerator(fixture.CIDLength), cur.policy))
	}
	return opts
}

// clientOptions are the matching client options: a client with CIDs sends
// the server's and asks for none itself, as most IoT clients do.
func clientOptions(t testing.TB) []dtls.ClientOption {
	opts := fixture.ClientV4At(t, cur.version)
	if cur.cid {
		opts = append(opts, dtls.WithConnectionID(dtls.OnlySendCIDGenerator(), cur.policy))
	}
	return opts
}

// dialV4 runs the mode's client handshake over a connected socket.
func dialV4(t testing.TB, timeout time.Duration) func(uc *net.UDPConn) (net.Conn, error) {
	return dtlstest.DialV4(clientOptions(t), timeout)
}

// inModes runs f once per mode as a subtest.
func inModes(t *testing.T, modes []mode, f func(t *testing.T)) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			cur = m
			defer func() { cur = mode{version: protocol.Version1_2} }()
			f(t)
		})
	}
}

// bothVersions are DTLS 1.2 and 1.3, without CIDs.
var bothVersions = []mode{{version: protocol.Version1_2}, {version: protocol.Version1_3}}

// allModes are both versions, without CIDs and with them (pion follows
// an authenticated record's new address at once).
var allModes = []mode{
	{version: protocol.Version1_2},
	{version: protocol.Version1_3},
	{version: protocol.Version1_2, cid: true, policy: dtls.CIDPathMigrationUnsafe},
	{version: protocol.Version1_3, cid: true, policy: dtls.CIDPathMigrationUnsafe},
}

func listenUDP() (*net.UDPConn, error) { return net.ListenUDP("udp", loopback) }
