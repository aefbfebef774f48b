package pionv2_test

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
	dtlstest.Epoch0Suite{
		Listen:     func(t *testing.T) net.Listener { return listen(t) },
		PionListen: pionListen,
		Dial:       dtlstest.DialV2(t, 5*time.Second),
		Kills:      []string{"heartbeat", "tls12_cid", "ack", "unassigned-type-27", "application-data", "close_notify", "heartbeat-behind-epoch-1", "close_notify-behind-epoch-1"},
	}.Run(t)
}
