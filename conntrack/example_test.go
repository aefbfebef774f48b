package conntrack_test

import (
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/conntrack"
)

func ExampleNew() {
	table, err := conntrack.New(conntrack.WithQuietPeriod(10*time.Second), conntrack.WithMaxQuietPeers(1000))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(table.QuietPeriod(), table.Cap(), table.Len())
	// Output: 10s 1000 0
}

// Tests move time with an injected clock instead of sleeping.
func ExampleWithClock() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	table, _ := conntrack.New(conntrack.WithQuietPeriod(10*time.Second), conntrack.WithClock(func() time.Time { return now }))
	peer := netip.MustParseAddrPort("192.0.2.1:5684")
	table.MarkClosed(peer)
	now = now.Add(9 * time.Second)
	fmt.Println(table.Quiet(peer))
	now = now.Add(time.Second)
	fmt.Println(table.Quiet(peer))
	// Output:
	// true
	// false
}

func ExampleTable_MarkClosed() {
	table, _ := conntrack.New()
	// The IPv4-mapped form and the IPv4 form are the same peer.
	if err := table.MarkClosed(netip.MustParseAddrPort("[::ffff:192.0.2.1]:5684")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(table.Quiet(netip.MustParseAddrPort("192.0.2.1:5684")))
	fmt.Println(table.MarkClosed(netip.AddrPort{}))
	// Output:
	// true
	// conntrack: close invalid AddrPort: invalid peer address
}

func ExampleTable_Forget() {
	table, _ := conntrack.New()
	peer := netip.MustParseAddrPort("192.0.2.1:5684")
	table.MarkClosed(peer)
	fmt.Println(table.Forget(peer), table.Quiet(peer))
	// Output: true false
}

func ExampleTable_Stats() {
	table, _ := conntrack.New(conntrack.WithMaxQuietPeers(2))
	for port := range uint16(3) {
		table.MarkClosed(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 1000+port))
	}
	s := table.Stats()
	fmt.Println(s.Closes, s.Evictions, s.QuietPeers)
	// Output: 3 1 2
}

// The close echo: a quiet peer's strays earn it the closing alert again on
// its 1st, 2nd, 4th and 8th... stray, never more bytes than it sent.
func ExampleTable_Stray() {
	table, _ := conntrack.New()
	peer := netip.MustParseAddrPort("192.0.2.1:5684")
	closeNotify := make([]byte, 39) // a DTLS 1.2 AES-GCM close_notify
	table.MarkClosedWithAlert(peer, closeNotify)
	var buf [conntrack.MaxAlert]byte
	for i := 1; i <= 10; i++ {
		if n, due := table.Stray(peer, 100, buf[:]); due {
			fmt.Printf("stray %d: send the %d-byte alert again\n", i, n)
		}
	}
	// Output:
	// stray 1: send the 39-byte alert again
	// stray 2: send the 39-byte alert again
	// stray 4: send the 39-byte alert again
	// stray 8: send the 39-byte alert again
}

// A close that names its handshake's client random lets LateHello tell a
// late copy of that handshake's ClientHello (same random) from the client
// starting over (a new one).
func ExampleTable_LateHello() {
	table, _ := conntrack.New()
	peer := netip.MustParseAddrPort("192.0.2.1:5684")
	closed := [32]byte{1, 2, 3}
	table.Close(peer, conntrack.Closure{ClientRandom: closed, HasRandom: true})
	fmt.Println(table.LateHello(peer, closed), table.LateHello(peer, [32]byte{9}))
	// Output: true false
}
