package pionv3_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestCloseEcho: a client whose server's close_notify was lost learns of
// the close on its next write through pionv3.Listen, and not through pion
// v3's own listener (dtlstest.CloseEchoSuite).
func TestCloseEcho(t *testing.T) {
	dtlstest.CloseEchoSuite{
		Listen: listen,
		PionListen: func(t *testing.T) net.Listener {
			ln, err := dtls.Listen("udp", loopback, dtlstest.ServerV3(t))
			if err != nil {
				t.Fatal(err)
			}
			return ln
		},
		Dial: dtlstest.DialV3(t, 5*time.Second),
	}.Run(t)
}
