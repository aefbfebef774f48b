package strayfilter_test

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straydtls/straydtls/internal/captured"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

// fakeConn is an in-memory net.PacketConn: tests queue datagrams with their
// source and read what the filter returns. Its deadline handling is the
// minimum the filter needs: a read blocks until a datagram, a deadline or
// Close.
type fakeConn struct {
	in       chan fakeDatagram
	mu       sync.Mutex
	written  []fakeDatagram
	deadline time.Time
	wake     chan struct{}
	closed   chan struct{}
	once     sync.Once
}

type fakeDatagram struct {
	data []byte
	addr net.Addr
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan fakeDatagram, 1024), wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (f *fakeConn) push(data []byte, from net.Addr) { f.in <- fakeDatagram{bytes.Clone(data), from} }

func (f *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		f.mu.Lock()
		d := f.deadline
		f.mu.Unlock()
		var timer <-chan time.Time
		if !d.IsZero() {
			if !time.Now().Before(d) {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(time.Until(d))
			defer t.Stop()
			timer = t.C
		}
		select {
		case g := <-f.in:
			return copy(b, g.data), g.addr, nil
		case <-timer:
			return 0, nil, os.ErrDeadlineExceeded
		case <-f.wake:
		case <-f.closed:
			return 0, nil, net.ErrClosed
		}
	}
}

func (f *fakeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	f.mu.Lock()
	f.written = append(f.written, fakeDatagram{bytes.Clone(b), addr})
	f.mu.Unlock()
	return len(b), nil
}

func (f *fakeConn) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeConn) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5684} }

func (f *fakeConn) SetDeadline(t time.Time) error { return f.SetReadDeadline(t) }

func (f *fakeConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.deadline = t
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// testClock is a clock tests move by hand.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func udpAddr(s string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// readAll returns what the filter lets through of the queued datagrams.
func readAll(t *testing.T, c *strayfilter.Conn) []fakeDatagram {
	t.Helper()
	var out []fakeDatagram
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			return out
		}
		out = append(out, fakeDatagram{bytes.Clone(buf[:n]), addr})
	}
}

func TestQuietPeriodEndsAndFilteringStops(t *testing.T) {
	fc, clk := newFakeConn(), newTestClock()
	c, err := strayfilter.New(fc, strayfilter.WithQuietPeriod(10*time.Second), strayfilter.WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	peer := udpAddr("192.0.2.1:1000")
	stray := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	if err := c.MarkClosed(peer); err != nil {
		t.Fatal(err)
	}
	fc.push(stray, peer)
	if got := readAll(t, c); len(got) != 0 {
		t.Fatalf("stray passed during the quiet period")
	}
	clk.advance(10 * time.Second)
	fc.push(stray, peer)
	if got := readAll(t, c); len(got) != 1 {
		t.Fatalf("datagram after the quiet period: %d passed, want 1", len(got))
	}
}

func TestNonDTLSFromQuietPeer(t *testing.T) {
	stun := loadRecord(t, "synthetic-stun-binding-request.hex")
	peer := udpAddr("192.0.2.1:1000")
	for _, drop := range []bool{false, true} {
		fc := newFakeConn()
		c, err := strayfilter.New(fc, strayfilter.WithDropNonDTLS(drop))
		if err != nil {
			t.Fatal(err)
		}
		c.MarkClosed(peer)
		fc.push(stun, peer)
		got := readAll(t, c)
		if passed := len(got) == 1; passed == drop {
			t.Errorf("WithDropNonDTLS(%v): STUN passed = %v", drop, passed)
		}
		if drop && c.Stats().Strays[record.ReasonNotDTLS] != 1 {
			t.Errorf("STUN drop not counted as not-dtls: %+v", c.Stats())
		}
	}
}

// TestExempt: a quiet peer's datagram that the exempt function claims
// passes, uncounted and unechoed, on the single and the batch paths; the
// rest of its strays are dropped; ClientHellos never reach the function.
func TestExempt(t *testing.T) {
	peer := udpAddr("192.0.2.1:1000")
	live := []byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 'l', 'i', 'v', 'e', 0, 1, 0}
	dead := []byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 'd', 'e', 'a', 'd', 0, 1, 0}
	hello := loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex")
	var asked [][]byte
	fc := newFakeConn()
	c, err := strayfilter.New(fc, strayfilter.WithExempt(func(ap netip.AddrPort, p []byte) bool {
		if ap != peer.AddrPort() {
			t.Errorf("asked about %v", ap)
		}
		asked = append(asked, bytes.Clone(p))
		return bytes.Contains(p, []byte("live"))
	}))
	if err != nil {
		t.Fatal(err)
	}
	c.MarkClosed(peer)
	for _, d := range [][]byte{live, dead} {
		fc.push(d, peer)
	}
	got := readAll(t, c)
	if len(got) != 1 || !bytes.Equal(got[0].data, live) {
		t.Fatalf("passed %d datagrams; want the exempt one alone", len(got))
	}
	if s := c.Stats(); s.Strays[record.ReasonConnectionID] != 1 {
		t.Fatalf("strays %+v; want the other CID record alone counted", s.Strays)
	}
	b := strayfilter.NewBatch(4, 64)
	fc.push(live, peer)
	fc.push(dead, peer)
	c.SetReadDeadline(time.Time{})
	n, err := c.ReadBatchAddrPort(b)
	if err != nil || n != 1 || !bytes.Equal(b.Bufs[0][:b.N[0]], live) {
		t.Fatalf("batch: %d datagrams (%v); want the exempt one", n, err)
	}
	readAll(t, c) // what the batch left
	asked = nil
	fc.push(hello, peer)
	readAll(t, c)
	if len(asked) != 0 {
		t.Fatal("a ClientHello was put to the exempt function")
	}
}

