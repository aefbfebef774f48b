package benchmarks

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/strayfilter"
)

// zeroConn is a net.PacketConn that costs (almost) nothing: every read
// returns the same datagram from the same address. Over it, the wrapper's
// own cost per read is the difference from the raw conn, which a loopback
// socket's syscall (±5-7 % on this machine) hides.
type zeroConn struct {
	d    []byte
	from *net.UDPAddr
}

func (z *zeroConn) ReadFrom(b []byte) (int, net.Addr, error)  { return copy(b, z.d), z.from, nil }
func (z *zeroConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (z *zeroConn) Close() error                              { return nil }
func (z *zeroConn) LocalAddr() net.Addr                       { return z.from }
func (z *zeroConn) SetDeadline(time.Time) error               { return nil }
func (z *zeroConn) SetReadDeadline(time.Time) error           { return nil }
func (z *zeroConn) SetWriteDeadline(time.Time) error          { return nil }

// forwarder is the least a wrapper can be: a method that calls the wrapped
// conn's. Its cost over raw is the floor that any net.PacketConn wrapper
// pays for its extra (not inlinable) interface call, filter or not.
type forwarder struct{ net.PacketConn }

// BenchmarkHotPath is the per-read cost of ReadFrom over a zero-cost conn,
// raw and wrapped side by side, on one goroutine and on all (RunParallel),
// with an empty table and with 1,000 quiet peers, none of them the reader's
// peer (every read is a miss). Compare impl=wrapped with impl=raw, and
// impl=forward (the floor any wrapper pays) with both: benchstat -col /impl.
func BenchmarkHotPath(b *testing.B) {
	live := &net.UDPAddr{IP: net.IPv4(172, 16, 0, 1), Port: 5684}
	for _, quiet := range []int{0, 1000} {
		for _, impl := range []string{"raw", "forward", "wrapped"} {
			var pc net.PacketConn = &zeroConn{d: appData, from: live}
			if impl == "forward" {
				pc = forwarder{pc}
			}
			if impl == "wrapped" {
				table, err := conntrack.New(conntrack.WithQuietPeriod(time.Hour))
				if err != nil {
					b.Fatal(err)
				}
				for i := range quiet {
					table.MarkClosed(quietPeer(i))
				}
				if pc, err = strayfilter.New(pc, strayfilter.WithTable(table)); err != nil {
					b.Fatal(err)
				}
			}
			name := "quiet=" + strconv.Itoa(quiet) + "/impl=" + impl
			b.Run("readers=serial/"+name, func(b *testing.B) {
				b.ReportAllocs()
				buf := make([]byte, 64)
				for b.Loop() {
					if _, _, err := pc.ReadFrom(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("readers=parallel/"+name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]byte, 64)
					for pb.Next() {
						if _, _, err := pc.ReadFrom(buf); err != nil {
							panic(err)
						}
					}
				})
			})
		}
	}
}
