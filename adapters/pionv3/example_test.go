package pionv3_test

import (
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
func echo(ln net.Listener, msg string) string { return echoWith(ln, msg, pskConfig()) }

// echoWith is echo with the client's config.
func echoWith(ln net.Listener, msg string, client *dtls.Config) string {
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
	c, err := dtls.Dial("udp", ln.Addr().(*net.UDPAddr), client)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(msg))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
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

// NewListener serves on a socket of the caller's. With Connection IDs
// (RFC 9146) in the config, records carrying one are routed by it, so a
// client whose NAT moves it to a new port keeps its association.
func ExampleNewListener() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	config := pskConfig()
	config.ConnectionIDGenerator = dtls.RandomCIDGenerator(8)
	ln, err := pionv3.NewListener(pc, config)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	client := pskConfig()
	client.ConnectionIDGenerator = dtls.OnlySendCIDGenerator()
	fmt.Printf("echo: %s\n", echoWith(ln, "hello", client))
	// Output: echo: hello
}

// ConnectionIDs tells a packet listener the CID length of the config pion's
// own listener will use over it.
func ExampleConnectionIDs() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	config := pskConfig()
	config.ConnectionIDGenerator = dtls.RandomCIDGenerator(8)
	inner, err := pionv3.NewPacketListener(pc, pionv3.ConnectionIDs(config))
	if err != nil {
		log.Fatal(err)
	}
	ln, err := dtls.NewListener(inner, config)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	client := pskConfig()
	client.ConnectionIDGenerator = dtls.OnlySendCIDGenerator()
	fmt.Printf("echo: %s\n", echoWith(ln, "hello", client))
	// Output: echo: hello
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
