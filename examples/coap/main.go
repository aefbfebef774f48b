// Command coap serves CoAP over DTLS with go-coap v3 on the straydtls pion
// v3 adapter: the shape of an IoT device server (LwM2M, CoAP over DTLS),
// where stray records of closed associations and rebooting clients hurt
// most. The adapter is go-coap's listener; nothing else changes.
//
//	go run ./examples/coap                     # serves coaps://127.0.0.1:5684/hello
//	go run ./examples/coap -listen :5684 -psk secret
//
// Try it with any CoAP client that speaks DTLS with a pre-shared key, e.g.
// libcoap's coap-client -k secret -u device coaps://127.0.0.1/hello.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"sync/atomic"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv3"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5684", "UDP `address` to serve CoAP over DTLS on")
	psk := flag.String("psk", "secret", "pre-shared `key` clients authenticate with")
	flag.Parse()
	laddr, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil {
		log.Fatalf("-listen %q: %v", *listen, err)
	}
	s, err := start(laddr, []byte(*psk), nil)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving coaps://%v/hello", s.ln.Addr())
	if err := s.coap.Serve(s.ln); err != nil {
		log.Fatal(err)
	}
}

// coapServer is a go-coap DTLS server and the straydtls listener it
// serves on.
type coapServer struct {
	ln     *demux.Listener
	coap   *server.Server
	served atomic.Int64
}

// start listens on laddr; onNewConn, if set, sees every server-side
// connection (the test closes them from there).
func start(laddr *net.UDPAddr, psk []byte, onNewConn func(*udpclient.Conn)) (*coapServer, error) {
	// dtls.Listen("udp", laddr, config) would be pion's own listener; the
	// adapter takes the same arguments.
	ln, err := pionv3.Listen("udp", laddr, serverConfig(psk))
	if err != nil {
		return nil, err
	}
	s := &coapServer{ln: ln}
	r := mux.NewRouter()
	r.Handle("/hello", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		n := s.served.Add(1)
		body := fmt.Sprintf("hello %d from %v", n, w.Conn().RemoteAddr())
		if err := w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(body))); err != nil {
			log.Printf("response: %v", err)
		}
	}))
	opts := []server.Option{options.WithMux(r)}
	if onNewConn != nil {
		opts = append(opts, options.WithOnNewConn(onNewConn))
	}
	s.coap = coapdtls.NewServer(opts...)
	return s, nil
}

func serverConfig(psk []byte) *piondtls.Config {
	return &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return psk, nil },
		PSKIdentityHint: []byte("straydtls coap example"),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	}
}
