package pionv4_test

import (
	"net"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestForgedEpoch0Records: records no stack accepts at epoch 0 once keys
// are agreed, forged from a client's own address, alone or behind a record
// of the current epoch, leave its association alive through the adapter,
// which drops them (but an epoch-0 ACK, which a DTLS 1.3 stack may take).
// pion v4 discards them all itself too, unlike v2 and v3: the adapter's
// rule stands for the stacks that act on them.
func TestForgedEpoch0Records(t *testing.T) {
	inModes(t, allModes, func(t *testing.T) {
		var ln *demux.Listener
		dtlstest.Epoch0Suite{
			Listen: func(t *testing.T) net.Listener {
				ln = listen(t)
				return ln
			},
			PionListen: pionListen,
			Dial:       dialV4(t, 5*time.Second),
		}.Run(t)
		if n, want := ln.Stats().Invalid, uint64(len(dtlstest.Epoch0Forgeries())-1); n != want {
			t.Fatalf("the adapter dropped %d forgeries, want %d", n, want)
		}
	})
}
