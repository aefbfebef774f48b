package benchmarks

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/straydtls/straydtls/strayfilter"
)

// The loopback benchmarks measure the receiving side only. Before each
// timed chunk, senders fill the receiver's socket buffer (sendmmsg, with the
// timer stopped); the timed part drains it. So the sender can never be the
// bottleneck, even on two cores, and what limits a run is the receive path:
// the syscall, the kernel's copy, and whatever the reader adds.

// chunk is how many datagrams one fill puts in the socket queue; the queue
// is sized to hold them without loss.
const chunk = 8192

var payload = append([]byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 7, 0x00, 0x64}, make([]byte, 100)...)

type rig struct {
	recv    *net.UDPConn
	senders []*ipv4.PacketConn
	closers []*net.UDPConn
	batch   []ipv4.Message
}

func newRig(b *testing.B, senders int) *rig {
	b.Helper()
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	growReadBuffer(b, recv, 64<<20)
	r := &rig{recv: recv}
	for range senders {
		s, err := net.DialUDP("udp4", nil, recv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			b.Fatal(err)
		}
		r.closers = append(r.closers, s)
		r.senders = append(r.senders, ipv4.NewPacketConn(s))
	}
	r.batch = make([]ipv4.Message, 64)
	for i := range r.batch {
		r.batch[i].Buffers = [][]byte{payload}
	}
	b.Cleanup(func() {
		recv.Close()
		for _, s := range r.closers {
			s.Close()
		}
	})
	return r
}

// fill queues n datagrams, spread over the senders, and returns when the
// kernel has them.
func (r *rig) fill(b *testing.B, n int) {
	for sent := 0; sent < n; {
		s := r.senders[(sent/len(r.batch))%len(r.senders)]
		k, err := s.WriteBatch(r.batch[:min(len(r.batch), n-sent)], 0)
		if err != nil {
			b.Fatal(err)
		}
		sent += k
	}
}

// drainChunks runs read over b.N datagrams in chunks, timing only reads.
func (r *rig) drainChunks(b *testing.B, read func(n int)) {
	b.ReportAllocs()
	b.ResetTimer()
	var timed time.Duration
	for done := 0; done < b.N; {
		n := min(chunk, b.N-done)
		b.StopTimer()
		r.fill(b, n)
		b.StartTimer()
		t0 := time.Now()
		read(n)
		timed += time.Since(t0)
		done += n
	}
	b.ReportMetric(float64(b.N)/timed.Seconds(), "pkts/s")
}

// quietTable puts 1,000 other peers into their quiet period, so the
// wrapper's lookup runs for every datagram (a miss: the sender is live).
func quietTable(b *testing.B, c *strayfilter.Conn) {
	for i := range 1000 {
		if err := c.MarkClosedAddrPort(quietPeer(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoopbackRead compares one datagram per call: the raw
// *net.UDPConn, the wrapper with an empty table, and the wrapper with 1,000
// quiet peers, for ReadFrom (which allocates a *net.UDPAddr per datagram in
// the standard library) and ReadFromUDPAddrPort (which does not).
func BenchmarkLoopbackRead(b *testing.B) {
	for _, api := range []string{"ReadFrom", "ReadFromUDPAddrPort"} {
		for _, impl := range []string{"raw", "wrapped", "wrapped-1kquiet"} {
			b.Run("api="+api+"/impl="+impl, func(b *testing.B) {
				r := newRig(b, 2)
				var read func([]byte) error
				var ap func([]byte) (int, netip.AddrPort, error)
				var rf func([]byte) (int, net.Addr, error)
				if impl == "raw" {
					ap, rf = r.recv.ReadFromUDPAddrPort, r.recv.ReadFrom
				} else {
					c, err := strayfilter.New(r.recv)
					if err != nil {
						b.Fatal(err)
					}
					if impl == "wrapped-1kquiet" {
						quietTable(b, c)
					}
					ap, rf = c.ReadFromUDPAddrPort, c.ReadFrom
				}
				if api == "ReadFrom" {
					read = func(p []byte) error { _, _, err := rf(p); return err }
				} else {
					read = func(p []byte) error { _, _, err := ap(p); return err }
				}
				buf := make([]byte, 2048)
				r.drainChunks(b, func(n int) {
					for range n {
						if err := read(buf); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkLoopbackBatch compares batch reads: x/net's ReadBatch on the raw
// socket; the wrapper's ReadBatch (also x/net, so also a *net.UDPAddr per
// datagram) with an empty table and with 1,000 quiet peers, where every
// datagram is looked up; and the wrapper's ReadBatchAddrPort (its own
// recvmmsg, no allocation) with 1,000 quiet peers.
func BenchmarkLoopbackBatch(b *testing.B) {
	for _, size := range []int{8, 32, 64} {
		for _, impl := range []string{"raw", "wrapped", "wrapped-1kquiet", "addrport-1kquiet"} {
			b.Run("size="+strconv.Itoa(size)+"/impl="+impl, func(b *testing.B) {
				r := newRig(b, 2)
				ms := make([]ipv4.Message, size)
				for i := range ms {
					ms[i].Buffers = [][]byte{make([]byte, 2048)}
				}
				var readBatch func() (int, error)
				if impl == "raw" {
					pc := ipv4.NewPacketConn(r.recv)
					readBatch = func() (int, error) { return pc.ReadBatch(ms, 0) }
				} else {
					c, err := strayfilter.New(r.recv)
					if err != nil {
						b.Fatal(err)
					}
					if impl != "wrapped" {
						quietTable(b, c)
					}
					readBatch = func() (int, error) { return c.ReadBatch(ms, 0) }
					if impl == "addrport-1kquiet" {
						batch := strayfilter.NewBatch(size, 2048)
						readBatch = func() (int, error) { return c.ReadBatchAddrPort(batch) }
					}
				}
				r.drainChunks(b, func(n int) {
					for got := 0; got < n; {
						k, err := readBatch()
						if err != nil {
							b.Fatal(err)
						}
						got += k
					}
				})
			})
		}
	}
}
