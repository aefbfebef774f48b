//go:build linux

package strayguard_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/holdback"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayguard"
)

// TestSeedScenario is the seed's failure on the seed's kind of stack, with
// no relay: `echo … | openssl s_client -dtls1_2` against a C DTLS server
// on loopback, each client's close_notify held back and delivered 50 ms
// after it was sent and after the server closed, from the client's own
// address and port. The Mbed TLS server takes the late close_notify as
// the first datagram of a new connection and fails, every time, unless
// strayguard is attached; its log shows each client's own port.
// gnutls-serv and openssl s_server close only when the client does, so the
// late close_notify is no stray to them: they serve every client with or
// without strayguard, which must do them no harm.
func TestSeedScenario(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	n := 20
	if testing.Short() {
		n = 5
	}
	for _, c := range []struct {
		name       string
		start      func(testing.TB) *dtlstest.ExternalServer
		served     func(s *dtlstest.ExternalServer, msg string) bool
		failsAlone bool
	}{
		{"mbedtls", dtlstest.StartMbedTLS, func(s *dtlstest.ExternalServer, _ string) bool { return s.Count("ok") > 0 }, true},
		{"gnutls-serv", dtlstest.StartGnuTLS, func(s *dtlstest.ExternalServer, msg string) bool {
			return s.Count("*** Processing "+fmt.Sprint(len(msg))+" bytes command: "+strings.TrimSpace(msg)) > 0
		}, false},
		{"openssl-s_server", dtlstest.StartOpenSSLServer, func(s *dtlstest.ExternalServer, msg string) bool {
			return s.Count(strings.TrimSpace(msg)) > 0
		}, false},
	} {
		for _, guarded := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/guarded=%v", c.name, guarded), func(t *testing.T) {
				t.Parallel()
				server := c.start(t)
				var g *strayguard.Guard
				if guarded {
					g = attach(t, []uint16{server.Addr.Port()})
				}
				h, err := holdback.New(server.Addr)
				if err != nil {
					if os.Getenv("CI") != "true" {
						t.Skip(err)
					}
					t.Fatal(err)
				}
				defer h.Close()
				failed := 0
				for i := range n {
					msg := fmt.Sprintf("hello %d\n", i)
					fails := server.Count("fail")
					if out, err := dtlstest.OpenSSLClient(server.Addr, msg); err != nil {
						t.Fatalf("client %d: openssl s_client: %v\n%s", i, err, out)
					}
					late, err := h.Next(5 * time.Second)
					if err != nil {
						t.Fatalf("client %d sent no close_notify: %v", i, err)
					}
					server.WaitFor(t, "it served client "+fmt.Sprint(i), func(string) bool { return c.served(server, msg) })
					if c.name == "mbedtls" {
						server.WaitFor(t, "it closed", func(string) bool { return server.Count("ok") == i+1 })
						if !server.Contains("client " + late.From.String()) {
							t.Fatalf("the server's log does not show the client's own address %v:\n%s", late.From, strings.Join(server.Lines(), "\n"))
						}
					}
					time.Sleep(time.Until(late.At.Add(50 * time.Millisecond)))
					strays := strayCount(t, g)
					if err := h.Deliver(late); err != nil {
						t.Fatal(err)
					}
					switch {
					case c.failsAlone && !guarded:
						server.WaitFor(t, "the late close_notify failed a handshake", func(string) bool { return server.Count("fail") > fails })
						failed++
					case g != nil && c.failsAlone:
						dtlstest.WaitFor(t, "the late close_notify dropped", func() bool { return strayCount(t, g) == strays+1 })
					}
				}
				if c.failsAlone {
					failed = server.Count("fail")
				} else {
					// These servers log no failure: what shows one is a
					// client not served. Every client above was (WaitFor);
					// one more shows the last late close_notify broke
					// nothing either.
					msg := "after the last late close_notify\n"
					if out, err := dtlstest.OpenSSLClient(server.Addr, msg); err != nil {
						t.Fatalf("a client after the last late close_notify: %v\n%s", err, out)
					}
					server.WaitFor(t, "it served a client after the last late close_notify", func(string) bool { return c.served(server, msg) })
				}
				t.Logf("%d of %d clients' late close_notify failed the server", failed, n)
				switch {
				case guarded && failed != 0:
					t.Fatalf("%d of %d failed with strayguard attached", failed, n)
				case !guarded && c.failsAlone && failed != n:
					t.Fatalf("%d of %d failed without strayguard; the scenario should fail every one", failed, n)
				}
			})
		}
	}
}

// strayCount is how many late alerts g dropped; 0 without a Guard.
func strayCount(t testing.TB, g *strayguard.Guard) uint64 {
	t.Helper()
	if g == nil {
		return 0
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.Strays[record.ReasonAlert]
}
