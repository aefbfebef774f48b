// Command wrap puts strayfilter.New under a real pion/dtls server that has
// the shape of Mbed TLS's dtls_server example, the program that started
// this project: it serves one client at a time, echoes one message, closes
// the association and goes back to waiting for the next client, taking the
// first datagram that arrives as the start of the next connection.
//
//	go run ./examples/wrap                 # filtered
//	go run ./examples/wrap -nofilter       # the seed's bug
//	echo hello | openssl s_client -dtls1_2 -connect 127.0.0.1:4433
//
// openssl s_client sends its close_notify when stdin ends, which is often
// after the server has echoed and closed. Unfiltered, that late
// close_notify becomes the "first datagram" of a connection whose handshake
// fails (MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE in Mbed TLS). Filtered, the
// server's own close_notify has put the client into its quiet period and the
// stray is dropped before the server sees it.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4433", "UDP address to serve on")
	noFilter := flag.Bool("nofilter", false, "serve on the bare socket, to see the bug")
	flag.Parse()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		log.Fatal(err)
	}
	raw, err := net.ListenPacket("udp", *listen)
	if err != nil {
		log.Fatalf("-listen %q: %v", *listen, err)
	}
	var pc net.PacketConn = raw
	var filter *strayfilter.Conn
	if !*noFilter {
		// The whole integration: wrap the socket, serve on the wrapper.
		filter, err = strayfilter.New(raw)
		if err != nil {
			log.Fatal(err)
		}
		pc = filter
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	go func() {
		<-stop
		if filter != nil {
			s := filter.Stats()
			log.Printf("strays dropped: %d (late alerts: %d)", s.TotalStrays(), s.Strays[record.ReasonAlert])
		}
		pc.Close()
	}()
	log.Printf("serving one client at a time on %v (filter on: %v)", pc.LocalAddr(), filter != nil)
	config := &dtls.Config{Certificates: []tls.Certificate{cert}, ExtendedMasterSecret: dtls.RequireExtendedMasterSecret}
	buf := make([]byte, 8192)
	for {
		// Wait for a client: whatever arrives first starts a connection.
		pc.SetReadDeadline(time.Time{})
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		serve(pc, peer, buf[:n], config)
	}
}

// serve runs one association with peer, whose first datagram was first.
func serve(pc net.PacketConn, peer net.Addr, first []byte, config *dtls.Config) {
	conn, err := dtls.Server(&onePeer{PacketConn: pc, peer: peer.String(), first: first}, peer, config)
	if err != nil {
		log.Printf("%v: %v", peer, err)
		return
	}
	defer conn.Close() // sends close_notify; the filter quiets peer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		log.Printf("%v: handshake failed: %v (first datagram % x...)", peer, err, first[:min(len(first), 16)])
		return
	}
	msg := make([]byte, 8192)
	n, err := conn.Read(msg)
	if err != nil {
		log.Printf("%v: read: %v", peer, err)
		return
	}
	conn.Write(msg[:n])
	log.Printf("%v: echoed %q and closed", peer, msg[:n])
}

// onePeer gives pion the shared socket as a conn to one peer: it replays the
// datagram that started the connection, ignores other peers (a
// one-at-a-time server has no one to give them to) and, when the
// association ends, stops reading without closing the socket.
type onePeer struct {
	net.PacketConn
	peer    string
	first   []byte
	reading sync.Mutex // held by a ReadFrom in progress
	closed  atomic.Bool
}

func (o *onePeer) ReadFrom(b []byte) (int, net.Addr, error) {
	o.reading.Lock()
	defer o.reading.Unlock()
	if o.first != nil {
		n := copy(b, o.first)
		o.first = nil
		addr, _ := net.ResolveUDPAddr("udp", o.peer)
		return n, addr, nil
	}
	for !o.closed.Load() {
		n, addr, err := o.PacketConn.ReadFrom(b)
		if err != nil || addr.String() == o.peer {
			return n, addr, err
		}
	}
	return 0, nil, net.ErrClosed
}

// Close unblocks pion's reader and waits for it to leave the socket, which
// lives on for the next client.
func (o *onePeer) Close() error {
	o.closed.Store(true)
	o.PacketConn.SetReadDeadline(time.Now())
	o.reading.Lock()
	o.reading.Unlock()
	return nil
}
