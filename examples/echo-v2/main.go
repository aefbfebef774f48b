// Command echo-v2 is a pion/dtls v2 echo server on the straydtls adapter.
// The only line that differs from pion's own example is the Listen call.
//
//	go run ./examples/echo-v2 -listen 127.0.0.1:4444
//	echo hello | openssl s_client -dtls1_2 -quiet -connect 127.0.0.1:4444  # prints the echo; Ctrl-C ends it
//
// The server logs a line per connection, and the filter's counts when it
// stops (Ctrl-C).
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/straydtls/straydtls/examples/internal/echo"

	"github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/crypto/selfsign"

	"github.com/straydtls/straydtls/adapters/pionv2"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4444", "UDP address to serve on")
	flag.Parse()
	laddr, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil {
		log.Fatalf("-listen %q: %v", *listen, err)
	}
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		log.Fatal(err)
	}
	config := &dtls.Config{
		Certificates:         []tls.Certificate{cert},
		ExtendedMasterSecret: dtls.RequireExtendedMasterSecret,
		ConnectContextMaker: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), 30*time.Second)
		},
	}

	// ln, err := dtls.Listen("udp", laddr, config)  // pion's own listener
	ln, err := pionv2.Listen("udp", laddr, config) // the one-line switch
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("echo server on %v (pion/dtls v2 via straydtls)", ln.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	go func() {
		<-stop
		s := ln.Stats()
		log.Printf("served %d associations; strays dropped: %d", s.Accepted, s.Filter.TotalStrays())
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // closed
		}
		go echo.Serve(conn, "")
	}
}
