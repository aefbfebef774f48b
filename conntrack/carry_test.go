package conntrack_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/straydtls/straydtls/conntrack"
)

// TestQuietPeersCarryOver moves a table's quiet peers into another, as a
// relay hands over to its successor: each stays quiet for what was left
// of its period, no longer, and keeps its alert.
func TestQuietPeersCarryOver(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	old, _ := conntrack.New(conntrack.WithQuietPeriod(10*time.Second), conntrack.WithClock(clock))
	a := netip.MustParseAddrPort("127.0.0.1:1000")
	b := netip.MustParseAddrPort("[::1]:2000")
	zoned := netip.MustParseAddrPort("[fe80::1%lo]:3000")
	alert := []byte{0x15, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 2, 1, 0}
	old.MarkClosedWithAlert(a, alert)
	now = now.Add(4 * time.Second)
	old.MarkClosed(b)
	old.MarkClosed(zoned)
	now = now.Add(time.Second)

	got := old.QuietPeers()
	if len(got) != 2 || got[0].Peer != a || got[1].Peer != b {
		t.Fatalf("QuietPeers = %+v; want %v then %v (the zoned peer left out)", got, a, b)
	}
	if got[0].Closure.Remaining != 5*time.Second || got[1].Closure.Remaining != 9*time.Second {
		t.Errorf("remaining %v and %v; want 5s and 9s", got[0].Closure.Remaining, got[1].Closure.Remaining)
	}
	if !bytes.Equal(got[0].Closure.Alert, alert) || got[1].Closure.Alert != nil {
		t.Errorf("alerts %x and %x; want the kept one and none", got[0].Closure.Alert, got[1].Closure.Alert)
	}

	next, _ := conntrack.New(conntrack.WithQuietPeriod(10*time.Second), conntrack.WithClock(clock))
	for _, q := range got {
		next.Close(q.Peer, q.Closure)
	}
	now = now.Add(5*time.Second - 1)
	if !next.Quiet(a) || !next.Quiet(b) {
		t.Fatal("a carried-over peer is not quiet before its period ends")
	}
	var buf [conntrack.MaxAlert]byte
	if n, ok := next.Stray(a, 100, buf[:]); !ok || !bytes.Equal(buf[:n], alert) {
		t.Error("the carried-over alert is not echoed on the first stray")
	}
	now = now.Add(1)
	if next.Quiet(a) {
		t.Error("a carried-over peer stays quiet past what was left of its period")
	}
	if !next.Quiet(b) {
		t.Error("the peer closed later ended with the first")
	}
}
