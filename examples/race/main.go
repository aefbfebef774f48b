// Command race shows the problem straydtls solves, and the fix, in seconds.
//
// It runs pion/dtls echo servers on loopback and, one after another, clients
// that connect, echo a message and are closed by the server. Between each
// client and the server sits an in-process relay that makes UDP's
// reordering deterministic: it holds back the client's close_notify and,
// once the server has closed the association, delivers it late together
// with a late copy of the client's Finished (an epoch-1 handshake record,
// as a retransmission would be; in DTLS 1.3 its first encrypted record)
// and of its second ClientHello (the one that echoed the cookie; two
// datagrams in DTLS 1.3). That is exactly what a real network does now and
// then.
//
// Each server runs twice: on pion's own listener, then on the straydtls
// adapter (a one-identifier change); pion v4 runs in DTLS 1.2 and 1.3.
// pion v2's listener turns the late records into handshakes that block
// Accept, so the next client stalls for the whole handshake timeout (30 s
// by default; this demo sets -timeout 2s so it finishes quickly). pion v3's
// and v4's listeners hand them to the application as bogus connections
// whose handshakes never complete. The adapters drop every stray.
//
//	go run ./examples/race
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	dtlsv2 "github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/crypto/selfsign"
	dtlsv3 "github.com/pion/dtls/v3"
	dtlsv4 "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv2"
	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/adapters/pionv4"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
	"github.com/straydtls/straydtls/udprelay"
)

var (
	clients = flag.Int("clients", 3, "clients per server, one after another")
	timeout = flag.Duration("timeout", 2*time.Second, "server handshake timeout (pion's default is 30s)")
	stall   = flag.Duration("stall", time.Second, "a handshake slower than this counts as stalled")
)

var loopback = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}

func main() {
	flag.Parse()
	log.SetFlags(0)
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		log.Fatal(err)
	}
	scenarios := []scenario{
		{name: "pion/dtls v2 dtls.Listen", v2: true, listen: func() (net.Listener, error) {
			return dtlsv2.Listen("udp", loopback, serverV2(cert))
		}},
		{name: "straydtls pionv2.Listen", v2: true, listen: func() (net.Listener, error) {
			return pionv2.Listen("udp", loopback, serverV2(cert), demux.WithHandshakeTimeout(*timeout))
		}},
		{name: "pion/dtls v3 dtls.Listen", listen: func() (net.Listener, error) {
			return dtlsv3.Listen("udp", loopback, serverV3(cert))
		}},
		{name: "straydtls pionv3.Listen", listen: func() (net.Listener, error) {
			return pionv3.Listen("udp", loopback, serverV3(cert), demux.WithHandshakeTimeout(*timeout))
		}},
	}
	for _, v := range []protocol.Version{protocol.Version1_2, protocol.Version1_3} {
		name := map[protocol.Version]string{protocol.Version1_2: "DTLS 1.2", protocol.Version1_3: "DTLS 1.3"}[v]
		scenarios = append(scenarios,
			scenario{name: "pion/dtls v4 dtls.ListenAddr, " + name, v4: v, listen: func() (net.Listener, error) {
				return dtlsv4.ListenAddr("udp", loopback, serverV4(cert, v)...)
			}},
			scenario{name: "straydtls pionv4.ListenAddr, " + name, v4: v, listen: func() (net.Listener, error) {
				return pionv4.ListenAddr("udp", loopback, serverV4(cert, v)...)
			}})
	}
	fmt.Printf("%d clients per server; each client's close_notify and copies of its Finished and of its ClientHello arrive after the server closed.\n\n", *clients)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "server\tclients served\tfailed\tstalled\tbogus connections\tworst handshake\tstrays dropped")
	ok := true
	for _, s := range scenarios {
		r, err := s.run(cert)
		if err != nil {
			log.Fatalf("%s: %v", s.name, err)
		}
		dropped := "-"
		if r.filter != nil {
			dropped = fmt.Sprint(r.filter.TotalStrays())
		}
		fmt.Fprintf(w, "%s\t%d/%d\t%d\t%d\t%d\t%v\t%s\n", s.name, r.served, *clients, r.failed, r.stalled, r.bogus.Load(),
			r.worst.Round(time.Millisecond), dropped)
		if r.filter != nil && (r.served != *clients || r.stalled+r.failed > 0 || r.bogus.Load() > 0) {
			ok = false
		}
	}
	w.Flush()
	fmt.Printf("\nstalled: handshake slower than %v. pion's default handshake timeout is 30s, so a real stall lasts 30s.\n", *stall)
	if !ok {
		log.Fatal("FAIL: a straydtls listener did not serve every client cleanly")
	}
}

type scenario struct {
	name   string
	v2     bool
	v4     protocol.Version // 0: not pion v4
	listen func() (net.Listener, error)
}

type result struct {
	served, failed, stalled int
	bogus                   atomic.Int64
	worst                   time.Duration
	filter                  *strayfilter.Stats
}

