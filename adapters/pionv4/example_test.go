package pionv4_test

import (
	"fmt"
	"log"
	"net"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/crypto/ciphersuite"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv4"
)

// psk is a pre-shared-key option, so the examples need no certificate;
// any options pion accepts work the same way.
func psk() dtls.Option {
	key := []byte{0xab, 0xc1, 0x23}
	return dtls.WithPSK(
		func() ([]dtls.PSK, error) { return []dtls.PSK{{Identity: []byte("example"), Key: key}}, nil },
		func(ids [][]byte) (*dtls.PSK, error) { return &dtls.PSK{Identity: ids[0], Key: key}, nil })
}

// echo serves one echo on ln and sends it msg from a pion client of the
// given version.
func echo(ln net.Listener, version protocol.Version, msg string) string {
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
	c, err := dtls.Dial("udp", ln.Addr().(*net.UDPAddr), psk(),
		dtls.WithMinVersion(version), dtls.WithMaxVersion(version), dtls.WithCipherSuites(suite(version)))
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

func suite(version protocol.Version) ciphersuite.ID {
	if version == protocol.Version1_3 {
		return ciphersuite.TLS_AES_128_GCM_SHA256
	}
	return ciphersuite.TLS_PSK_WITH_AES_128_CCM_8
}

// Switching from pion's listener is one identifier: pionv4.Listen in
// place of dtls.Listen, with the same options. Accept returns *dtls.Conn
// values whose handshake completed.
func ExampleListen() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	// ln, err := dtls.Listen(pc, opts...) // before
	ln, err := pionv4.Listen(pc, psk(),
		dtls.WithCipherSuites(suite(protocol.Version1_2), suite(protocol.Version1_3)))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(echo(ln, protocol.Version1_3, "hello over DTLS 1.3"))
	fmt.Println(echo(ln, protocol.Version1_2, "hello over DTLS 1.2"))
	fmt.Println("associations:", ln.(*demux.Listener).Stats().Created)
	// Output:
	// hello over DTLS 1.3
	// hello over DTLS 1.2
	// associations: 2
}

// ListenAddr binds the address itself, as dtls.ListenAddr does.
func ExampleListenAddr() {
	ln, err := pionv4.ListenAddr("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, psk(),
		dtls.WithCipherSuites(suite(protocol.Version1_3)))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(echo(ln, protocol.Version1_3, "hello"))
	// Output: hello
}

// NewListener takes the listener's own options beside pion's: here a
// shorter handshake timeout and a longer quiet period.
func ExampleNewListener() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := pionv4.NewListener(pc,
		[]dtls.ServerOption{psk(), dtls.WithCipherSuites(suite(protocol.Version1_3))},
		demux.WithHandshakeTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(echo(ln, protocol.Version1_3, "hello"))
	// Output: hello
}

// Handshake is the piece to give demux.NewListener for a listener built
// by hand, over a socket the caller already filters.
func ExampleHandshake() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	hs := pionv4.Handshake(psk(), dtls.WithCipherSuites(suite(protocol.Version1_2)))
	ln, err := demux.NewListener(pc, hs, pionv4.ListenerOptions()...)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(echo(ln, protocol.Version1_2, "hello"))
	// Output: hello
}

// NewPacketListener is the inner listener for pion's own dtls.NewListener,
// which then runs each handshake itself, on first use.
func ExampleNewPacketListener() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	inner, err := pionv4.NewPacketListener(pc)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := dtls.NewListener(inner, psk(), dtls.WithCipherSuites(suite(protocol.Version1_3)))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(echo(ln, protocol.Version1_3, "hello"))
	// Output: hello
}

// ListenerOptions are what every pion v4 listener needs, before the
// caller's own.
func ExampleListenerOptions() {
	opts := pionv4.ListenerOptions(demux.WithMaxUnverified(256))
	fmt.Println(len(opts))
	// Output: 3
}
