// Command echo-v4 is a pion/dtls v4 echo server on the straydtls adapter,
// speaking DTLS 1.2 and 1.3, and a client for it. The only line that
// differs from pion's own listener is the Listen call.
//
//	go run ./examples/echo-v4 -listen 127.0.0.1:4444
//	go run ./examples/echo-v4 -client 127.0.0.1:4444 -message hello        # DTLS 1.3
//	go run ./examples/echo-v4 -client 127.0.0.1:4444 -message hello -dtls12
//	echo hello | openssl s_client -dtls1_2 -quiet -connect 127.0.0.1:4444  # 1.2; Ctrl-C ends it
//
// The server logs a line per connection, and the filter's counts when it
// stops (Ctrl-C).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/straydtls/straydtls/examples/internal/echo"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/crypto/selfsign"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv4"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4444", "UDP address to serve on")
	client := flag.String("client", "", "run a client of the server at this address instead")
	message := flag.String("message", "hello", "what the client sends")
	dtls12 := flag.Bool("dtls12", false, "client: speak DTLS 1.2 (the server speaks both)")
	flag.Parse()
	if *client != "" {
		if err := runClient(*client, *message, *dtls12); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := serve(*listen); err != nil {
		log.Fatal(err)
	}
}

func serve(listen string) error {
	ln, err := newListener(listen)
	if err != nil {
		return err
	}
	log.Printf("echo server on %v (pion/dtls v4 via straydtls, DTLS 1.2 and 1.3)", ln.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	go func() {
		<-stop
		s := ln.(*demux.Listener).Stats()
		log.Printf("served %d associations; strays dropped: %d", s.Accepted, s.Filter.TotalStrays())
		ln.Close()
	}()
	serveOn(ln)
	return nil
}

func newListener(listen string) (net.Listener, error) {
	laddr, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("-listen %q: %w", listen, err)
	}
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		return nil, err
	}
	// return dtls.ListenAddr("udp", laddr, ...)  // pion's own listener
	return pionv4.ListenAddr("udp", laddr, // the one-identifier switch
		dtls.WithCertificates(cert),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
}

// serveOn echoes on every connection ln accepts until it closes.
func serveOn(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // closed
		}
		go echo.Serve(conn, version(conn.(*dtls.Conn)))
	}
}

// version names what a connection speaks, by its cipher suite: DTLS 1.3's
// are TLS_AES_* and TLS_CHACHA20_*, numbered 0x13xx.
func version(conn *dtls.Conn) string {
	if s, ok := conn.ConnectionState(); ok && s.CipherSuiteID>>8 == 0x13 {
		return "DTLS 1.3"
	}
	return "DTLS 1.2"
}

func runClient(addr, message string, dtls12 bool) error {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("-client %q: %w", addr, err)
	}
	v := protocol.Version1_3
	if dtls12 {
		v = protocol.Version1_2
	}
	c, err := dtls.Dial("udp", raddr, dtls.WithInsecureSkipVerify(true), // the server's certificate is self-signed
		dtls.WithMinVersion(v), dtls.WithMaxVersion(v),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		return err
	}
	if _, err := c.Write([]byte(message)); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n", buf[:n])
	return nil
}
