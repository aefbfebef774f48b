package conntrack

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTable(t testing.TB, opts ...Option) (*Table, *fakeClock) {
	t.Helper()
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	tab, err := New(append([]Option{WithClock(c.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return tab, c
}

func peer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1000+i%50000))
}

func TestQuietPeriodExpires(t *testing.T) {
	tab, clk := newTable(t, WithQuietPeriod(10*time.Second))
	p := netip.MustParseAddrPort("192.0.2.1:4444")
	if tab.Quiet(p) {
		t.Fatal("peer quiet before Close")
	}
	if err := tab.MarkClosed(p); err != nil {
		t.Fatal(err)
	}
	if !tab.Quiet(p) {
		t.Fatal("peer not quiet right after Close")
	}
	clk.advance(10*time.Second - 1)
	if !tab.Quiet(p) {
		t.Fatal("peer not quiet 1ns before the end of its quiet period")
	}
	clk.advance(1)
	if tab.Quiet(p) {
		t.Fatal("peer still quiet at the end of its quiet period")
	}
	if n := tab.Len(); n != 0 {
		t.Fatalf("Len after expiry = %d, want 0", n)
	}
	if s := tab.Stats(); s.Expired != 1 || s.Closes != 1 {
		t.Fatalf("stats = %+v, want 1 close and 1 expiry", s)
	}
}

func TestReCloseRestartsQuietPeriod(t *testing.T) {
	tab, clk := newTable(t, WithQuietPeriod(10*time.Second))
	a := netip.MustParseAddrPort("192.0.2.1:1")
	b := netip.MustParseAddrPort("192.0.2.2:2")
	mustClose(t, tab, a)
	clk.advance(5 * time.Second)
	mustClose(t, tab, b)
	mustClose(t, tab, a) // restart: a now expires after b
	clk.advance(6 * time.Second)
	if !tab.Quiet(a) || !tab.Quiet(b) {
		t.Fatal("both peers should still be quiet 11s after a's first close")
	}
	clk.advance(4 * time.Second) // 15s: b expires, a (restarted at 5s) too
	if tab.Quiet(b) {
		t.Fatal("b quiet after its period")
	}
	if tab.Quiet(a) {
		t.Fatal("a quiet after its restarted period")
	}
	if n := tab.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0", n)
	}
}

func TestReCloseKeepsFIFOInDeadlineOrder(t *testing.T) {
	tab, clk := newTable(t, WithQuietPeriod(10*time.Second))
	a, b := peer(1), peer(2)
	mustClose(t, tab, a)
	mustClose(t, tab, b)
	clk.advance(time.Second)
	mustClose(t, tab, a) // a moves behind b
	clk.advance(9 * time.Second)
	// b's period (0s..10s) is over, a's (1s..11s) is not: the sweep must
	// stop at a without skipping it.
	if got := tab.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1", got)
	}
	if !tab.Quiet(a) || tab.Quiet(b) {
		t.Fatalf("quiet(a)=%v quiet(b)=%v, want true false", tab.Quiet(a), tab.Quiet(b))
	}
}

func TestForget(t *testing.T) {
	tab, _ := newTable(t)
	p := peer(7)
	if tab.Forget(p) {
		t.Fatal("Forget of an unknown peer reported true")
	}
	mustClose(t, tab, p)
	if !tab.Forget(p) {
		t.Fatal("Forget of a quiet peer reported false")
	}
	if tab.Quiet(p) {
		t.Fatal("peer quiet after Forget")
	}
	if s := tab.Stats(); s.Forgets != 1 || s.QuietPeers != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestEvictionAtCap(t *testing.T) {
	tab, clk := newTable(t, WithMaxQuietPeers(3))
	for i := range 3 {
		mustClose(t, tab, peer(i))
		clk.advance(time.Millisecond)
	}
	mustClose(t, tab, peer(0)) // restart: peer(1) is now the oldest
	mustClose(t, tab, peer(3))
	if tab.Quiet(peer(1)) {
		t.Fatal("oldest entry not evicted at the cap")
	}
	for _, i := range []int{0, 2, 3} {
		if !tab.Quiet(peer(i)) {
			t.Fatalf("peer %d evicted, want only peer 1", i)
		}
	}
	s := tab.Stats()
	if s.Evictions != 1 || s.QuietPeers != 3 {
		t.Fatalf("stats = %+v, want 1 eviction and 3 entries", s)
	}
}

func TestMillionClosesStayAtCap(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const max = 1000
	tab, _ := newTable(t, WithMaxQuietPeers(max))
	for i := range 1_000_000 {
		mustClose(t, tab, peer(i))
	}
	s := tab.Stats()
	if s.QuietPeers != max || s.Evictions != 1_000_000-max {
		t.Fatalf("stats = %+v, want Len %d and %d evictions", s, max, 1_000_000-max)
	}
	if got := len(tab.st.Load().entries); got != max {
		t.Fatalf("storage grew to %d entries, want %d", got, max)
	}
	for i := 1_000_000 - max; i < 1_000_000; i++ {
		if !tab.Quiet(peer(i)) {
			t.Fatalf("recent peer %d not quiet", i)
		}
	}
}

func TestDualStackUnmapping(t *testing.T) {
	tab, _ := newTable(t)
	v4 := netip.MustParseAddrPort("192.0.2.9:5684")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.9]:5684")
	mustClose(t, tab, mapped)
	if !tab.Quiet(v4) {
		t.Fatal("IPv4 form of a closed mapped peer is not quiet")
	}
	if !tab.Forget(v4) {
		t.Fatal("Forget by IPv4 form missed the mapped entry")
	}
	if tab.Len() != 0 {
		t.Fatal("entry left after Forget")
	}
	// Different port, different peer.
	mustClose(t, tab, v4)
	if tab.Quiet(netip.MustParseAddrPort("192.0.2.9:5685")) {
		t.Fatal("another port of the same host is quiet")
	}
	// A real IPv6 peer is not confused with IPv4.
	if tab.Quiet(netip.MustParseAddrPort("[2001:db8::c000:209]:5684")) {
		t.Fatal("IPv6 peer matched an IPv4 entry")
	}
}

