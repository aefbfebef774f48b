package pionv3_test

import (
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
)

// TestCloseEcho: the server's close_notify is lost; the client writes on.
// Its datagram is a stray, and the adapter sends it the close_notify
// again: the client's Read fails at once. Behind pion's own listener, and
// with the echo off, it waits for its own timeout.
func TestCloseEcho(t *testing.T) {
	for _, c := range []struct {
		name   string
		listen func(t *testing.T) (net.Listener, func() bool)
		learns bool
	}{
		{"adapter", func(t *testing.T) (net.Listener, func() bool) {
			ln := listen(t)
			return ln, func() bool { return ln.Stats().Filter.QuietPeers == 1 }
		}, true},
		{"adapter-echo-off", func(t *testing.T) (net.Listener, func() bool) {
			ln := listen(t, demux.WithCloseEcho(false))
			return ln, func() bool { return ln.Stats().Filter.QuietPeers == 1 }
		}, false},
		{"pion", func(t *testing.T) (net.Listener, func() bool) {
			ln, err := dtls.Listen("udp", loopback, dtlstest.ServerV3(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			closed := make(chan struct{})
			srv := dtlstest.Serve(ln, true, func(net.Conn) { close(closed) })
			t.Cleanup(func() {
				ln.Close()
				srv.Stop()
			})
			return ln, func() bool {
				select {
				case <-closed:
					return true
				default:
					return false
				}
			}
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, closed := c.listen(t)
			if c.name != "pion" {
				srv := dtlstest.Serve(ln, true, nil)
				t.Cleanup(func() {
					ln.Close()
					srv.Stop()
				})
			}
			wait := 3 * time.Second
			took, err := dtlstest.CloseEcho(t, ln.Addr().(*net.UDPAddr).AddrPort(), closed, dtlstest.DialV3(t, 5*time.Second), wait)
			t.Logf("%s: the client's read ended %v after its write (%v)", c.name, took.Round(100*time.Microsecond), err)
			if learned := err == nil; learned != c.learns {
				t.Fatalf("client learned of the close: %v, want %v", learned, c.learns)
			}
		})
	}
}
