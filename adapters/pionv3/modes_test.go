package pionv3_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// cidMode switches this package's server and client configs to Connection
// IDs (RFC 9146), so the suites that bothModes runs pass with CIDs too.
// The package's tests do not run in parallel.
var cidMode bool

func serverConfig(t testing.TB) *dtls.Config {
	if cidMode {
		return fixture.ServerV3CID(t)
	}
	return fixture.ServerV3(t)
}

func clientConfig(t testing.TB) *dtls.Config {
	if cidMode {
		return fixture.ClientV3CID(t)
	}
	return fixture.ClientV3(t)
}

// dialV3 is dtlstest.DialV3 with the mode's client config.
func dialV3(t testing.TB, timeout time.Duration) func(uc *net.UDPConn) (net.Conn, error) {
	return dtlstest.DialV3With(clientConfig(t), timeout)
}

// bothModes runs f as subtest "plain", then as "cid" with Connection IDs
// in every config the package's helpers make.
func bothModes(t *testing.T, f func(t *testing.T)) {
	for _, on := range []bool{false, true} {
		name := "plain"
		if on {
			name = "cid"
		}
		t.Run(name, func(t *testing.T) {
			cidMode = on
			defer func() { cidMode = false }()
			f(t)
		})
	}
}
