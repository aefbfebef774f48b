package pionv2_test

import (
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestForgedHelloFlood: 20,000 forged ClientHellos from as many loopback
// addresses at 5,000 a second cost no real client its handshake. Before
// staged admission, 128 of them filled every handshake slot for 30 s.
func TestForgedHelloFlood(t *testing.T) {
	dtlstest.RunAdapterFlood(t, func(t *testing.T) *demux.Listener { return listen(t) }, dtlstest.DialV2(t, 5*time.Second))
}
