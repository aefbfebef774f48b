package pionv3_test

import (
	"net"
	"testing"
	"time"

	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestForgedEpoch0Records: records no stack accepts at epoch 0 once keys
// are agreed, forged from a client's own address, alone or behind a record
// of the current epoch, leave its association alive through the adapter;
// through pion's own listener the ones in Kills end it (pion answers them
// with a fatal alert, or a close_notify).
func TestForgedEpoch0Records(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		kills := []string{"heartbeat", "ack", "unassigned-type-27", "application-data", "heartbeat-behind-epoch-1"}
		if !cidMode {
			// With CIDs pion splits this record at another length, and
			// discards what it then finds.
			kills = append(kills, "tls12_cid")
		}
		dtlstest.Epoch0Suite{
			Listen:     func(t *testing.T) net.Listener { return listen(t) },
			PionListen: pionListen,
			Dial:       dialV3(t, 5*time.Second),
			Kills:      kills,
		}.Run(t)
	})
}
