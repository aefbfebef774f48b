package pionv4_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv4"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
)

// store is an in-memory pion session store, with the single-use claims
// 0-RTT requires.
type store struct {
	mu       sync.Mutex
	sessions map[string]dtls.Session
	claims   map[string]time.Time
}

func newStore() *store {
	return &store{sessions: map[string]dtls.Session{}, claims: map[string]time.Time{}}
}

func (s *store) Set(key []byte, v dtls.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[string(key)] = v
	return nil
}

func (s *store) Get(key []byte) (dtls.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[string(key)], nil
}

func (s *store) Del(key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, string(key))
	return nil
}

func (s *store) hasTicket() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.sessions {
		if v.Ticket != nil {
			return true
		}
	}
	return false
}

func (s *store) Claim(ticket []byte, expiresAt time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, used := s.claims[string(ticket)]; used {
		return false, nil
	}
	s.claims[string(ticket)] = expiresAt
	return true, nil
}

// TestResumption: a client that resumes its session (DTLS 1.2 session ID,
// DTLS 1.3 ticket) from the address its first association, closed by the
// server, left quiet, completes the abbreviated handshake through the
// adapter: in DTLS 1.2 the second association has the first one's
// session ID, in 1.3 the server sends its certificate only in the first.
func TestResumption(t *testing.T) {
	inModes(t, bothVersions, func(t *testing.T) {
		pc, err := net.ListenUDP("udp", loopback)
		if err != nil {
			t.Fatal(err)
		}
		var full atomic.Int32
		cert := fixture.Certificate(t)
		ln, err := pionv4.Listen(pc, append(serverOptions(t), dtls.WithSessionStore(newStore()),
			dtls.WithGetCertificate(func(*dtls.ClientHelloInfo) (*tls.Certificate, error) {
				full.Add(1)
				return &cert, nil
			}))...)
		if err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{}, 2)
		srv := dtlstest.Serve(ln, false, func(net.Conn) { closed <- struct{}{} })
		t.Cleanup(func() {
			ln.Close()
			srv.Stop()
		})
		client := append(clientOptions(t), dtls.WithSessionStore(newStore()), dtls.WithServerName("localhost"))
		sock, err := net.ListenUDP("udp", loopback)
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		shared := fixture.NewShared(sock)
		var states [2]dtls.State
		for i := range 2 {
			c, err := dtls.Client(dtlstest.SendFirst(shared.Lend()), ln.Addr(), client...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = c.HandshakeContext(ctx)
			cancel()
			if err != nil {
				t.Fatalf("association %d: %v", i, err)
			}
			dtlstest.EchoOnce(t, c, fmt.Sprint("association ", i))
			states[i], _ = c.ConnectionState()
			if n := srv.CloseOpen(); n != 1 {
				t.Fatalf("the server had %d connections open, want 1", n)
			}
			c.Close()
			<-closed
		}
		// DTLS 1.2 asks for the certificate before it knows the client
		// resumes; DTLS 1.3 only for a full handshake.
		resumed := full.Load() == 1
		if cur.version == protocol.Version1_2 {
			resumed = len(states[0].SessionID) > 0 && string(states[0].SessionID) == string(states[1].SessionID)
		}
		st := ln.(*demux.Listener).Stats()
		if !resumed || st.Completed != 2 || st.Filter.Forgets != 1 {
			t.Fatalf("resumed %v (session IDs %x, %x; %d full handshakes); stats %+v", resumed, states[0].SessionID, states[1].SessionID, full.Load(), st)
		}
	})
}

