package pionv3_test

import (
	"errors"
	"fmt"
	"log"
	"net"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/pionv3"
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

// echo serves one echo on ln and sends it msg from a pion client.
func echo(ln net.Listener, msg string) string {
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
	client.Write([]byte(msg))
	buf := make([]byte, 1500)
	n, err := client.Read(buf)
	if err != nil {
		log.Fatal(err)
	}
	return string(buf[:n])
}

// Switching from pion's listener is one line: pionv3.Listen in place of
// dtls.Listen. Accept returns *dtls.Conn values whose handshake completed.
func ExampleListen() {
	// ln, err := dtls.Listen("udp", laddr, config) // before
	ln, err := pionv3.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, pskConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Printf("echo: %s; associations: %d\n", echo(ln, "hello"), ln.Stats().Created)
	// Output: echo: hello; associations: 1
}

// A config with a ConnectionIDGenerator is refused: the adapter routes by
// address and cannot follow a connection ID to a new one.
func ExampleNewListener() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	config := pskConfig()
	config.ConnectionIDGenerator = dtls.RandomCIDGenerator(8)
	_, err = pionv3.NewListener(pc, config)
	fmt.Println(errors.Is(err, pionv3.ErrConnectionIDUnsupported))
	// Output: true
}

// pion's own dtls.NewListener can sit on the adapter's packet listener, for
// code that must keep pion's listener type. Handshakes then run lazily and
// unbounded, as pion runs them; prefer Listen or NewListener.
func ExampleNewPacketListener() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	inner, err := pionv3.NewPacketListener(pc)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := dtls.NewListener(inner, pskConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Printf("echo: %s\n", echo(ln, "hello"))
	// Output: echo: hello
}
