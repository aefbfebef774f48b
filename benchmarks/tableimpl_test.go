package benchmarks

import (
	"container/list"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
)

// quietSet is what the filter needs of a table of quiet peers; the two
// obvious alternatives to conntrack.Table implement it below, with the
// same semantics (one quiet period, a cap with the oldest evicted, lazy
// expiry), so the benchmark compares like with like.
type quietSet interface {
	Quiet(netip.AddrPort) bool
	MarkClosed(netip.AddrPort) error
	Forget(netip.AddrPort) bool
}

// rwTable is a map under a sync.RWMutex with a FIFO for eviction.
type rwTable struct {
	mu    sync.RWMutex
	m     map[netip.AddrPort]*list.Element
	fifo  list.List // of rwEntry, oldest first
	cap   int
	quiet time.Duration
	base  time.Time
}

type rwEntry struct {
	peer     netip.AddrPort
	deadline int64
}

func newRWTable(cap int, quiet time.Duration) *rwTable {
	return &rwTable{m: make(map[netip.AddrPort]*list.Element), cap: cap, quiet: quiet, base: time.Now()}
}

func (t *rwTable) now() int64 { return int64(time.Since(t.base)) }

func (t *rwTable) Quiet(p netip.AddrPort) bool {
	t.mu.RLock()
	e, ok := t.m[p]
	var deadline int64
	if ok {
		deadline = e.Value.(*rwEntry).deadline
	}
	t.mu.RUnlock()
	return ok && t.now() < deadline
}

func (t *rwTable) MarkClosed(p netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for f := t.fifo.Front(); f != nil && f.Value.(*rwEntry).deadline <= now; f = t.fifo.Front() {
		delete(t.m, f.Value.(*rwEntry).peer)
		t.fifo.Remove(f)
	}
	if e, ok := t.m[p]; ok {
		e.Value.(*rwEntry).deadline = now + int64(t.quiet)
		t.fifo.MoveToBack(e)
		return nil
	}
	if len(t.m) >= t.cap {
		f := t.fifo.Front()
		delete(t.m, f.Value.(*rwEntry).peer)
		t.fifo.Remove(f)
	}
	t.m[p] = t.fifo.PushBack(&rwEntry{p, now + int64(t.quiet)})
	return nil
}

func (t *rwTable) Forget(p netip.AddrPort) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[p]
	if ok {
		delete(t.m, p)
		t.fifo.Remove(e)
	}
	return ok
}

// syncMapTable is a sync.Map of deadlines, with a mutex-guarded FIFO for
// eviction.
type syncMapTable struct {
	m     sync.Map // netip.AddrPort -> int64 deadline
	n     atomic.Int64
	mu    sync.Mutex
	fifo  []netip.AddrPort // oldest first; may hold peers forgotten since
	cap   int
	quiet time.Duration
	base  time.Time
}

func newSyncMapTable(cap int, quiet time.Duration) *syncMapTable {
	return &syncMapTable{cap: cap, quiet: quiet, base: time.Now()}
}

func (t *syncMapTable) now() int64 { return int64(time.Since(t.base)) }

func (t *syncMapTable) Quiet(p netip.AddrPort) bool {
	v, ok := t.m.Load(p)
	return ok && t.now() < v.(int64)
}

func (t *syncMapTable) MarkClosed(p netip.AddrPort) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, loaded := t.m.Swap(p, t.now()+int64(t.quiet)); !loaded {
		t.fifo = append(t.fifo, p)
		for len(t.fifo) > t.cap {
			t.m.Delete(t.fifo[0])
			t.fifo = t.fifo[1:]
		}
	}
	return nil
}

func (t *syncMapTable) Forget(p netip.AddrPort) bool {
	_, ok := t.m.LoadAndDelete(p)
	return ok
}

var tableImpls = []struct {
	name string
	make func(cap int) quietSet
}{
	{"conntrack", func(cap int) quietSet {
		t, err := conntrack.New(conntrack.WithMaxQuietPeers(cap), conntrack.WithQuietPeriod(time.Hour))
		if err != nil {
			panic(err)
		}
		return t
	}},
	{"rwmutex", func(cap int) quietSet { return newRWTable(cap, time.Hour) }},
	{"syncmap", func(cap int) quietSet { return newSyncMapTable(cap, time.Hour) }},
}

// BenchmarkTableImpl compares conntrack.Table with a map under an RWMutex
// and with sync.Map, on the question the filter asks of every datagram
// (Quiet) from all cores at once: a table of 1,000 quiet peers, half the
// questions about them (hits) and half about others (misses), with the
// table left alone (load=read), while a writer closes and forgets 10,000
// peers a second (load=churn10k, a busy server's close rate), and while it
// does so as fast as it can (load=churn, a storm). Readers report ns per
// question; under churn they also report the 99th percentile and the
// slowest question they saw, timed one by one.
func BenchmarkTableImpl(b *testing.B) {
	const quiet, cap = 1000, 4096
	for _, load := range []string{"read", "churn10k", "churn"} {
		for _, impl := range tableImpls {
			b.Run("load="+load+"/impl="+impl.name, func(b *testing.B) {
				t := impl.make(cap)
				for i := range quiet {
					t.MarkClosed(quietPeer(i))
				}
				stop := make(chan struct{})
				var writer sync.WaitGroup
				if load != "read" {
					writer.Add(1)
					go func() {
						defer writer.Done()
						r := rand.New(rand.NewPCG(1, 2))
						tick := time.NewTicker(time.Millisecond)
						defer tick.Stop()
						for n := 0; ; n++ {
							select {
							case <-stop:
								return
							default:
							}
							if load == "churn10k" && n%10 == 0 {
								// Ten writes a millisecond: 10,000 closes a
								// second, a busy server's close rate.
								select {
								case <-stop:
									return
								case <-tick.C:
								}
							}
							p := quietPeer(quiet + r.IntN(8*cap))
							if r.IntN(4) == 0 {
								t.Forget(p)
							} else {
								t.MarkClosed(p)
							}
						}
					}()
				}
				var mu sync.Mutex
				var lat []time.Duration
				var seq atomic.Int64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					r := rand.New(rand.NewPCG(uint64(seq.Add(1)), 3))
					var mine []time.Duration
					for pb.Next() {
						var p netip.AddrPort
						if r.IntN(2) == 0 {
							p = quietPeer(r.IntN(quiet))
						} else {
							p = livePeer(r.IntN(1 << 16))
						}
						if load != "read" && len(mine) < 1<<16 {
							t0 := time.Now()
							t.Quiet(p)
							mine = append(mine, time.Since(t0))
							continue
						}
						t.Quiet(p)
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
				close(stop)
				writer.Wait()
				if len(lat) > 0 {
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
					b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
				}
			})
		}
	}
}

// BenchmarkTableImplMemory is the live heap per quiet peer of each table
// holding 65,536 peers.
func BenchmarkTableImplMemory(b *testing.B) {
	const n = 1 << 16
	for _, impl := range tableImpls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			var per float64
			for range b.N {
				h0, _ := liveHeapAfterGC()
				t := impl.make(n)
				for i := range n {
					t.MarkClosed(quietPeer(i))
				}
				h1, _ := liveHeapAfterGC()
				per += float64(h1-h0) / n
				runtime.KeepAlive(t)
			}
			b.ReportMetric(per/float64(b.N), "B/peer")
			b.ReportMetric(0, "ns/op")
		})
	}
}
