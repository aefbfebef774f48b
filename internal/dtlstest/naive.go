package dtlstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dtlsv3 "github.com/pion/dtls/v3"
	"github.com/pion/transport/v2/packetio"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
)

// NaiveServer is a real DTLS server (pion v3) behind the demultiplexing of
// Mbed TLS's example server: the first datagram from an address it has no
// connection for starts a new connection, whatever the datagram is. It has
// no filter of any kind, so it is the upstream the relay must protect.
// Every connection reads one message, echoes it and closes (sending
// close_notify), as the seed's server did; with echoAll it echoes until the
// client goes away instead.
type NaiveServer struct {
	pc      *net.UDPConn
	barrier *net.UDPConn
	cfg     *dtlsv3.Config
	timeout time.Duration
	echoAll bool

	mu    sync.Mutex
	conns map[netip.AddrPort]*naiveConn
	peers []netip.AddrPort // every address that got a connection, in order
	bogus []string         // what each bogus connection started with
	// last is what the latest ended connection from each address received
	// and how it ended, for a bogus connection's log: the connection
	// before a bogus one usually says how it came about.
	last map[netip.AddrPort][]string
	wg   sync.WaitGroup

	// Echoed receives each message the server echoed before closing.
	Echoed chan string

	// BeforeForget, if set, is called when a connection that echoed has
	// sent its close_notify, before the server forgets the address (until
	// then the address's datagrams go to the closed connection and are
	// lost). It must be set before the first datagram arrives.
	BeforeForget func(peer netip.AddrPort, since time.Time)

	Conns    atomic.Int64 // connections started
	Bogus    atomic.Int64 // connections whose first datagram was no ClientHello
	Failures atomic.Int64 // connections whose handshake or read failed
}

// NewNaiveServer starts a NaiveServer on 127.0.0.1. A connection whose
// handshake has not finished after handshakeTimeout fails.
func NewNaiveServer(t testing.TB, handshakeTimeout time.Duration, echoAll bool) *NaiveServer {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// The barrier socket's datagrams tell the loop to forget a peer once
	// every datagram queued before them has been read (see Close).
	barrier, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	s := &NaiveServer{
		pc:      pc,
		barrier: barrier,
		cfg:     fixture.ServerV3(t),
		timeout: handshakeTimeout,
		echoAll: echoAll,
		conns:   map[netip.AddrPort]*naiveConn{},
		last:    map[netip.AddrPort][]string{},
		Echoed:  make(chan string, 1024),
	}
	s.wg.Add(1)
	go s.loop()
	t.Cleanup(s.Close)
	return s
}

// Addr is the server's address.
func (s *NaiveServer) Addr() netip.AddrPort { return s.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

// Peers returns every address that got a connection, in order.
func (s *NaiveServer) Peers() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.peers...)
}

// BogusLog says when, from where and with what bytes each bogus connection
// started, for a failing test to print.
func (s *NaiveServer) BogusLog() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bogus...)
}

// Close stops the server and waits for its connections.
func (s *NaiveServer) Close() {
	s.pc.Close()
	s.barrier.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.buf.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *NaiveServer) loop() {
	defer s.wg.Done()
	// Like pion's own listener (and a C server's fixed receive buffer), the
	// socket truncates what does not fit, so the DTLS stack never sees a
	// datagram larger than the buffer it reads with.
	buf := make([]byte, 8192)
	for {
		n, from, err := s.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if from == s.barrier.LocalAddr().(*net.UDPAddr).AddrPort() {
			s.forget(buf[:n])
			continue
		}
		s.mu.Lock()
		c := s.conns[from]
		if c == nil {
			c = &naiveConn{s: s, peer: from, buf: packetio.NewBuffer(), created: time.Now(), forgotten: make(chan struct{})}
			s.conns[from] = c
			s.peers = append(s.peers, from)
			s.Conns.Add(1)
			if r := record.Inspect(buf[:n]); !r.OpensAssociation() {
				s.Bogus.Add(1)
				s.bogus = append(s.bogus, fmt.Sprintf("%s from %v: % x", stamp(), from, buf[:min(n, 16)]))
				for _, l := range s.last[from] {
					s.bogus = append(s.bogus, "    the connection before it: "+l)
				}
			}
			s.wg.Add(1)
			go s.serve(c)
		}
		if len(c.log) < 32 {
			c.log = append(c.log, fmt.Sprintf("%s read %d bytes: % x", stamp(), n, buf[:min(n, 16)]))
		}
		s.mu.Unlock()
		c.buf.Write(buf[:n])
	}
}

