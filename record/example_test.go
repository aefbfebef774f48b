package record_test

import (
	"bytes"
	"fmt"

	"github.com/straydtls/straydtls/record"
)

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
		r := record.Inspect(d)
		fmt.Println(r.Class, r.Epoch, r.OpensAssociation(), r.Protected())
	}
	// Output:
	// handshake 0 true false
	// alert 1 false true
	// not-dtls 0 false false
}

// The client random tells a late copy of a handshake's ClientHello (same
// random) from a client starting a new handshake on the same addr:port.
func ExampleRecord_ClientHello() {
	hello := func(fill byte) []byte {
		d := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 46, // record header
			0x01, 0, 0, 34, 0, 0, 0, 0, 0, 0, 0, 34, // handshake header
			0xfe, 0xfd} // client_version, then the 32-byte random
		return append(d, bytes.Repeat([]byte{fill}, 32)...)
	}
	random := func(d []byte) [32]byte {
		r := record.Inspect(d)
		ch, _ := r.ClientHello(d)
		return ch.Random
	}
	first, copyOfFirst, newHandshake := random(hello(1)), random(hello(1)), random(hello(2))
	fmt.Println(first == copyOfFirst, first == newHandshake)
	// Output: true false
}

// CarriesClosingAlert is how the stray filter learns a close from what our
// side sends.
func ExampleCarriesClosingAlert() {
	encryptedAlert := []byte{0x15, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 1, 0x00, 0x02, 0xaa, 0xbb}
	appData := []byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 2, 0x00, 0x01, 0xcc}
	fmt.Println(record.CarriesClosingAlert(encryptedAlert), record.CarriesClosingAlert(appData))
	// Output: true false
}

// A DTLS 1.3 ClientHello whose extensions run past its first fragment
// (pion v4's second ClientHello: a post-quantum key share fills the first
// datagram, and the cookie extension is in the second): Scan keeps where
// the walk stopped, and Resume goes on in the next fragment.
func ExampleRecord_Resume() {
	// A ClientHello with a 1,200-byte key share, then a 4-byte cookie
	// extension, sent as two fragments.
	body := append([]byte{0xfe, 0xfd}, make([]byte, 32)...)          // client_version, random
	body = append(body, 0, 0, 0, 2, 0x13, 0x01, 1, 0)                // session ID, cookie, suites, compression
	exts := append([]byte{0, 51, 0x04, 0xb0}, make([]byte, 1200)...) // key_share
	exts = append(exts, 0, 44, 0, 6, 0, 4, 'c', 'o', 'o', 'k')       // cookie
	body = append(append(body, byte(len(exts)>>8), byte(len(exts))), exts...)
	fragment := func(from, to int) []byte {
		n := to - from
		d := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, byte((12 + n) >> 8), byte(12 + n),
			1, 0, byte(len(body) >> 8), byte(len(body)), 0, 1, 0, byte(from >> 8), byte(from), 0, byte(n >> 8), byte(n)}
		return append(d, body[from:to]...)
	}
	first, second := fragment(0, 1100), fragment(1100, len(body))

	r := record.Inspect(first)
	ch, _ := r.ClientHello(first)
	fmt.Println("first fragment: cookie known", ch.CookieRead, "more to read", r.Scan().Pending())
	next := record.Inspect(second)
	if next.Resume(second, r.Scan()) {
		cookie, _ := next.Cookie(second)
		fmt.Printf("second fragment: cookie %q\n", cookie)
	}
	// Output:
	// first fragment: cookie known false more to read true
	// second fragment: cookie "cook"
}

// CarriesApplicationTraffic tells a server's handshake flight from its
// first record after the handshake: in DTLS 1.3 epoch 2 is the flight,
// epoch 3 the application's.
func ExampleCarriesApplicationTraffic() {
	unified := func(epochBits byte) []byte {
		return append([]byte{0x2c | epochBits, 0, 1, 0, 16}, make([]byte, 16)...)
	}
	fmt.Println(record.CarriesApplicationTraffic(unified(2)), record.CarriesApplicationTraffic(unified(3)))
	// Output: false true
}

// ConnectionID reads the CID of a DTLS 1.2 tls12_cid record and of a DTLS
// 1.3 unified header alike, for a receiver whose CIDs are 4 bytes long.
func ExampleConnectionID() {
	tls12 := []byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 'a', 'b', 'c', 'd', 0, 1, 0}
	dtls13 := []byte{0x3f, 'w', 'x', 'y', 'z', 0, 1, 0, 1, 0}
	for _, d := range [][]byte{tls12, dtls13} {
		cid, ok := record.ConnectionID(d, 4)
		fmt.Printf("%s %v %v\n", cid, ok, record.HasConnectionID(d))
	}
	// Output:
	// abcd true true
	// wxyz true true
}

// A datagram handed from layer to layer carries its Parsed, so that the
// first layer that needs the record parses it and the others read that.
func ExampleParsed() {
	datagram := []byte{0x15, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 1, 0x00, 0x02, 0xaa, 0xbb}
	var p record.Parsed
	filter := func(d []byte, p *record.Parsed) bool { return p.Record(d).Protected() }
	count := func(d []byte, p *record.Parsed) string { return p.Record(d).Reason().String() }
	fmt.Println(p.Done())
	fmt.Println(filter(datagram, &p), p.Done())
	fmt.Println(count(datagram, &p)) // read from the record filter parsed
	p.Reset()                        // before the next datagram
	fmt.Println(p.Done())
	// Output:
	// false
	// true true
	// alert
	// false
}
