package pionv4_test

import (
	"net"
	"testing"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/record"
)

// TestForgedHelloFlood: 20,000 forged ClientHellos from as many loopback
// addresses at 5,000 a second cost no real client its handshake, in DTLS
// 1.2 and 1.3 (where each forged ClientHello gets a HelloRetryRequest).
// pion v4's own listener keeps every forged handshake: run with
// -flood.contrast for TestPionListenerUnderFlood.
func TestForgedHelloFlood(t *testing.T) {
	inModes(t, bothVersions, func(t *testing.T) {
		f := dtlstest.RunAdapterFloodOf(t, dtlstest.ClientHelloV4(t, clientOptions(t)), func(t *testing.T) *demux.Listener { return listen(t) }, dialV4(t, 5*time.Second))
		checkFlood(t, f)
	})
}

// checkFlood holds a flood at full size to the goals: every real client
// served within a second, at most 8,000 goroutines and 128 MiB of live
// heap more than before (pion's own listener: 45,000 to 57,000 goroutines
// and 568 to 859 MiB). Under the race detector and -short the flood is a
// tenth and proves only that the test runs; .ci/run runs it at full size.
func checkFlood(t *testing.T, f *dtlstest.Flood) {
	t.Helper()
	if f.Max() > time.Second {
		t.Errorf("the slowest real handshake took %v", f.Max())
	}
	if f.PeakGo-f.BaseGo > 8000 {
		t.Errorf("peak %d goroutines, %d before", f.PeakGo, f.BaseGo)
	}
	if f.PeakHeap > f.BaseHeap && f.PeakHeap-f.BaseHeap > 128<<20 {
		t.Errorf("peak heap %.0f MiB, %.0f MiB before", float64(f.PeakHeap)/(1<<20), float64(f.BaseHeap)/(1<<20))
	}
}

// TestPionListenerUnderFlood is the same flood against pion v4's own
// listener, for contrast.
func TestPionListenerUnderFlood(t *testing.T) {
	if !*dtlstest.FloodContrast {
		t.Skip("pion's own listener keeps every forged handshake; run with -flood.contrast")
	}
	inModes(t, bothVersions, func(t *testing.T) {
		dtlstest.RunListenerFloodOf(t, dtlstest.ClientHelloV4(t, clientOptions(t)), pionListen(t), dialV4(t, 5*time.Second))
	})
}

// TestCookieNeverEchoedIsEvictedFirst: a DTLS 1.3 client that gets its
// HelloRetryRequest and never answers stays unverified, and when the
// unverified cap fills it is the one evicted, while a client that echoed
// its cookie is verified and keeps its handshake.
func TestCookieNeverEchoedIsEvictedFirst(t *testing.T) {
	inModes(t, bothVersions[1:], func(t *testing.T) {
		ln := listen(t, demux.WithMaxUnverified(3))
		srv := dtlstest.Serve(ln, false, nil)
		t.Cleanup(func() {
			ln.Close()
			srv.Stop()
		})
		silent, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		if _, err := silent.Write(dtlstest.ClientHelloV4(t, clientOptions(t))); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		silent.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := silent.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if r := record.Inspect(buf[:n]); !r.AsksForCookie() {
			t.Fatalf("the server answered %v, not a HelloRetryRequest", r.Class)
		}
		if st := ln.Stats(); st.Unverified != 1 {
			t.Fatalf("stats %+v; want the silent client unverified", st)
		}
		// A real client, whose cookie echo verifies it, then two more
		// ClientHellos that never echo: the cap of 3 holds the silent
		// one, then evicts it.
		c := dial(t, addrPort(ln.Addr()))
		defer c.Close()
		dtlstest.EchoOnce(t, c, "verified")
		for range 3 {
			other, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			other.Write(dtlstest.ClientHelloV4(t, clientOptions(t)))
		}
		dtlstest.WaitFor(t, "the silent client evicted", func() bool { return ln.Stats().Evicted == 1 })
		st := ln.Stats()
		if st.Verified != 1 || st.Completed != 1 || st.Unverified != 3 {
			t.Fatalf("stats %+v; want the real client verified by its cookie and completed, three silent ones unverified", st)
		}
		dtlstest.EchoOnce(t, c, "still here")
	})
}
