package benchmarks

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"
	dtlsnetv3 "github.com/pion/dtls/v3/pkg/net"
	dtlsv4 "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/adapters/pionv4"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// The pion benchmarks put each adapter beside pion's own listener of the
// same version, server and clients in one process over loopback, so both
// pay the same cryptography and the difference is the listener's.

var loopbackAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}

// stack is one pion version's server, both ways, and its client.
type stack struct {
	name string
	// listen starts pion's own listener (adapter false) or the adapter's.
	listen func(b *testing.B, adapter bool) net.Listener
	// dial runs a client handshake over a socket connected to the server.
	dial func(b *testing.B) func(uc *net.UDPConn) (net.Conn, error)
}

func pionStacks() []stack {
	v4 := func(name string, v protocol.Version) stack {
		return stack{name: name,
			listen: func(b *testing.B, adapter bool) net.Listener {
				var ln net.Listener
				var err error
				if adapter {
					ln, err = pionv4.ListenAddr("udp", loopbackAddr, fixture.ServerV4At(b, v)...)
				} else {
					ln, err = dtlsv4.ListenAddr("udp", loopbackAddr, fixture.ServerV4At(b, v)...)
				}
				if err != nil {
					b.Fatal(err)
				}
				return ln
			},
			dial: func(b *testing.B) func(uc *net.UDPConn) (net.Conn, error) {
				return dtlstest.DialV4(fixture.ClientV4At(b, v), 10*time.Second)
			}}
	}
	return []stack{
		{name: "v3",
			listen: func(b *testing.B, adapter bool) net.Listener {
				var ln net.Listener
				var err error
				if adapter {
					ln, err = pionv3.Listen("udp", loopbackAddr, fixture.ServerV3(b))
				} else {
					ln, err = dtlsv3.Listen("udp", loopbackAddr, fixture.ServerV3(b))
				}
				if err != nil {
					b.Fatal(err)
				}
				return ln
			},
			dial: func(b *testing.B) func(uc *net.UDPConn) (net.Conn, error) {
				cfg := fixture.ClientV3(b)
				return func(uc *net.UDPConn) (net.Conn, error) {
					c, err := dtlsv3.Client(dtlsnetv3.PacketConnFromConn(uc), uc.RemoteAddr(), cfg)
					if err != nil {
						return nil, err
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					return c, c.HandshakeContext(ctx)
				}
			}},
		v4("v4-dtls12", protocol.Version1_2),
		v4("v4-dtls13", protocol.Version1_3),
	}
}

// serveEcho echoes on every connection ln accepts (dtlstest.Serve), which
// completes pion's lazy handshake first as an application that reads does;
// stop closes ln and returns when every connection ended.
func serveEcho(ln net.Listener) (stop func()) {
	srv := dtlstest.Serve(ln, false, nil)
	return func() {
		ln.Close()
		srv.Stop()
	}
}

// BenchmarkHandshakes is full handshakes a second, pion's own listener
// beside the adapter of the same version, with 1, 16 and 64 clients
// handshaking at once, each on a new socket: an op is one handshake and
// one echo (so the server has run its side), and the client closing.
func BenchmarkHandshakes(b *testing.B) {
	for _, s := range pionStacks() {
		for _, clients := range []int{1, 16, 64} {
			for _, impl := range []string{"pion", "adapter"} {
				b.Run(fmt.Sprintf("stack=%s/clients=%d/impl=%s", s.name, clients, impl), func(b *testing.B) {
					ln := s.listen(b, impl == "adapter")
					stop := serveEcho(ln)
					defer stop()
					dial := s.dial(b)
					addr := ln.Addr().(*net.UDPAddr)
					var next atomic.Int64
					var wg sync.WaitGroup
					var failed atomic.Int64
					b.ReportAllocs()
					b.ResetTimer()
					start := time.Now()
					for range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							buf := make([]byte, 64)
							for next.Add(1) <= int64(b.N) {
								uc, err := net.DialUDP("udp", nil, addr)
								if err != nil {
									failed.Add(1)
									continue
								}
								c, err := dial(uc)
								if err == nil {
									_, err = c.Write([]byte("ping"))
								}
								if err == nil {
									c.SetReadDeadline(time.Now().Add(10 * time.Second))
									_, err = c.Read(buf)
								}
								if err != nil {
									failed.Add(1)
								}
								if c != nil {
									c.Close()
								}
								uc.Close()
							}
						}()
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					if n := failed.Load(); n > 0 {
						b.Fatalf("%d of %d handshakes failed", n, b.N)
					}
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "handshakes/s")
				})
			}
		}
	}
}

// BenchmarkEcho is echoed records a second over established associations,
// pion's own listener beside the adapter: one op is one record there and
// back, from 1 or 16 clients at once.
func BenchmarkEcho(b *testing.B) {
	msg := make([]byte, 100)
	for _, s := range pionStacks() {
		for _, clients := range []int{1, 16} {
			for _, impl := range []string{"pion", "adapter"} {
				b.Run(fmt.Sprintf("stack=%s/clients=%d/impl=%s", s.name, clients, impl), func(b *testing.B) {
					ln := s.listen(b, impl == "adapter")
					stop := serveEcho(ln)
					defer stop()
					dial := s.dial(b)
					conns := make([]net.Conn, clients)
					for i := range conns {
						uc, err := net.DialUDP("udp", nil, ln.Addr().(*net.UDPAddr))
						if err != nil {
							b.Fatal(err)
						}
						c, err := dial(uc)
						if err != nil {
							b.Fatal(err)
						}
						defer c.Close()
						conns[i] = c
					}
					var next atomic.Int64
					var wg sync.WaitGroup
					var failed atomic.Int64
					b.SetBytes(int64(len(msg)))
					b.ReportAllocs()
					b.ResetTimer()
					start := time.Now()
					for _, c := range conns {
						wg.Add(1)
						go func() {
							defer wg.Done()
							buf := make([]byte, 2048)
							for next.Add(1) <= int64(b.N) {
								c.SetReadDeadline(time.Now().Add(5 * time.Second))
								if _, err := c.Write(msg); err != nil {
									failed.Add(1)
									return
								}
								if _, err := c.Read(buf); err != nil {
									failed.Add(1)
									return
								}
							}
						}()
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					if n := failed.Load(); n > 0 {
						b.Fatalf("%d clients failed", n)
					}
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
				})
			}
		}
	}
}
