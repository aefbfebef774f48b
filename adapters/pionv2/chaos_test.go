package pionv2_test

import (
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv2"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestChaos runs clients that open, exchange, close and reconnect (every
// other association from the same addr:port) through a network that drops,
// duplicates and reorders, against the v2 adapter. Replay a failure with
// go test -run TestChaos ./adapters/pionv2 -args -chaos.seed=N.
func TestChaos(t *testing.T) {
	dtlstest.RunChaosAdapter(t, func(opts ...demux.Option) (*demux.Listener, error) {
		return pionv2.Listen("udp", loopback, dtlstest.ServerV2(t), opts...)
	}, dtlstest.DialV2(t, 5*time.Second))
}