// TestEarlyData: a DTLS 1.3 client that resumes with 0-RTT data from the
// address its first association, closed by the server, left quiet, sends
// the data right behind its ClientHello, before the server has answered:
// the filter lets the ClientHello end the quiet period, and the listener
// delivers the data to the new handshake (package assoc, rule 11), whose
// stack takes it. pion v4 accepts early data only on a DetachedConn, which
// the server side of this test drives over the listener's per-peer conn;
// a *dtls.Conn server, which pionv4.Listen's Accept returns, refuses it,
// and the client sends it again after the handshake.
func TestEarlyData(t *testing.T) {
	inModes(t, bothVersions[1:], func(t *testing.T) {
		const early = "zero round trips"
		serverStore := newStore()
		server := append(serverOptions(t), dtls.WithInsecureSkipVerifyHello(true), // 0-RTT needs the first ClientHello answered
			dtls.WithSessionStore(serverStore, dtls.WithMaxEarlyDataSize(1024)))
		got := make(chan string, 4)
		pc, err := net.ListenUDP("udp", loopback)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := demux.NewListener(pc, detachedServer(server, got), pionv4.ListenerOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		accepted := make(chan net.Conn, 2)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		sock, err := net.ListenUDP("udp", loopback)
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		clientStore := newStore()
		client := append(clientOptions(t), dtls.WithServerName("localhost"),
			dtls.WithSessionStore(clientStore, dtls.WithMaxEarlyDataSize(1024)))

		// The first association gets the ticket; the server closes it.
		if err := detachedClient(t, sock, ln.Addr(), client, "", clientStore.hasTicket); err != nil {
			t.Fatal(err)
		}
		(<-accepted).Close()
		dtlstest.WaitFor(t, "the client's address quiet", func() bool { return ln.Stats().Filter.QuietPeers == 1 })
		before := ln.Stats()

		// The second sends early data from the quiet address.
		if err := detachedClient(t, sock, ln.Addr(), client, early, clientStore.hasTicket); err != nil {
			t.Fatal(err)
		}
		c := <-accepted
		defer c.Close()
		select {
		case s := <-got:
			if s != "early: "+early {
				t.Fatalf("the server read %q, want the early data", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the server never read the early data")
		}
		// (The first association's last ACK may reach the quiet address
		// late, a stray: the filter's counts do not tell.)
		st := ln.Stats()
		if st.Filter.Forgets != before.Filter.Forgets+1 || st.Unproved != before.Unproved {
			t.Fatalf("the ClientHello did not end the quiet period, or a record went unproved: before %+v, after %+v", before, st)
		}
	})
}

// detachedServer is a demux.Handshake that runs pion v4's DetachedConn
// server over the per-peer conn, reporting the application data it gets
// before the handshake completes (0-RTT) on got.
func detachedServer(opts []dtls.ServerOption, got chan<- string) demux.Handshake {
	return func(ctx context.Context, c *demux.Conn) (net.Conn, error) {
		d, err := dtls.DetachedServer(c.RemoteAddr(), opts...)
		if err != nil {
			return nil, err
		}
		if err := d.Start(ctx); err != nil {
			return nil, err
		}
		buf := make([]byte, 2048)
		for {
			done, err := drain(d, c, func(data []byte) { got <- "early: " + string(data) })
			if err != nil {
				d.Close()
				return nil, err
			}
			if done {
				// pion sends its session ticket after the handshake: the
				// conn goes on being driven until it closes.
				go pump(d, c)
				return &detached{Conn: c, d: d}, nil
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				d.Close()
				return nil, err
			}
			if err := d.HandleDatagram(buf[:n], from); err != nil {
				d.Close()
				return nil, err
			}
		}
	}
}

// pump drives an established DetachedConn over c until either closes.
func pump(d *dtls.DetachedConn, c *demux.Conn) {
	go func() {
		for range d.EventReady() {
			if _, err := drain(d, c, func([]byte) {}); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Time{})
		n, from, err := c.ReadFrom(buf)
		if err != nil || d.HandleDatagram(buf[:n], from) != nil {
			return
		}
	}
}

// detached is what the listener's Accept returns for a DetachedConn.
type detached struct {
	*demux.Conn
	d *dtls.DetachedConn
}

func (c *detached) Close() error {
	c.d.Close()
	return c.Conn.Close()
}

// drain handles d's pending events: it sends its datagrams over pc and
// hands application data to data; done reports the handshake complete.
func drain(d *dtls.DetachedConn, pc net.PacketConn, data func([]byte)) (done bool, err error) {
	for e := d.NextEvent(); e.Kind != dtls.DetachedNoEvent; e = d.NextEvent() {
		switch e.Kind {
		case dtls.DetachedWriteDatagrams:
			for _, b := range e.Datagrams {
				if _, err := pc.WriteTo(b, e.Addr); err != nil {
					return done, err
				}
			}
		case dtls.DetachedApplicationData:
			if !done {
				data(e.Data)
			}
		case dtls.DetachedHandshakeDone:
			done = true
		case dtls.DetachedClosed:
			return done, fmt.Errorf("closed: %w", e.Err)
		}
	}
	return done, nil
}

// detachedClient runs a pion v4 DetachedConn client from sock to server
// until its handshake completes, writing early as 0-RTT data when it
// offers some; without, until ticket says the server's session ticket,
// which follows the handshake, was stored. It then closes without a word
// (the server closes its side).
func detachedClient(t *testing.T, sock *net.UDPConn, server net.Addr, opts []dtls.ClientOption, early string, ticket func() bool) error {
	t.Helper()
	d, err := dtls.DetachedClient(server, opts...)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	wrote, done := false, false
	for {
		for e := d.NextEvent(); e.Kind != dtls.DetachedNoEvent; e = d.NextEvent() {
			switch e.Kind {
			case dtls.DetachedWriteDatagrams:
				for _, b := range e.Datagrams {
					if _, err := sock.WriteTo(b, e.Addr); err != nil {
						return err
					}
				}
			case dtls.DetachedEarlyDataReady:
				if early != "" && !wrote {
					wrote = true
					if _, err := d.WriteEarlyData([]byte(early)); err != nil {
						return err
					}
				}
			case dtls.DetachedHandshakeDone:
				done = true
			case dtls.DetachedClosed:
				return e.Err
			}
		}
		if done && early != "" && !wrote {
			return errors.New("the client offered no early data: no ticket allowed it")
		}
		if done && (early != "" || ticket()) {
			return nil
		}
		// pion stores the ticket on a goroutine of its own once it read
		// it: short reads, so the loop looks again.
		sock.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, from, err := sock.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return err
		}
		if err := d.HandleDatagram(buf[:n], from); err != nil {
			return err
		}
	}
}
