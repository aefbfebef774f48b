package relay_test

import (
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestCloseEcho: a pion client whose server's close_notify was lost, with
// the Mbed TLS server behind the relay, learns of the close on its next
// write: the relay kept the server's close_notify and sends it again. With
// the echo off, and with the Mbed TLS server alone, the client waits for
// its own timeout.
func TestCloseEcho(t *testing.T) {
	for _, c := range []struct {
		name   string
		relay  bool
		opts   []relay.Option
		learns bool
	}{
		{"relay", true, nil, true},
		{"relay-echo-off", true, []relay.Option{relay.WithCloseEcho(false)}, false},
		{"mbedtls", false, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			mbed := dtlstest.StartMbedTLS(t)
			server, closed := mbed.Addr, func() bool { return mbed.Count("ok") == 1 }
			var r *relay.Relay
			if c.relay {
				r = start(t, "127.0.0.1:0", mbed.Addr, c.opts...)
				server, closed = addrOf(r), func() bool { return r.Stats().ServerClosed == 1 }
			}
			took, err := dtlstest.CloseEcho(t, server, closed, dtlstest.DialV3(t, 5*time.Second), dtlstest.CloseEchoWait)
			t.Logf("%s: the client's read ended %v after its write (%v)", c.name, took.Round(100*time.Microsecond), err)
			if learned := err == nil; learned != c.learns {
				t.Fatalf("client learned of the close: %v, want %v", learned, c.learns)
			}
			// The client answers the echoed close_notify with its own, a
			// second stray that may earn a second echo: at least one.
			if r != nil {
				if s := r.Stats(); (s.Echoes >= 1) != c.learns {
					t.Fatalf("relay sent %d echoes, want some: %v", s.Echoes, c.learns)
				}
			}
		})
	}
}
