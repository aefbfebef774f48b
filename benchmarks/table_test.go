package benchmarks

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
)

// BenchmarkTableClose is the cost of putting one peer into its quiet period,
// with the table below its cap ("fill": entries are added and the index
// grows) and at it ("evict": every Close evicts the oldest entry), and of
// restarting an existing peer's period ("reclose").
func BenchmarkTableClose(b *testing.B) {
	const cap = 1 << 16
	b.Run("case=fill", func(b *testing.B) {
		b.ReportAllocs()
		var t *conntrack.Table
		for i := range b.N {
			if i%cap == 0 {
				b.StopTimer()
				t = newTable(b, cap)
				b.StartTimer()
			}
			t.MarkClosed(quietPeer(i % cap))
		}
	})
	// A full table: every Close of a new peer evicts the oldest; a Close
	// of a peer already in it restarts that peer's period. The timed loops
	// call Close directly, with nothing of the harness in between.
	full := func(b *testing.B) *conntrack.Table {
		t := newTable(b, cap)
		for i := range cap {
			t.MarkClosed(quietPeer(i))
		}
		b.ReportAllocs()
		b.ResetTimer()
		return t
	}
	b.Run("case=evict", func(b *testing.B) {
		t := full(b)
		for i := range b.N {
			t.MarkClosed(quietPeer(cap + i))
		}
	})
	b.Run("case=reclose", func(b *testing.B) {
		t := full(b)
		for i := range b.N {
			t.MarkClosed(quietPeer(i % cap))
		}
	})
}

// BenchmarkTableMemory reports the heap a full table costs per quiet peer,
// measured as the live heap after filling it minus the live heap before,
// without a closing alert and with one kept for the close echo.
func BenchmarkTableMemory(b *testing.B) {
	// A DTLS 1.2 AES-GCM close_notify: what the close echo keeps per peer.
	closeNotify := make([]byte, 39)
	for _, alert := range [][]byte{nil, closeNotify} {
		for _, n := range []int{1 << 10, 1 << 16, 1 << 20} {
			name := "alert=none/peers=" + strconv.Itoa(n)
			if alert != nil {
				name = "alert=" + strconv.Itoa(len(alert)) + "B/peers=" + strconv.Itoa(n)
			}
			b.Run(name, func(b *testing.B) { tableMemory(b, n, alert) })
		}
	}
}

func tableMemory(b *testing.B, n int, alert []byte) {
	var perPeer float64
	for range b.N {
		before := liveHeap()
		t := newTable(b, n)
		for i := range n {
			t.MarkClosedWithAlert(quietPeer(i), alert)
		}
		after := liveHeap()
		if t.Len() != n {
			b.Fatalf("Len = %d, want %d", t.Len(), n)
		}
		runtime.KeepAlive(t)
		perPeer = float64(after-before) / float64(n)
	}
	b.ReportMetric(perPeer, "B/peer")
}

// BenchmarkMillionCloses is the wall time of one million Close calls for
// distinct peers into a table with the default cap: the table fills, then
// evicts for the rest.
func BenchmarkMillionCloses(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		t := newTable(b, conntrack.DefaultMaxQuietPeers)
		b.StartTimer()
		for i := range 1_000_000 {
			t.MarkClosed(quietPeer(i))
		}
		if t.Len() != conntrack.DefaultMaxQuietPeers {
			b.Fatalf("Len = %d, want the cap %d", t.Len(), conntrack.DefaultMaxQuietPeers)
		}
	}
}

func newTable(b *testing.B, cap int) *conntrack.Table {
	t, err := conntrack.New(conntrack.WithMaxQuietPeers(cap), conntrack.WithQuietPeriod(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
