package strayfilter_test

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMillionSourcesLeaveMemoryFlat: garbage and strays from a million
// distinct addresses (none of them closed locally) create no state: the
// table keeps its one entry and the heap does not grow.
func TestMillionSourcesLeaveMemoryFlat(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	fc := newFakeConn()
	c, err := strayfilter.New(fc, strayfilter.WithQuietPeriod(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// One quiet peer, so every datagram below takes the lookup path.
	c.MarkClosedAddrPort(netip.MustParseAddrPort("192.0.2.1:1"))
	payloads := [][]byte{
		loadRecord(t, "pion-v2-08-client-alert-epoch1.hex"),
		loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex"),
		loadRecord(t, "synthetic-stun-binding-request.hex"),
		{0xff, 0, 0},
		nil,
	}
	before := heapAlloc()
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if c.Drop(netip.AddrPortFrom(a, uint16(i)), payloads[i%len(payloads)]) {
			t.Fatalf("dropped a datagram from %v, which was never closed", a)
		}
	}
	after := heapAlloc()
	if s := c.Stats(); s.QuietPeers != 1 || s.TotalStrays() != 0 {
		t.Fatalf("stats %+v: want the one quiet peer and no drops", s)
	}
	if grew := int64(after) - int64(before); grew > 256<<10 {
		t.Fatalf("heap grew by %d bytes over %d sources", grew, n)
	}
}

// TestOversizeAndEmptyDatagrams: the largest UDP payload and an empty one,
// from a quiet peer and from a live one, through a real socket.
func TestOversizeAndEmptyDatagrams(t *testing.T) {
	pc := listenLoopback(t)
	c, err := strayfilter.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	quiet := listenLoopback(t)
	defer quiet.Close()
	live := listenLoopback(t)
	defer live.Close()
	pc.SetReadBuffer(4 << 20)
	if err := c.MarkClosed(quiet.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 65507) // the largest IPv4 UDP payload
	big[0] = record.ContentTypeApplicationData
	for _, d := range [][]byte{big, {}} {
		quiet.WriteTo(d, pc.LocalAddr())
		live.WriteTo(d, pc.LocalAddr())
	}
	buf := make([]byte, 70000)
	var got []int
	for range 3 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if addr.String() != live.LocalAddr().String() {
			// The empty datagram is malformed DTLS from a quiet peer.
			t.Fatalf("read %d bytes from %v; only the live peer's should pass", n, addr)
		}
		got = append(got, n)
		if len(got) == 2 {
			break
		}
	}
	if len(got) != 2 || got[0] != len(big) || got[1] != 0 {
		t.Fatalf("live peer's datagrams read as %v bytes, want [%d 0]", got, len(big))
	}
	// The quiet peer's two datagrams were read and dropped on the way.
	if s := c.Stats(); s.TotalStrays() != 2 {
		t.Fatalf("stats %+v: want the quiet peer's 2 datagrams dropped", s)
	}
}

// TestForgedStraysAndTheCloseEcho is what forged datagrams can get out of
// the close echo. A flood from 10,000 sources that are not quiet gets no
// echo and leaves the table as it was. A flood of 10,000 strays forged
// from the quiet peer's own address gets the old alert at most
// conntrack.MaxEchoes times, never more bytes than it sent, and extends
// nothing: the quiet period still ends when it would have.
func TestForgedStraysAndTheCloseEcho(t *testing.T) {
	alert := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	stray := loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex")
	hello := loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex")
	now := time.Unix(1000, 0)
	fc := newFakeConn()
	c, err := strayfilter.New(fc, strayfilter.WithCloseEcho(true), strayfilter.WithQuietPeriod(10*time.Second),
		strayfilter.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	quiet := udpAddr("192.0.2.7:7000")
	c.WriteTo(alert, quiet) // our close_notify: the peer is quiet, the alert kept
	buf := make([]byte, 2048)

	const n = 10_000
	for i := range n {
		from := udpAddr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 4000).String())
		fc.push(stray, from)
		if _, _, err := c.ReadFrom(buf); err != nil { // not quiet: it passes
			t.Fatal(err)
		}
	}
	if s := c.Stats(); s.Echoes != 0 || c.Table().Len() != 1 {
		t.Fatalf("after strays from %d sources that are not quiet: %+v, %d quiet peers", n, s, c.Table().Len())
	}

	go func() { // more than the fake conn's queue holds
		for range n {
			fc.push(stray, quiet)
		}
		fc.push(hello, udpAddr("192.0.2.8:7000"))
	}()
	if _, _, err := c.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	echoes, out := len(fc.written)-1, 0
	for _, w := range fc.written[1:] {
		out += len(w.data)
	}
	fc.mu.Unlock()
	if echoes < 1 || echoes > conntrack.MaxEchoes || out > n*len(stray) {
		t.Fatalf("%d strays forged from the quiet peer got %d echoes, %d bytes; want 1 to %d", n, echoes, out, conntrack.MaxEchoes)
	}
	now = now.Add(10 * time.Second)
	if c.Table().Quiet(quiet.AddrPort()) {
		t.Fatal("the forged strays extended the quiet period")
	}
}
