package pionv2_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v2"

	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestCloseEcho: a client whose server's close_notify was lost learns of
// the close on its next write through pionv2.Listen, and not through pion
// v3's own listener (dtlstest.CloseEchoSuite).
func TestCloseEcho(t *testing.T) {
	dtlstest.CloseEchoSuite{
		Listen: listen,
		PionListen: func(t *testing.T) net.Listener {
			ln, err := dtls.Listen("udp", loopback, dtlstest.ServerV2(t))
			if err != nil {
				t.Fatal(err)
			}
			return ln
		},
		Dial: dtlstest.DialV2(t, 5*time.Second),
	}.Run(t)
}
