package pionv3_test

import (
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// TestForgedHelloFlood: 20,000 forged ClientHellos from as many loopback
// addresses at 5,000 a second cost no real client its handshake. Before
// staged admission, 128 of them filled every handshake slot for 30 s.
func TestForgedHelloFlood(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		dtlstest.RunAdapterFlood(t, func(t *testing.T) *demux.Listener { return listen(t) }, dialV3(t, 5*time.Second))
	})
}

// TestPionListenerUnderFlood is the same flood against pion's own
// listener, for contrast: run with -flood.contrast.
func TestPionListenerUnderFlood(t *testing.T) {
	if !*dtlstest.FloodContrast {
		t.Skip("pion's own listener keeps every forged handshake; run with -flood.contrast")
	}
	ln, err := dtls.Listen("udp", loopback, fixture.ServerV3(t))
	if err != nil {
		t.Fatal(err)
	}
	dtlstest.RunListenerFlood(t, ln, dtlstest.DialV3(t, 5*time.Second))
}
