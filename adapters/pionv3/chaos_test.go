package pionv3_test

import (
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestChaos runs clients that open, exchange, close and reconnect (every
// other association from the same addr:port) through a network that drops,
// duplicates and reorders, against the v3 adapter. Replay a failure with
// go test -run TestChaos ./adapters/pionv3 -args -chaos.seed=N.
func TestChaos(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		dtlstest.RunChaosAdapter(t, func(opts ...demux.Option) (*demux.Listener, error) {
			return pionv3.Listen("udp", loopback, serverConfig(t), opts...)
		}, dialV3(t, 5*time.Second), cidMode)
	})
}
