package demux_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

// clientHello is the smallest datagram that opens an association: an
// epoch-0 handshake record holding an empty ClientHello fragment.
var clientHello = []byte{
	0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, // record header, epoch 0
	1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // handshake header: ClientHello
}

// finished is what a just-closed client's late Finished looks like from
// outside: an epoch-1 handshake record.
var finished = []byte{0x16, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0}

// Any Go DTLS stack that runs a server handshake over a net.Conn can sit on
// a Listener; the pion adapters are this with pion's handshake. Here the
// "handshake" accepts the per-peer Conn as it is. A datagram from an
// unknown peer that does not open an association never becomes a
// connection.
func ExampleNewListener() {
	handshake := func(ctx context.Context, c *demux.Conn) (net.Conn, error) {
		return c, nil // a real stack: dtls.ServerWithContext(ctx, c, config)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := demux.NewListener(pc, handshake,
		demux.WithHandshakeTimeout(10*time.Second),
		demux.WithFilter(strayfilter.WithQuietPeriod(10*time.Second)))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	stray, _ := net.Dial("udp", ln.Addr().String())
	defer stray.Close()
	stray.Write(finished) // read first, and dropped
	client, _ := net.Dial("udp", ln.Addr().String())
	defer client.Close()
	client.Write(clientHello)

	conn, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	s := ln.Stats()
	fmt.Println("accepted the client:", conn.RemoteAddr().String() == client.LocalAddr().String())
	fmt.Println("associations:", s.Created, "datagrams from unknown peers dropped:", s.UnknownPeer)
	// Output:
	// accepted the client: true
	// associations: 1 datagrams from unknown peers dropped: 1
}

// A PacketListener hands out a per-peer net.PacketConn for each new
// association, for stacks that run the handshake themselves (pion v3's
// dtls.NewListener). The Conn reads what its peer sent, starting with the
// ClientHello.
func ExampleNewPacketListener() {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := demux.NewPacketListener(pc)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	client, _ := net.Dial("udp", ln.Addr().String())
	defer client.Close()
	client.Write(clientHello)

	conn, peer, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	n, _, _ := conn.ReadFrom(buf)
	r := record.Inspect(buf[:n])
	fmt.Println("from the client:", peer.String() == client.LocalAddr().String())
	fmt.Println("first record opens an association:", r.OpensAssociation())
	// Output:
	// from the client: true
	// first record opens an association: true
}