func stamp() string { return time.Now().Format("15:04:05.000000") }

// ended records how c ended, after what it read.
func (s *NaiveServer) ended(c *naiveConn, how string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[c.peer] = append(c.log, stamp()+" "+how)
}

// forget drops the connection of the peer a barrier datagram names.
func (s *NaiveServer) forget(name []byte) {
	peer, err := netip.ParseAddrPort(string(name))
	if err != nil {
		return
	}
	s.mu.Lock()
	c := s.conns[peer]
	if c != nil {
		delete(s.conns, peer)
	}
	s.mu.Unlock()
	if c != nil {
		close(c.forgotten)
	}
}

func (s *NaiveServer) serve(c *naiveConn) {
	defer s.wg.Done()
	defer c.Close()
	conn, err := dtlsv3.Server(c, net.UDPAddrFromAddrPort(c.peer), s.cfg)
	if err != nil {
		s.Failures.Add(1)
		s.ended(c, "failed: "+err.Error())
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		s.Failures.Add(1)
		s.ended(c, "handshake failed: "+err.Error())
		return
	}
	defer s.ended(c, "closed after its handshake")
	msg := make([]byte, 2048)
	if s.echoAll {
		for {
			n, err := conn.Read(msg)
			if err != nil {
				return
			}
			conn.Write(msg[:n])
		}
	}
	conn.SetReadDeadline(time.Now().Add(fixture.HandshakeTimeout))
	n, err := conn.Read(msg)
	if err != nil {
		s.Failures.Add(1)
		return
	}
	if _, err := conn.Write(msg[:n]); err != nil {
		s.Failures.Add(1)
		return
	}
	c.echoed.Store(true)
	conn.Close() // sends close_notify
	s.Echoed <- string(msg[:n])
}

// naiveConn is the per-address net.PacketConn pion's Server runs on.
type naiveConn struct {
	s       *NaiveServer
	peer    netip.AddrPort
	buf     *packetio.Buffer
	log     []string // what it read (the first 32), under s.mu
	once    sync.Once
	created time.Time
	echoed  atomic.Bool
	// forgotten is closed once the loop has forgotten the peer.
	forgotten chan struct{}
}

func (c *naiveConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := c.buf.Read(p)
	return n, net.UDPAddrFromAddrPort(c.peer), err
}

func (c *naiveConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	return c.s.pc.WriteToUDPAddrPort(p, c.peer)
}

// Close forgets the address: its next datagram starts a new connection.
func (c *naiveConn) Close() error {
	c.once.Do(func() {
		if c.echoed.Load() && c.s.BeforeForget != nil {
			c.s.BeforeForget(c.peer, c.created)
			// Forget in the loop, behind every datagram queued for the
			// server before now: what a relay sent on the association
			// before it ended it still reaches this closed connection, as
			// it would a server that had not yet read it.
			if _, err := c.s.barrier.Write([]byte(c.peer.String())); err == nil {
				select {
				case <-c.forgotten:
				case <-time.After(5 * time.Second):
				}
			}
		}
		c.s.mu.Lock()
		if c.s.conns[c.peer] == c {
			delete(c.s.conns, c.peer)
		}
		c.s.mu.Unlock()
		c.buf.Close()
	})
	return nil
}

func (c *naiveConn) LocalAddr() net.Addr                { return c.s.pc.LocalAddr() }
func (c *naiveConn) SetDeadline(t time.Time) error      { return c.buf.SetReadDeadline(t) }
func (c *naiveConn) SetReadDeadline(t time.Time) error  { return c.buf.SetReadDeadline(t) }
func (c *naiveConn) SetWriteDeadline(_ time.Time) error { return nil }
