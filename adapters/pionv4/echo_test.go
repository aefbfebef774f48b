package pionv4_test

import (
	"testing"
	"time"

	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestCloseEcho: a client whose server's close_notify was lost learns of
// the close on its next write through pionv4.Listen, and not through pion
// v4's own listener (dtlstest.CloseEchoSuite). In DTLS 1.3 the
// close_notify is encrypted; the adapter keeps the last small record the
// stack wrote before it closed.
func TestCloseEcho(t *testing.T) {
	inModes(t, allModes, func(t *testing.T) {
		dtlstest.CloseEchoSuite{
			Listen:     func(t *testing.T, opts ...demux.Option) *demux.Listener { return listen(t, opts...) },
			PionListen: pionListen,
			Dial:       dialV4(t, 5*time.Second),
			Encrypted:  cur.version == protocol.Version1_3,
		}.Run(t)
	})
}