func (s scenario) run(cert tls.Certificate) (*result, error) {
	ln, err := s.listen()
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	res := &result{}
	// The relay keeps what clients send, so their Finished can be replayed,
	// and holds their close_notify until the server has closed.
	strays := udprelay.NewRecorder()
	strays.HoldAlerts(true)
	relay, err := udprelay.New(ln.Addr().(*net.UDPAddr).AddrPort(), strays.Hook)
	if err != nil {
		return nil, err
	}
	defer relay.Close()

	closed := make(chan struct{}, *clients)
	injected := 0 // late datagrams delivered
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.serve(ln, res, closed, &wg)
	}()

	for i := range *clients {
		start := time.Now()
		c, local, err := s.dial(cert, relay.Addr())
		took := time.Since(start)
		res.worst = max(res.worst, took)
		if err != nil {
			res.failed++
			continue
		}
		if took > *stall {
			res.stalled++
		}
		msg := fmt.Sprint("hello ", i)
		buf := make([]byte, 100)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			res.failed++
			c.Close()
			continue
		}
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			res.failed++
			c.Close()
			continue
		}
		res.served++
		// The server closes after its echo; wait for that, then deliver the
		// late records as the network would.
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
		}
		c.Close()
		relay.Flush()
		for _, d := range lateCopies(strays, local) {
			relay.Inject(udprelay.ToServer, local, d)
			injected++
		}
		injected += relay.Release()
	}
	if fl, ok := ln.(interface{ Filter() *strayfilter.Conn }); ok {
		// Give the last strays up to a second to cross loopback.
		want := uint64(injected)
		for deadline := time.Now().Add(time.Second); fl.Filter().Stats().TotalStrays() < want && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		st := fl.Filter().Stats()
		res.filter = &st
	}
	ln.Close()
	wg.Wait()
	return res, nil
}

// serve echoes one message per connection and closes it. A connection
// whose handshake cannot complete is a bogus one: pion v2 reports it as an
// Accept error, v3 on the first use of the connection.
func (s scenario) serve(ln net.Listener, res *result, closed chan<- struct{}, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || strings.HasSuffix(err.Error(), "listener closed") {
				return
			}
			res.bogus.Add(1) // pion v2: the handshake inside Accept failed
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			if dc, ok := c.(interface {
				HandshakeContext(context.Context) error
			}); ok {
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				err := dc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					res.bogus.Add(1)
					return
				}
			}
			buf := make([]byte, 100)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			c.Write(buf[:n])
			c.Close()
			closed <- struct{}{}
		}()
	}
}

// lateCopies are what the network delivers late from a closed client, but
// its close_notify (held): its Finished (DTLS 1.2: an epoch-1 handshake
// record; DTLS 1.3: its first encrypted record) and its second ClientHello.
func lateCopies(rec *udprelay.Recorder, client netip.AddrPort) [][]byte {
	var out [][]byte
	if fin, ok := rec.EpochOneHandshake(client); ok {
		out = append(out, fin)
	}
	sent := rec.Sent(client)
	for _, d := range sent {
		if r := record.Inspect(d); r.Class == record.ClassCiphertext {
			out = append(out, d) // DTLS 1.3: the client's Finished
			break
		}
	}
	for _, d := range sent {
		if r := record.Inspect(d); r.OpensAssociation() && r.MessageSeq == 1 {
			out = append(out, d)
		}
	}
	return out
}

func (s scenario) dial(cert tls.Certificate, addr netip.AddrPort) (net.Conn, netip.AddrPort, error) {
	raddr := net.UDPAddrFromAddrPort(addr)
	if s.v2 {
		c, err := dtlsv2.Dial("udp", raddr, &dtlsv2.Config{
			Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
			ConnectContextMaker: func() (context.Context, func()) {
				return context.WithTimeout(context.Background(), 10*time.Second)
			},
		})
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		return c, c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
	}
	var c handshaker
	var err error
	if s.v4 != 0 {
		c, err = dtlsv4.Dial("udp", raddr, dtlsv4.WithCertificates(cert), dtlsv4.WithInsecureSkipVerify(true),
			dtlsv4.WithMinVersion(s.v4), dtlsv4.WithMaxVersion(s.v4))
	} else {
		c, err = dtlsv3.Dial("udp", raddr, &dtlsv3.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true})
	}
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, netip.AddrPort{}, err
	}
	// pion v3 and v4 bind the unspecified address; the relay sees loopback.
	local := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	return c, local, nil
}

// handshaker is a pion v3 or v4 client conn, whose handshake runs on
// HandshakeContext.
type handshaker interface {
	net.Conn
	HandshakeContext(ctx context.Context) error
}

func serverV2(cert tls.Certificate) *dtlsv2.Config {
	return &dtlsv2.Config{
		Certificates: []tls.Certificate{cert},
		ConnectContextMaker: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), *timeout)
		},
	}
}

func serverV3(cert tls.Certificate) *dtlsv3.Config {
	return &dtlsv3.Config{Certificates: []tls.Certificate{cert}}
}

func serverV4(cert tls.Certificate, v protocol.Version) []dtlsv4.ServerOption {
	return []dtlsv4.ServerOption{dtlsv4.WithCertificates(cert), dtlsv4.WithMinVersion(v), dtlsv4.WithMaxVersion(v)}
}
