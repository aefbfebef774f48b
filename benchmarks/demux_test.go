package benchmarks

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v2/udp"
	"golang.org/x/net/ipv4"

	"github.com/straydtls/straydtls/adapters/demux"
)

// clientHello is the smallest datagram that opens an association: an
// epoch-0 handshake record whose handshake header says ClientHello. Both
// listeners make a connection for it.
var clientHello = []byte{
	0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12,
	1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
}

// Each round queues demuxPerPeer datagrams from every peer, which fits in a
// demuxBuffer socket buffer (rmem_max here) without loss.
const (
	demuxBuffer  = 4 << 20
	demuxPerPeer = 8
)

// noHandshake hands the per-peer conn itself to Accept: the benchmark
// measures demultiplexing, not DTLS.
func noHandshake(_ context.Context, c *demux.Conn) (net.Conn, error) { return c, nil }

// BenchmarkDemux compares the v2 adapter's demultiplexer (demux.Listener,
// which pionv2.Listen is) with pion/transport's udp.Listener (which pion's
// dtls.Listen is): datagrams from 256 established peers, queued in the
// socket, delivered to each peer's reader. Only delivery is timed.
func BenchmarkDemux(b *testing.B) {
	const peers = 256
	for _, impl := range []string{"pion", "straydtls"} {
		b.Run("peers="+strconv.Itoa(peers)+"/impl="+impl, func(b *testing.B) {
			var ln net.Listener
			var err error
			laddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
			// pion's listener opens its own socket and can only ask for a
			// buffer up to net.core.rmem_max; both get the same.
			if impl == "pion" {
				ln, err = (&udp.ListenConfig{ReadBufferSize: demuxBuffer, Backlog: peers}).Listen("udp4", laddr)
			} else {
				var pc *net.UDPConn
				pc, err = net.ListenUDP("udp4", laddr)
				if err == nil {
					pc.SetReadBuffer(demuxBuffer)
					ln, err = demux.NewListener(pc, noHandshake, demux.WithBacklog(peers), demux.WithMaxPendingHandshakes(peers))
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()

			// Establish the peers: one ClientHello each, then accept.
			senders := make([]*net.UDPConn, peers)
			for i := range senders {
				s, err := net.DialUDP("udp4", nil, ln.Addr().(*net.UDPAddr))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				senders[i] = s
				if _, err := s.Write(clientHello); err != nil {
					b.Fatal(err)
				}
			}
			conns := make([]net.Conn, peers)
			for i := range conns {
				c, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
				buf := make([]byte, 2048)
				c.Read(buf) // the ClientHello
			}

			batches := make([]*ipv4.PacketConn, peers)
			for i, s := range senders {
				batches[i] = ipv4.NewPacketConn(s)
			}
			ms := make([]ipv4.Message, 8)
			for i := range ms {
				ms[i].Buffers = [][]byte{payload}
			}
			// One reader per peer, started once; each round it reads its
			// share and reports.
			var round sync.WaitGroup
			goCh := make([]chan struct{}, peers)
			for i, c := range conns {
				goCh[i] = make(chan struct{}, 1)
				go func() {
					buf := make([]byte, 2048)
					for range goCh[i] {
						c.SetReadDeadline(time.Now().Add(10 * time.Second))
						for range demuxPerPeer {
							if _, err := c.Read(buf); err != nil {
								b.Error(err)
								break
							}
						}
						round.Done()
					}
				}()
			}
			defer func() {
				for _, ch := range goCh {
					close(ch)
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			var timed time.Duration
			delivered := 0
			for delivered < b.N {
				b.StopTimer()
				for _, s := range batches {
					for sent := 0; sent < demuxPerPeer; {
						k, err := s.WriteBatch(ms[:min(len(ms), demuxPerPeer-sent)], 0)
						if err != nil {
							b.Fatal(err)
						}
						sent += k
					}
				}
				round.Add(peers)
				b.StartTimer()
				t0 := time.Now()
				for _, ch := range goCh {
					ch <- struct{}{}
				}
				round.Wait()
				timed += time.Since(t0)
				delivered += demuxPerPeer * peers
			}
			b.ReportMetric(float64(delivered)/timed.Seconds(), "pkts/s")
		})
	}
}