func TestZonesAreDistinctPeers(t *testing.T) {
	tab, _ := newTable(t)
	mustClose(t, tab, netip.MustParseAddrPort("[fe80::1%eth0]:5684"))
	if tab.Quiet(netip.MustParseAddrPort("[fe80::1%eth1]:5684")) {
		t.Fatal("peer on another interface is quiet")
	}
	if tab.Quiet(netip.MustParseAddrPort("[fe80::1]:5684")) {
		t.Fatal("zoneless peer matched a zoned entry")
	}
	if !tab.Quiet(netip.MustParseAddrPort("[fe80::1%eth0]:5684")) {
		t.Fatal("same zoned peer not quiet")
	}
}

func TestInvalidInput(t *testing.T) {
	tab, _ := newTable(t)
	err := tab.MarkClosed(netip.AddrPort{})
	if !errors.Is(err, ErrInvalidPeer) {
		t.Fatalf("Close(invalid) = %v, want ErrInvalidPeer", err)
	}
	if tab.Forget(netip.AddrPort{}) {
		t.Fatal("Forget(invalid) = true")
	}
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithQuietPeriod(0), "quiet period 0s"},
		{WithQuietPeriod(-time.Second), "quiet period -1s"},
		{WithMaxQuietPeers(0), "max quiet peers 0"},
		{WithMaxQuietPeers(-5), "max quiet peers -5"},
		{WithMaxQuietPeers(1<<30 + 1), "max quiet peers 1073741825"},
		{WithClock(nil), "clock"},
	} {
		_, err := New(tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: err = %v, want it to name %q", err, tc.want)
		}
	}
}

// TestModel drives the table with random operations and compares every
// answer with a plain map that knows each peer's deadline and the FIFO.
func TestModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			max := 1 + rng.IntN(40)
			quiet := time.Duration(1+rng.IntN(100)) * time.Millisecond
			tab, clk := newTable(t, WithMaxQuietPeers(max), WithQuietPeriod(quiet))
			type mentry struct {
				deadline time.Time
				order    int
			}
			model := map[netip.AddrPort]mentry{}
			order := 0
			var evictions uint64
			expire := func() {
				for p, e := range model {
					if !clk.now().Before(e.deadline) {
						delete(model, p)
					}
				}
			}
			for step := range 5000 {
				p := peer(rng.IntN(60))
				switch op := rng.IntN(10); {
				case op < 4:
					expire()
					if _, ok := model[p]; !ok && len(model) >= max {
						var oldest netip.AddrPort
						first := true
						for q, e := range model {
							if first || e.order < model[oldest].order {
								oldest, first = q, false
							}
						}
						delete(model, oldest)
						evictions++
					}
					order++
					model[p] = mentry{clk.now().Add(quiet), order}
					mustClose(t, tab, p)
				case op < 5:
					expire()
					_, want := model[p]
					delete(model, p)
					if got := tab.Forget(p); got != want {
						t.Fatalf("step %d: Forget(%v) = %v, want %v", step, p, got, want)
					}
				case op < 7:
					clk.advance(time.Duration(rng.IntN(int(quiet/4) + 1)))
				default:
					e, ok := model[p]
					want := ok && clk.now().Before(e.deadline)
					if got := tab.Quiet(p); got != want {
						t.Fatalf("step %d: Quiet(%v) = %v, want %v", step, p, got, want)
					}
				}
				if step%97 == 0 {
					expire()
					if got := tab.Len(); got != len(model) {
						t.Fatalf("step %d: Len = %d, want %d", step, got, len(model))
					}
				}
			}
			if got := tab.Stats().Evictions; got != evictions {
				t.Fatalf("evictions = %d, want %d", got, evictions)
			}
		})
	}
}