func TestDropHookAndLogger(t *testing.T) {
	fc := newFakeConn()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var hooked []record.Reason
	c, err := strayfilter.New(fc, strayfilter.WithLogger(logger), strayfilter.WithDropHook(func(p netip.AddrPort, r record.Reason) {
		if p != netip.MustParseAddrPort("192.0.2.1:1000") {
			t.Errorf("hook got peer %v", p)
		}
		hooked = append(hooked, r)
	}))
	if err != nil {
		t.Fatal(err)
	}
	peer := udpAddr("192.0.2.1:1000")
	c.MarkClosed(peer)
	fc.push(loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex"), peer)
	fc.push(loadRecord(t, "synthetic-dtls13-unified-long.hex"), peer)
	readAll(t, c)
	if len(hooked) != 2 || hooked[0] != record.ReasonApplicationData || hooked[1] != record.ReasonCiphertext {
		t.Fatalf("hook saw %v", hooked)
	}
	if !strings.Contains(logs.String(), "reason=application-data") || !strings.Contains(logs.String(), "peer=192.0.2.1:1000") {
		t.Fatalf("debug log missing the drop:\n%s", logs.String())
	}
}

func TestOutgoingAlertDetection(t *testing.T) {
	alert := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	appData := loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex")
	peer := udpAddr("192.0.2.7:7000")
	for _, on := range []bool{true, false} {
		fc := newFakeConn()
		c, err := strayfilter.New(fc, strayfilter.WithAlertDetection(on))
		if err != nil {
			t.Fatal(err)
		}
		c.WriteTo(appData, peer)
		if c.Table().Quiet(peer.AddrPort()) {
			t.Fatal("application data put the peer into its quiet period")
		}
		c.WriteTo(alert, peer)
		if got := c.Table().Quiet(peer.AddrPort()); got != on {
			t.Errorf("alert detection %v: peer quiet after our alert = %v", on, got)
		}
		fc.mu.Lock()
		if len(fc.written) != 2 || !bytes.Equal(fc.written[1].data, alert) {
			t.Errorf("written datagrams changed: %d", len(fc.written))
		}
		fc.mu.Unlock()
	}
}

// TestIncomingPacketsNeverCreateState: whatever a peer sends, a peer that
// was not closed locally stays out of the table.
func TestIncomingPacketsNeverCreateState(t *testing.T) {
	fc := newFakeConn()
	c, err := strayfilter.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	closed := udpAddr("192.0.2.1:1")
	c.MarkClosed(closed)
	records := loadRecords(t)
	for i, rf := range records {
		fc.push(rf.Data, udpAddr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 9).String()))
	}
	got := readAll(t, c)
	if len(got) != len(records) {
		t.Fatalf("%d of %d datagrams from live peers passed", len(got), len(records))
	}
	for i, g := range got {
		if !bytes.Equal(g.data, records[i].Data) {
			t.Fatalf("datagram %d changed", i)
		}
	}
	if n := c.Table().Len(); n != 1 {
		t.Fatalf("table holds %d peers after incoming traffic, want 1", n)
	}
}

