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