// TestConcurrentReadersSeeStableAnswers runs readers against writers that
// churn the table (growth, index rebuilds, backward-shift deletions) while
// the clock moves, within the quiet period. Peers closed once and never
// touched again must always be quiet; peers never closed must never be.
// Evictions and expiries, which end stable peers' quiet periods too, are
// TestConcurrentReadersUnderEviction's. Run with -race.
func TestConcurrentReadersSeeStableAnswers(t *testing.T) {
	tab, clock := newTable(t, WithMaxQuietPeers(100_000), WithQuietPeriod(time.Hour))
	const stable = 500
	for i := range stable {
		mustClose(t, tab, peer(i))
	}
	stop := make(chan struct{})
	var writers, readers sync.WaitGroup
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for n := 0; n < 20_000; n++ {
				clock.advance(time.Millisecond) // 40 s in all: no quiet period ends
				p := peer(10_000 + rng.IntN(5_000))
				if rng.IntN(3) == 0 {
					tab.Forget(p)
				} else if err := tab.MarkClosed(p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var bad atomic.Int64
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !tab.Quiet(peer(rng.IntN(stable))) {
					bad.Add(1)
				}
				if tab.Quiet(peer(50_000 + rng.IntN(1000))) {
					bad.Add(1)
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d wrong answers under concurrent writes", n)
	}
	if s := tab.Stats(); s.Forgets == 0 || s.Evictions != 0 || s.Expired != 0 {
		t.Fatalf("stats %+v: the churn should forget, and neither evict nor expire", s)
	}
}

// TestConcurrentReadersUnderEviction is the same under evictions (a cap of
// 256 against 5,000 churned peers, the clock moving 1 ms per write) and
// expiries (a 1 s quiet period, and a 2 s jump every 1,000 writes): peers
// never closed must never be quiet,
// and a peer read concurrently with its own eviction or expiry is either
// quiet or not, never a torn mix of two entries.
func TestConcurrentReadersUnderEviction(t *testing.T) {
	tab, clock := newTable(t, WithMaxQuietPeers(256), WithQuietPeriod(time.Second))
	stop := make(chan struct{})
	var writers, readers sync.WaitGroup
	var reads, bad, churnQuiet atomic.Int64
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			// Writes go on until the readers have read a good deal, and
			// found churned peers quiet, while they do: on two cores a fast
			// writer could otherwise finish first.
			for n := 0; n < 20_000 || (reads.Load() < 200_000 || churnQuiet.Load() == 0) && n < 2_000_000; n++ {
				clock.advance(time.Millisecond)
				if n%1000 == 999 {
					clock.advance(2 * time.Second) // everything expires
				}
				if err := tab.MarkClosed(peer(10_000 + rng.IntN(5_000))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 4))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if tab.Quiet(peer(50_000 + rng.IntN(1000))) {
					bad.Add(1)
				}
				if tab.Quiet(peer(10_000 + rng.IntN(5_000))) {
					churnQuiet.Add(1)
				}
				reads.Add(1)
			}
		}()
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d never-closed peers read as quiet under evictions", n)
	}
	s := tab.Stats()
	if s.Evictions == 0 || s.Expired == 0 || churnQuiet.Load() == 0 {
		t.Fatalf("stats %+v, %d churned peers read quiet: the test did not evict, expire and hit", s, churnQuiet.Load())
	}
	t.Logf("%d evictions, %d expiries, %d quiet answers for churned peers", s.Evictions, s.Expired, churnQuiet.Load())
}

func mustClose(t testing.TB, tab *Table, p netip.AddrPort) {
	t.Helper()
	if err := tab.MarkClosed(p); err != nil {
		t.Fatal(err)
	}
}

// TestLongestQuietPeriod: the longest quiet period a time.Duration allows
// keeps a peer quiet; now + quiet used to overflow into the past, and the
// peer was not quiet at all.
func TestLongestQuietPeriod(t *testing.T) {
	tab, clock := newTable(t, WithQuietPeriod(math.MaxInt64))
	mustClose(t, tab, peer(1))
	clock.advance(100 * 365 * 24 * time.Hour)
	if !tab.Quiet(peer(1)) {
		t.Fatal("a peer with the longest quiet period is not quiet")
	}
}