func TestNonUDPAddressesStillWork(t *testing.T) {
	fc := newFakeConn()
	c, err := strayfilter.New(fc)
	if err != nil {
		t.Fatal(err)
	}
	// A transport with its own address type whose String is ip:port.
	peer := customAddr("192.0.2.5:4000")
	if err := c.MarkClosed(peer); err != nil {
		t.Fatal(err)
	}
	fc.push(loadRecord(t, "pion-v2-08-client-alert-epoch1.hex"), peer)
	fc.push(loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex"), peer)
	got := readAll(t, c)
	if len(got) != 1 || got[0].addr != peer {
		t.Fatalf("got %d datagrams, want the ClientHello from the custom address", len(got))
	}
	if _, _, _, _, err := c.ReadMsgUDPAddrPort(nil, nil); err == nil {
		t.Fatal("ReadMsgUDPAddrPort on a non-UDP conn did not fail")
	}
}

type customAddr string

func (a customAddr) Network() string { return "custom" }
func (a customAddr) String() string  { return string(a) }

func TestHotPathDoesNotAllocate(t *testing.T) {
	raw := listenLoopback(t)
	c, err := strayfilter.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	sender := listenLoopback(t)
	// A non-empty table, so the lookup runs; the sender is not quiet.
	for i := range 1000 {
		c.MarkClosedAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1))
	}
	const runs = 100
	payload := loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex")
	for range runs + 1 {
		sender.WriteTo(payload, raw.LocalAddr())
	}
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n := testing.AllocsPerRun(runs, func() {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("ReadFromUDPAddrPort allocates %v times per datagram", n)
	}
}

func loadRecords(t testing.TB) []captured.File { return captured.Records(t, false) }

// TestCloseEcho: with WithCloseEcho, the closing alert our side sent a
// peer goes to it again on its 1st, 2nd and 4th stray, byte for byte, and
// to the peer that sent the stray; a ClientHello ends it all. Without the
// option the Conn writes nothing of its own.
func TestCloseEcho(t *testing.T) {
	alert := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	stray := loadRecord(t, "pion-v2-06-client-application-data-epoch1.hex")
	hello := loadRecord(t, "pion-v2-00-client-ClientHello-frag0.hex")
	peer := udpAddr("192.0.2.7:7000")
	for _, on := range []bool{true, false} {
		fc := newFakeConn()
		c, err := strayfilter.New(fc, strayfilter.WithCloseEcho(on))
		if err != nil {
			t.Fatal(err)
		}
		c.WriteTo(alert, peer) // the server's close_notify, which the client misses
		for range 5 {
			fc.push(stray, peer)
		}
		fc.push(hello, peer)
		buf := make([]byte, 2048)
		if n, _, err := c.ReadFrom(buf); err != nil || !bytes.Equal(buf[:n], hello) {
			t.Fatalf("read %x, %v; want the ClientHello after the strays", buf[:n], err)
		}
		fc.mu.Lock()
		var echoes int
		for _, w := range fc.written[1:] {
			if !bytes.Equal(w.data, alert) || w.addr.String() != peer.String() {
				t.Fatalf("wrote %x to %v", w.data, w.addr)
			}
			echoes++
		}
		fc.mu.Unlock()
		want := 0
		if on {
			want = 3 // the 1st, 2nd and 4th of five strays
		}
		if s := c.Stats(); echoes != want || s.Echoes != uint64(want) || s.TotalStrays() != 5 {
			t.Fatalf("close echo %v: %d echoes written, stats %+v; want %d", on, echoes, s, want)
		}
	}
}
