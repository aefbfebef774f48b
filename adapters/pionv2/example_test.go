package pionv2_test

import (
	"fmt"
	"log"
	"net"

	"github.com/pion/dtls/v2"

	"github.com/straydtls/straydtls/adapters/pionv2"
)

// pskConfig is a pre-shared-key config, so the example needs no
// certificate; any *dtls.Config pion accepts works the same way.
func pskConfig() *dtls.Config {
	return &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return []byte{0xab, 0xc1, 0x23}, nil },
		PSKIdentityHint: []byte("example"),
		CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
	}
}

// Switching from pion's listener is one line: pionv2.Listen in place of
// dtls.Listen. Accept returns established *dtls.Conn values.
func ExampleListen() {
	// ln, err := dtls.Listen("udp", laddr, config) // before
	ln, err := pionv2.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, pskConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 1500)
		n, _ := conn.Read(buf)
		conn.Write(buf[:n])
	}()

	client, err := dtls.Dial("udp", ln.Addr().(*net.UDPAddr), pskConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("hello"))
	buf := make([]byte, 1500)
	n, err := client.Read(buf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("echo: %s; associations: %d\n", buf[:n], ln.Stats().Created)
	// Output: echo: hello; associations: 1
}

// NewListener serves on a socket the caller made, here one with a larger
// receive buffer. The listener owns it from now on.
func ExampleNewListener() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	if err := pc.SetReadBuffer(1 << 20); err != nil {
		log.Fatal(err)
	}
	ln, err := pionv2.NewListener(pc, pskConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(ln.Addr() == pc.LocalAddr())
	// Output: true
}
