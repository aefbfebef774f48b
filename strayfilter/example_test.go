package strayfilter_test

import (
	"bytes"
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/conntrack"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

// Wrap the server's socket and hand the wrapper to the DTLS stack in its
// place. The stack's own close_notify teaches the filter which peers to
// quiet.
func ExampleNew() {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	conn, err := strayfilter.New(pc, strayfilter.WithQuietPeriod(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// Give conn to the stack: pion's dtls.Server(conn, peer, config), or an
	// adapter from github.com/straydtls/straydtls/adapters.
	fmt.Println(conn.Stats().QuietPeers, "quiet peers")
	// Output: 0 quiet peers
}

// Bad options are errors that name the bad value.
func ExampleNew_invalidOption() {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer pc.Close()
	_, err := strayfilter.New(pc, strayfilter.WithQuietPeriod(0))
	fmt.Println(err)
	// Output: strayfilter: quiet period 0s must be positive: invalid option
}

// When the stack closes in a way the filter cannot see (DTLS 1.3, tls12_cid,
// no alert), tell it.
func ExampleConn_MarkClosed() {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	conn, _ := strayfilter.New(pc)
	defer conn.Close()
	peer := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5684}
	if err := conn.MarkClosed(peer); err != nil {
		log.Fatal(err)
	}
	fmt.Println(conn.Table().Quiet(peer.AddrPort()))
	// Output: true
}

// A dual-stack server shares one table between its IPv4 and IPv6 sockets,
// so a peer closed on one is quiet on both.
func ExampleWithTable() {
	table, _ := conntrack.New(conntrack.WithQuietPeriod(10 * time.Second))
	pc4, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	pc6, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		fmt.Println(true) // no IPv6 here; the point stands
		return
	}
	c4, _ := strayfilter.New(pc4, strayfilter.WithTable(table))
	c6, _ := strayfilter.New(pc6, strayfilter.WithTable(table))
	defer c4.Close()
	defer c6.Close()
	c4.MarkClosed(&net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5684})
	fmt.Println(c6.Table().Quiet(mustAddrPort("[::ffff:192.0.2.1]:5684")))
	// Output: true
}

// Stats counts what the filter passed and dropped, by reason.
func ExampleConn_Stats() {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	conn, _ := strayfilter.New(pc)
	defer conn.Close()
	s := conn.Stats()
	fmt.Println(s.Passed, s.TotalStrays(), s.Strays[record.ReasonAlert])
	// Output: 0 0 0
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// With WithCloseEcho, a client that keeps sending after the server closed
// its association gets the server's closing alert again.
func ExampleWithCloseEcho() {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	conn, _ := strayfilter.New(pc, strayfilter.WithCloseEcho(true))
	defer conn.Close()
	client, _ := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	defer client.Close()

	// The stack closed the association; its close_notify (an encrypted
	// alert record, here 39 bytes) was lost on the way.
	closeNotify := append([]byte{21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 26}, make([]byte, 26)...)
	conn.MarkClosedWithAlert(client.LocalAddr().(*net.UDPAddr).AddrPort(), closeNotify)

	// The client writes application data on the dead association, then
	// a STUN binding request, which passes (it is not DTLS).
	client.Write(append([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 10, 0, 30}, make([]byte, 30)...))
	client.Write([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	buf := make([]byte, 1500)
	n, _, _ := conn.ReadFrom(buf) // drops the stray, echoes, returns the STUN request
	fmt.Println("server read", n, "bytes")

	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ = client.Read(buf)
	fmt.Println("client got its close_notify again:", bytes.Equal(buf[:n], closeNotify))
	// Output:
	// server read 20 bytes
	// client got its close_notify again: true
}

// MarkClosedWith names what the caller knows of the association that
// ended: its closing alert (for the close echo) and its handshake's client
// random, so that a late copy of its ClientHello is dropped rather than
// taken for a new handshake.
func ExampleConn_MarkClosedWith() {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	conn, _ := strayfilter.New(pc)
	defer conn.Close()
	peer := netip.MustParseAddrPort("192.0.2.1:5684")
	err := conn.MarkClosedWith(peer, conntrack.Closure{ClientRandom: [32]byte{7}, HasRandom: true})
	fmt.Println(err, conn.Table().Quiet(peer), conn.Table().LateHello(peer, [32]byte{7}))
	// Output: <nil> true true
}
