package dtlstest

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	dtlsv3 "github.com/pion/dtls/v3"
	"github.com/straydtls/straydtls/adapters/pionv3"
)

// EchoServer accepts connections from a net.Listener and echoes every
// message until the peer stops; see Serve.
type EchoServer struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	stopped bool // Stop ran: a connection Accept returns now is closed at once
	// Accepted counts the connections Accept returned: the handshakes
	// the server completed.
	Accepted atomic.Int64
}

// Wait returns when the accept loop and every connection handler ended.
func (s *EchoServer) Wait() { s.wg.Wait() }

// CloseOpen closes the connections open now, as a server application that
// ends them would; the server goes on accepting.
func (s *EchoServer) CloseOpen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	return len(s.conns)
}

// Stop closes the connections still open and waits like Wait; call it
// after closing the listener. Tests need it because a peer's close_notify
// is not a reliable end: pion v2's client Close can close its socket
// before its close_notify is written.
func (s *EchoServer) Stop() {
	s.mu.Lock()
	s.stopped = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Serve echoes on every accepted connection until the listener closes.
// With closeAfterOne, a connection is closed after its first echo. onClose,
// if set, runs after a connection was closed.
func Serve(ln net.Listener, closeAfterOne bool, onClose func(net.Conn)) *EchoServer {
	s := &EchoServer{conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if listenerClosed(err) {
				return
			}
			if err != nil {
				continue // pion's Accept reports a failed handshake and goes on
			}
			s.Accepted.Add(1)
			s.mu.Lock()
			if s.stopped {
				// Accept returned while Stop ran (a handshake that completed
				// as the listener closed): Stop did not see this conn, so
				// nothing else would close it.
				s.mu.Unlock()
				c.Close()
				continue
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				buf := make([]byte, 2048)
				for {
					n, err := c.Read(buf)
					if err != nil {
						break
					}
					if _, err := c.Write(buf[:n]); err != nil || closeAfterOne {
						break
					}
				}
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				if onClose != nil {
					onClose(c)
				}
			}()
		}
	}()
	return s
}

// listenerClosed recognises the closed-listener errors of net, the
// adapters and pion (whose v3 error type is internal).
func listenerClosed(err error) bool {
	return err != nil && (errors.Is(err, net.ErrClosed) || strings.HasSuffix(err.Error(), "listener closed"))
}

// ServePionV3 runs a pion v3 echo server (behind this project's pionv3
// adapter, with cfg) on loopback until the test ends: it echoes every
// message and never closes first. Accepted counts its handshakes.
func ServePionV3(t testing.TB, cfg *dtlsv3.Config) (*EchoServer, netip.AddrPort) {
	t.Helper()
	ln, err := pionv3.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, false, nil)
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	return srv, ln.Addr().(*net.UDPAddr).AddrPort()
}
