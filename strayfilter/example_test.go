package strayfilter_test

import (
	"bytes"
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/conntrack"
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
	fmt.Println(conn.Stats().Peers, "quiet peers")
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

// Inspect tells what a datagram's first record is.
func ExampleInspect() {
	// The first 25 bytes of a DTLS 1.2 ClientHello: record header (type 22,
	// version fefd, epoch 0, sequence 0, length 0x71) and handshake header.
	clientHello := []byte{
		0x16, 0xfe, 0xfd, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0x00, 0x0c,
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	}
	closeNotify := []byte{0x15, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 1, 0x00, 0x02, 0xaa, 0xbb}
	stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}
	for _, d := range [][]byte{clientHello, closeNotify, stun} {
		r := strayfilter.Inspect(d)
		fmt.Println(r.Class, r.Epoch, r.OpensAssociation(), r.Protected())
	}
	// Output:
	// handshake 0 true false
	// alert 1 false true
	// not-dtls 0 false false
}

// ClientRandom tells a late copy of a handshake's ClientHello (same random)
// from a client starting a new handshake on the same addr:port.
func ExampleClientRandom() {
	hello := func(fill byte) []byte {
		d := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 46, // record header
			0x01, 0, 0, 34, 0, 0, 0, 0, 0, 0, 0, 34, // handshake header
			0xfe, 0xfd} // client_version, then the 32-byte random
		return append(d, bytes.Repeat([]byte{fill}, 32)...)
	}
	first, _ := strayfilter.ClientRandom(hello(1))
	copyOfFirst, _ := strayfilter.ClientRandom(hello(1))
	newHandshake, _ := strayfilter.ClientRandom(hello(2))
	fmt.Println(first == copyOfFirst, first == newHandshake)
	// Output: true false
}

// CarriesClosingAlert is how the filter learns a close from what our side
// sends.
func ExampleCarriesClosingAlert() {
	encryptedAlert := []byte{0x15, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 1, 0x00, 0x02, 0xaa, 0xbb}
	appData := []byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 2, 0x00, 0x01, 0xcc}
	fmt.Println(strayfilter.CarriesClosingAlert(encryptedAlert), strayfilter.CarriesClosingAlert(appData))
	// Output: true false
}

// Stats counts what the filter passed and dropped, by reason.
func ExampleConn_Stats() {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	conn, _ := strayfilter.New(pc)
	defer conn.Close()
	s := conn.Stats()
	fmt.Println(s.Passed, s.DroppedTotal(), s.Dropped[strayfilter.ReasonAlert])
	// Output: 0 0 0
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
