package benchmarks

import (
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	dtlsv2 "github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/crypto/selfsign"
	dtlsv3 "github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv2"
	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/adapters/relay"
	"github.com/straydtls/straydtls/internal/spoof"
)

// BenchmarkUnverifiedCost measures what one forged ClientHello costs while
// its association waits to be evicted or to time out: the live heap,
// goroutine stacks, goroutines and descriptors of 512 unverified
// associations opened by real pion ClientHellos from 512 forged loopback
// sources, divided by 512. (Not in the heap: the kernel's socket per relay
// association.)
// In the adapters it is a pion server handshake that has sent its
// HelloVerifyRequest; in the relay, an upstream socket and its pump.
func BenchmarkUnverifiedCost(b *testing.B) {
	const n = 512
	hello := clientHelloBytes(b)
	for _, c := range []struct {
		name  string
		start func(b *testing.B) (target netip.AddrPort, unverified func() int, stop func())
	}{
		{"pionv2", func(b *testing.B) (netip.AddrPort, func() int, func()) {
			ln, err := pionv2.Listen("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &dtlsv2.Config{Certificates: certs(b)}, demux.WithMaxUnverified(n))
			if err != nil {
				b.Fatal(err)
			}
			return ln.Addr().(*net.UDPAddr).AddrPort(), func() int { return ln.Stats().Unverified }, func() { ln.Close() }
		}},
		{"pionv3", func(b *testing.B) (netip.AddrPort, func() int, func()) {
			ln, err := pionv3.Listen("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &dtlsv3.Config{Certificates: certs(b)}, demux.WithMaxUnverified(n))
			if err != nil {
				b.Fatal(err)
			}
			return ln.Addr().(*net.UDPAddr).AddrPort(), func() int { return ln.Stats().Unverified }, func() { ln.Close() }
		}},
		{"relay", func(b *testing.B) (netip.AddrPort, func() int, func()) {
			// An upstream that never answers: every association stays
			// unverified.
			sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			r, err := relay.Listen("udp4", "127.0.0.1:0", sink.LocalAddr().String(), relay.WithMaxUnverified(n))
			if err != nil {
				b.Fatal(err)
			}
			go r.Serve()
			return r.Addr().(*net.UDPAddr).AddrPort(), func() int { return r.Stats().Unverified }, func() { r.Close(); sink.Close() }
		}},
	} {
		b.Run("component="+c.name, func(b *testing.B) {
			var heap, stack, goroutines, fds float64
			for range b.N {
				target, unverified, stop := c.start(b)
				h0, s0 := liveHeapAfterGC()
				g0, f0 := runtime.NumGoroutine(), openFDs()
				for i := range n {
					if err := spoof.Send(spoof.Source(i), target, hello); err != nil {
						b.Fatal(err)
					}
					// One at a time: a burst would overflow the socket buffer.
					deadline := time.Now().Add(time.Second)
					for unverified() <= i {
						if time.Now().After(deadline) {
							b.Fatalf("forged ClientHello %d opened no association (%d unverified)", i, unverified())
						}
						runtime.Gosched()
					}
				}
				// Let every handshake send its HelloVerifyRequest and park.
				time.Sleep(100 * time.Millisecond)
				h1, s1 := liveHeapAfterGC()
				heap += float64(h1-h0) / n
				stack += float64(s1-s0) / n
				goroutines += float64(runtime.NumGoroutine()-g0) / n
				fds += float64(openFDs()-f0) / n
				stop()
			}
			b.ReportMetric(heap/float64(b.N), "B/unverified")
			b.ReportMetric(stack/float64(b.N), "stack-B/unverified")
			b.ReportMetric(goroutines/float64(b.N), "goroutines/unverified")
			b.ReportMetric(fds/float64(b.N), "fds/unverified")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// liveHeapAfterGC returns the live heap and the goroutine stacks in use.
func liveHeapAfterGC() (heap, stack int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.StackInuse)
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func certs(b *testing.B) []tls.Certificate {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		b.Fatal(err)
	}
	return []tls.Certificate{cert}
}

// clientHelloBytes catches the first datagram of a real pion v3 client: a
// ClientHello without cookie, the same for every forged source (each
// source is a peer of its own).
func clientHelloBytes(b *testing.B) []byte {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	c, err := dtlsv3.Dial("udp4", sink.LocalAddr().(*net.UDPAddr), &dtlsv3.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	go c.Handshake()
	buf := make([]byte, 2048)
	sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, _, err := sink.ReadFromUDPAddrPort(buf)
	if err != nil {
		b.Fatal(err)
	}
	return buf[:m]
}
