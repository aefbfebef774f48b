package pionv3_test

import (
	"testing"
	"time"

	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestCloseEcho: a client whose server's close_notify was lost learns of
// the close on its next write through pionv3.Listen, and not through pion
// v3's own listener (dtlstest.CloseEchoSuite).
func TestCloseEcho(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		dtlstest.CloseEchoSuite{
			Listen:     listen,
			PionListen: pionListen,
			Dial:       dialV3(t, 5*time.Second),
		}.Run(t)
	})
}