// TestStrayEchoes: a quiet peer's closing alert is due again on its 1st,
// 2nd, 4th, 8th... stray, at most MaxEchoes times, and never beyond the
// bytes the peer sent; a restart begins afresh, a peer without a kept
// alert gets none, and nothing is due after the quiet period or a Forget.
func TestStrayEchoes(t *testing.T) {
	tab, clock := newTable(t, WithQuietPeriod(time.Minute))
	alert := []byte("a 39-byte close_notify, encrypted.....!")
	if err := tab.MarkClosedWithAlert(peer(1), alert); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, MaxAlert)
	var due []int
	for n := 1; n <= 100; n++ {
		if k, ok := tab.Stray(peer(1), len(alert), buf); ok {
			if string(buf[:k]) != string(alert) {
				t.Fatalf("stray %d: echoed %q", n, buf[:k])
			}
			due = append(due, n)
		}
	}
	if want := []int{1, 2, 4, 8, 16, 32}; fmt.Sprint(due) != fmt.Sprint(want) {
		t.Fatalf("echoes on strays %v, want %v", due, want)
	}
	if s := tab.Stats(); s.Echoes != MaxEchoes {
		t.Fatalf("stats %+v", s)
	}
	// Small strays earn an echo only once their bytes add up.
	tab.MarkClosedWithAlert(peer(1), alert) // restart: afresh
	due = due[:0]
	for n := 1; n <= 16; n++ {
		if _, ok := tab.Stray(peer(1), 10, buf); ok {
			due = append(due, n)
		}
	}
	if want := []int{4, 8, 16}; fmt.Sprint(due) != fmt.Sprint(want) {
		t.Fatalf("10-byte strays: echoes on %v, want %v (40 bytes in for each 39 out)", due, want)
	}
	mustClose(t, tab, peer(2)) // no alert kept
	if _, ok := tab.Stray(peer(2), 100, buf); ok {
		t.Fatal("an echo for a peer without an alert")
	}
	tab.MarkClosedWithAlert(peer(3), make([]byte, MaxAlert+1))
	if _, ok := tab.Stray(peer(3), 1000, buf); ok {
		t.Fatal("an alert longer than MaxAlert was kept")
	}
	tab.MarkClosedWithAlert(peer(4), alert)
	tab.Forget(peer(4))
	if _, ok := tab.Stray(peer(4), 100, buf); ok {
		t.Fatal("an echo after Forget")
	}
	tab.MarkClosedWithAlert(peer(5), alert)
	clock.advance(time.Minute)
	if _, ok := tab.Stray(peer(5), 100, buf); ok {
		t.Fatal("an echo after the quiet period")
	}
	if _, ok := tab.Stray(peer(6), 100, buf); ok {
		t.Fatal("an echo for a peer never closed")
	}
}

// LateHello names exactly the ClientHello of the association whose close
// started the quiet period: not another random, not after the period, not
// after a re-close that names none, and not for an entry whose slot an
// evicted peer left to another.
func TestLateHello(t *testing.T) {
	tab, clk := newTable(t, WithQuietPeriod(10*time.Second), WithMaxQuietPeers(2))
	p := netip.MustParseAddrPort("192.0.2.1:4444")
	old := [32]byte{1, 2, 3}
	other := [32]byte{1, 2, 4}
	if tab.LateHello(p, old) {
		t.Fatal("a late hello from a peer never closed")
	}
	if err := tab.Close(p, Closure{ClientRandom: old, HasRandom: true}); err != nil {
		t.Fatal(err)
	}
	if !tab.LateHello(p, old) || tab.LateHello(p, other) || tab.LateHello(peer(7), old) {
		t.Fatal("LateHello does not name exactly the closed handshake's random from its peer")
	}
	clk.advance(10 * time.Second)
	if tab.LateHello(p, old) {
		t.Fatal("a late hello after the quiet period")
	}
	mustClose(t, tab, p) // no random: a restart forgets the old one
	if tab.Quiet(p) != true || tab.LateHello(p, old) {
		t.Fatal("a close without a random kept the last one's")
	}
	// The slot an evicted peer leaves keeps nothing of it.
	tab.Close(peer(1), Closure{ClientRandom: old, HasRandom: true})
	tab.Close(peer(2), Closure{})
	tab.Close(peer(3), Closure{}) // evicts p, then peer(1) at the next
	tab.Close(peer(4), Closure{})
	for _, q := range []netip.AddrPort{p, peer(1), peer(3), peer(4)} {
		if tab.LateHello(q, old) {
			t.Fatalf("%v: a late hello left by an evicted entry", q)
		}
	}
	if n := testing.AllocsPerRun(100, func() { tab.LateHello(peer(4), old) }); n != 0 {
		t.Fatalf("LateHello allocates %v times", n)
	}
}
