// pion/dtls v4.0.2's client races on its own state under a network that
// drops, duplicates and reorders: when it generates its first flight again
// (flight13.flight1Generate calls State13.ResetConnectionIDs, which writes
// State13.CID) while its reader unpacks a datagram (Conn.unpackDatagram
// reads State13.CID.Negotiated), with no lock between them. The race
// detector reports that inside pion's client, not in this module. The
// chaos run makes it happen, so it runs without -race; .ci/run runs it on
// its own.

//go:build !race

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
