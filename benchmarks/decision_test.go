package benchmarks

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/strayfilter"
)

// appData is an epoch-1 application-data record header and a little body:
// what a live peer sends, and what a quiet peer's stray looks like.
var appData = []byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 7, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}

func quietPeer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1024+i%60000))
}

func livePeer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>16)%16, byte(i >> 8), byte(i)}), 5684)
}

// filterWith returns a filter whose table holds n quiet peers. The
// underlying conn is never used: Drop is the decision alone.
func filterWith(b *testing.B, n int) *strayfilter.Conn {
	b.Helper()
	table, err := conntrack.New(conntrack.WithMaxQuietPeers(max(n, 1)), conntrack.WithQuietPeriod(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		table.MarkClosed(quietPeer(i))
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close() })
	c, err := strayfilter.New(pc, strayfilter.WithTable(table))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkDecision is the per-datagram cost of the filter's decision: an
// empty table, then 1k, 100k and 1M quiet peers, for a datagram from a live
// peer (miss: it passes) and for a stray from a quiet one (hit: inspected
// and dropped), on one core and on all.
func BenchmarkDecision(b *testing.B) {
	for _, n := range []int{0, 1_000, 100_000, 1_000_000} {
		c := filterWith(b, n)
		for _, kind := range []string{"miss", "hit"} {
			if n == 0 && kind == "hit" {
				continue
			}
			peerFor := livePeer
			wantDrop := false
			if kind == "hit" {
				peerFor, wantDrop = quietPeer, true
			}
			// A ring of distinct peers, so lookups are not all one cache line.
			const ring = 4096
			peers := make([]netip.AddrPort, ring)
			for i := range peers {
				peers[i] = peerFor(i * max(n, 1) / ring)
			}
			name := fmt.Sprintf("peers=%d/%s", n, kind)
			b.Run(name+"/serial", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if c.Drop(peers[i&(ring-1)], appData) != wantDrop {
						b.Fatal("wrong decision")
					}
					i++
				}
			})
			b.Run(name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				// Each goroutine starts at its own place in the ring: in
				// lockstep they would read the same peers and bump the same
				// drop-counter stripe at once, which real traffic does not.
				var goroutines atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					i := int(goroutines.Add(1)) * 1009
					for pb.Next() {
						if c.Drop(peers[i&(ring-1)], appData) != wantDrop {
							panic("wrong decision")
						}
						i++
					}
				})
			})
		}
	}
}

// BenchmarkBatchDecision is the filter's decision over a batch of 32
// datagrams (strayfilter.Conn.DropBatch, what ReadBatchAddrPort runs on
// each recvmmsg): all from live peers (misses) or all strays from quiet
// peers (hits), with 1,000 quiet peers. The table's clock is read once per
// batch. ns/datagram is ns/op divided by 32.
func BenchmarkBatchDecision(b *testing.B) {
	const n, size = 1000, 32
	c := filterWith(b, n)
	for _, kind := range []string{"miss", "hit"} {
		b.Run("peers=1000/"+kind, func(b *testing.B) {
			batch := strayfilter.NewBatch(size, 64)
			for i := range size {
				batch.N[i] = copy(batch.Bufs[i], appData)
				if kind == "hit" {
					batch.Addrs[i] = quietPeer(i * 31 % n)
				} else {
					batch.Addrs[i] = livePeer(i)
				}
			}
			want := size
			if kind == "hit" {
				want = 0
			}
			b.ReportAllocs()
			for b.Loop() {
				if c.DropBatch(batch, size) != want {
					b.Fatal("wrong decision")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/datagram")
		})
	}
}
