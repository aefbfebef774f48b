package pionv4_test

import (
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv4"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestChaos runs clients that open, exchange, close and reconnect (every
// other association from the same addr:port) through a network that drops,
// duplicates and reorders, against the v4 adapter, in DTLS 1.2 and 1.3 and
// with CIDs through a NAT that rebinds. Replay a failure with
// go test -run TestChaos ./adapters/pionv4 -args -chaos.seed=N.
func TestChaos(t *testing.T) {
	inModes(t, allModes, func(t *testing.T) {
		dtlstest.RunChaosAdapter(t, func(opts ...demux.Option) (*demux.Listener, error) {
			pc, err := listenUDP()
			if err != nil {
				return nil, err
			}
			return pionv4.NewListener(pc, serverOptions(t), opts...)
		}, dialV4(t, 5*time.Second), cur.cid)
	})
}
