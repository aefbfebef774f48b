package pionv4_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/dtls/v4"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv4"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
	"github.com/straydtls/straydtls/udprelay"
)

// listen starts the adapter on loopback with the mode's server options,
// exactly as a user switches from pion: pionv4.ListenAddr in place of
// dtls.ListenAddr (demux options through NewListener).
func listen(t *testing.T, opts ...demux.Option) *demux.Listener {
	t.Helper()
	pc, err := net.ListenUDP("udp", loopback)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if len(opts) == 0 {
		ln, err = pionv4.Listen(pc, serverOptions(t)...)
	} else {
		ln, err = pionv4.NewListener(pc, serverOptions(t), opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*demux.Listener)
}

// pionListen starts pion v4's own listener on loopback, for contrast.
func pionListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := dtls.ListenAddr("udp", loopback, serverOptions(t)...)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.UDPAddr).AddrPort() }

// dial runs the mode's client to addr.
func dial(t *testing.T, addr netip.AddrPort) *dtls.Conn {
	t.Helper()
	c, err := dtls.Dial("udp", net.UDPAddrFromAddrPort(addr), clientOptions(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := dtlstest.Handshake(c, fixture.HandshakeTimeout); err != nil {
		t.Fatalf("handshake with %v: %v", addr, err)
	}
	return c
}

// acceptSpy reports every accepted connection's peer.
type acceptSpy struct {
	net.Listener
	seen chan<- net.Addr
}

func (a acceptSpy) Accept() (net.Conn, error) {
	c, err := a.Listener.Accept()
	if err == nil {
		a.seen <- c.RemoteAddr()
	}
	return c, err
}

// session is one association run through a recording relay to its end:
// the server closed it once its client had read the echo, and the client
// closed too.
type session struct {
	relay *udprelay.Relay
	rec   *udprelay.Recorder
	local netip.AddrPort // the client's address as the relay sees it
}

// closedSession runs one association through a recording relay in front
// of ln; serverClose has the server close it, closed says it did.
func closedSession(t *testing.T, ln net.Listener, serverClose func(), closed <-chan struct{}) session {
	t.Helper()
	rec := udprelay.NewRecorder()
	relay, err := udprelay.New(addrPort(ln.Addr()), rec.Hook)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	rec.HoldAlerts(true)
	a := dial(t, relay.Addr())
	dtlstest.EchoOnce(t, a, "first client")
	serverClose()
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addrPort(a.LocalAddr()).Port())
	a.Close()
	<-closed
	return session{relay, rec, local}
}

// late is what the closed client's late record is in the mode: its
// Finished at epoch 1 in DTLS 1.2, its first tls12_cid record with CIDs,
// and in DTLS 1.3 its first unified-header record (its Finished, at epoch
// 2).
func (s session) late(t *testing.T) []byte {
	t.Helper()
	for _, d := range s.rec.Sent(s.local) {
		r := record.Inspect(d)
		switch {
		case cur.cid && record.HasConnectionID(d), !cur.cid && r.Class == record.ClassCiphertext:
			return d
		}
	}
	if cur.cid || cur.version == 0xfefc {
		t.Fatalf("client %v sent no record of the kind the mode makes", s.local)
	}
	return dtlstest.EpochOneHandshake(t, s.rec, s.local)
}

// lateHello is the closed client's own ClientHello, as a late network
// copy of it arrives: the one that echoed the cookie, in as many
// datagrams as it took (two in DTLS 1.3).
func (s session) lateHello(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range s.rec.Sent(s.local) {
		if r := record.Inspect(d); r.OpensAssociation() && r.MessageSeq == 1 {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		t.Fatalf("client %v sent no second ClientHello", s.local)
	}
	return out
}

// TestStrayIsNotAConnection: a late record of a closed client (its
// Finished, its tls12_cid or DTLS 1.3 records) never reaches the
// application as a connection, and the next client is served at once.
func TestStrayIsNotAConnection(t *testing.T) {
	inModes(t, allModes, func(t *testing.T) {
		ln := listen(t)
		closed := make(chan struct{}, 1)
		accepted := make(chan net.Addr, 4)
		srv := dtlstest.Serve(acceptSpy{ln, accepted}, false, func(net.Conn) { closed <- struct{}{} })
		s := closedSession(t, ln, func() { srv.CloseOpen() }, closed)
		s.relay.Inject(udprelay.ToServer, s.local, s.late(t))
		start := time.Now()
		b := dial(t, s.relay.Addr())
		took := time.Since(start)
		dtlstest.EchoOnce(t, b, "next client")
		b.Close()
		t.Logf("next client's handshake took %v", took)
		if took > 5*time.Second {
			t.Fatalf("next client took %v", took)
		}
		if n := len(accepted); n != 2 {
			t.Fatalf("application saw %d connections, want 2 real ones", n)
		}
		dtlstest.WaitFor(t, "the late record dropped", func() bool { return strays(ln.Stats()) >= 1 })
		if st := ln.Stats(); st.Created != 2 || st.HandshakeFailed != 0 {
			t.Fatalf("stats %+v", st)
		}
		ln.Close()
		srv.Stop()
	})
}

func strays(s demux.Stats) (n uint64) {
	for _, v := range s.Filter.Strays {
		n += v
	}
	return n
}

// TestLateClientHelloCopy: a late network copy of a closed client's own
// ClientHello (the one that echoed the cookie; in DTLS 1.3 both its
// datagrams) opens nothing, and the quiet period goes on; the next client
// is served at once. Through pion's own listener the same copy becomes a
// connection whose handshake never completes.
func TestLateClientHelloCopy(t *testing.T) {
	inModes(t, allModes, func(t *testing.T) {
		ln := listen(t)
		closed := make(chan struct{}, 1)
		accepted := make(chan net.Addr, 4)
		srv := dtlstest.Serve(acceptSpy{ln, accepted}, false, func(net.Conn) { closed <- struct{}{} })
		s := closedSession(t, ln, func() { srv.CloseOpen() }, closed)
		copies := s.lateHello(t)
		before := ln.Stats()
		for _, d := range copies {
			s.relay.Inject(udprelay.ToServer, s.local, d)
		}
		dtlstest.WaitFor(t, "the copy judged", func() bool {
			st := ln.Stats()
			return st.Filter.Strays[record.ReasonClientHelloCopy]+st.Filter.Strays[record.ReasonClientHelloFragment] == uint64(len(copies))
		})
		st := ln.Stats()
		if st.Created != before.Created || st.Filter.Forgets != before.Filter.Forgets || st.Filter.QuietPeers != 1 {
			t.Fatalf("the copy opened an association or ended the quiet period: before %+v, after %+v", before, st)
		}
		start := time.Now()
		b := dial(t, s.relay.Addr())
		took := time.Since(start)
		dtlstest.EchoOnce(t, b, "next client")
		b.Close()
		t.Logf("%d datagrams of the old ClientHello dropped; next client's handshake took %v", len(copies), took)
		if n := len(accepted); n != 2 || took > 5*time.Second {
			t.Fatalf("application saw %d connections (want 2), next client took %v", n, took)
		}
		ln.Close()
		srv.Stop()
	})
}

// pionClosedSession is closedSession with pion's own listener, whose
// first connection echoes one record and is closed.
func pionClosedSession(t *testing.T, ln net.Listener) session {
	t.Helper()
	closed := make(chan struct{}, 1)
	echoed := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 100)
		n, _ := c.Read(buf)
		c.Write(buf[:n])
		<-echoed
		c.Close()
		closed <- struct{}{}
	}()
	return closedSession(t, ln, func() { close(echoed) }, closed)
}

// TestPionListenerTakesLateClientHelloCopy documents the bug with pion
// v4's own listener: the late copy of a closed client's ClientHello comes
// out of Accept as a connection whose handshake never completes.
func TestPionListenerTakesLateClientHelloCopy(t *testing.T) {
	inModes(t, bothVersions, func(t *testing.T) {
		ln := pionListen(t)
		defer ln.Close()
		s := pionClosedSession(t, ln)
		serverSide, _ := s.relay.ServerSide(s.local)
		for _, d := range s.lateHello(t) {
			s.relay.Inject(udprelay.ToServer, s.local, d)
		}
		c := dtlstest.RequireBogusConn(t, ln, serverSide, pionHandshake)
		t.Logf("pion's own v4 listener accepted a connection from %v for a late copy of a closed client's ClientHello", c.RemoteAddr())
	})
}

// TestPionListenerHandsOutStray: pion v4's own listener, in DTLS 1.2,
// makes a connection of a closed client's late Finished.
func TestPionListenerHandsOutStray(t *testing.T) {
	inModes(t, bothVersions[:1], func(t *testing.T) {
		ln := pionListen(t)
		defer ln.Close()
		s := pionClosedSession(t, ln)
		serverSide, _ := s.relay.ServerSide(s.local)
		s.relay.Inject(udprelay.ToServer, s.local, s.late(t))
		c := dtlstest.RequireBogusConn(t, ln, serverSide, pionHandshake)
		t.Logf("pion's own v4 listener accepted a bogus connection from %v for one stray Finished", c.RemoteAddr())
	})
}

// pionHandshake runs the handshake of a connection pion's own listener
// accepted.
func pionHandshake(ctx context.Context, c net.Conn) error {
	return c.(*dtls.Conn).HandshakeContext(ctx)
}

// TestManyClientsConcurrently: under -race, many clients at once; no
// connection gets another's data and nothing leaks.
func TestManyClientsConcurrently(t *testing.T) {
	inModes(t, allModes, func(t *testing.T) {
		dtlstest.RunManyClients(t, func(t *testing.T) *demux.Listener { return listen(t) }, dialV4(t, 10*time.Second))
	})
}

// TestPortReuse: one socket, three associations in turn, each closed by
// the server: every ClientHello ends the quiet period the last close
// started.
func TestPortReuse(t *testing.T) {
	inModes(t, bothVersions, func(t *testing.T) {
		dtlstest.RunPortReuse(t, listen, func(pc net.PacketConn, addr net.Addr) (net.Conn, error) {
			c, err := dtls.Client(dtlstest.SendFirst(pc), addr, clientOptions(t)...)
			if err != nil {
				return nil, err
			}
			return c, dtlstest.Handshake(c, 5*time.Second)
		})
	})
}

// TestOpenSSLClientsWithLateCloseNotify is the seed's scenario against the
// v4 adapter in DTLS 1.2: openssl s_client's close_notify arrives after
// the server closed.
func TestOpenSSLClientsWithLateCloseNotify(t *testing.T) {
	dtlstest.RequireOpenSSL(t)
	inModes(t, bothVersions[:1], func(t *testing.T) {
		ln := listen(t)
		// Each takes half a second of s_client's own; the v3 adapter's
		// test runs a hundred.
		iterations := 20
		if testing.Short() {
			iterations = 5
		}
		dtlstest.RunOpenSSLLateCloseNotify(t, ln, iterations)
		if s := ln.Stats(); s.Created != uint64(iterations) || s.HandshakeFailed != 0 || s.UnknownPeer != 0 {
			t.Fatalf("bogus connections: %+v", s)
		}
	})
}

// TestGnuTLSClientsWithLateCloseNotify: gnutls-cli in DTLS 1.2 against
// the v4 adapter, ten sequential clients, each echoed once; each client's
// close_notify, which it sends as soon as its input ends, is held until
// the server has echoed and closed (pion reads a close_notify queued with
// the data first), then delivered late, and dropped.
func TestGnuTLSClientsWithLateCloseNotify(t *testing.T) {
	dtlstest.RequireGnuTLS(t)
	inModes(t, bothVersions[:1], func(t *testing.T) {
		ln := listen(t)
		srv := dtlstest.Serve(ln, true, nil)
		t.Cleanup(func() {
			ln.Close()
			srv.Stop()
		})
		rec := udprelay.NewRecorder()
		rec.HoldAlerts(true)
		relay, err := udprelay.New(addrPort(ln.Addr()), rec.Hook)
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		const n = 10
		held := 0
		for i := range n {
			msg := fmt.Sprintf("gnutls %d", i)
			if out, err := dtlstest.GnuTLSClient(relay.Addr(), msg); err != nil {
				t.Fatalf("client %d: %v\n%s", i, err, out)
			}
			held += relay.Release()
		}
		dtlstest.WaitFor(t, "late close_notify dropped", func() bool {
			return ln.Stats().Filter.Strays[record.ReasonAlert] == uint64(held)
		})
		// A client that reads the server's close_notify before its input ends
		// sends none of its own.
		if s := ln.Stats(); s.Accepted != n || s.Created != n || s.HandshakeFailed != 0 || held == 0 {
			t.Fatalf("stats %+v, %d close_notify held", s, held)
		}
	})
}

func TestInvalidInput(t *testing.T) {
	if _, err := pionv4.Listen(nil, fixture.ServerV4(t)...); !errors.Is(err, strayfilter.ErrInvalidOption) {
		t.Fatalf("Listen(nil) = %v", err)
	}
	pc, err := net.ListenUDP("udp", loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pionv4.NewListener(pc, nil, demux.WithHandshakeTimeout(-1)); !errors.Is(err, strayfilter.ErrInvalidOption) {
		t.Fatalf("a negative handshake timeout: %v", err)
	}
	if _, err := pionv4.ListenAddr("udp", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1)}, fixture.ServerV4(t)...); err == nil {
		t.Fatal("ListenAddr bound an address this host does not have")
	}
}

// TestPacketListenerUnderPionListener: the inner listener for pion's own
// dtls.NewListener, so pion runs the handshakes and the filter still
// keeps strays out.
func TestPacketListenerUnderPionListener(t *testing.T) {
	inModes(t, bothVersions, func(t *testing.T) {
		pc, err := net.ListenUDP("udp", loopback)
		if err != nil {
			t.Fatal(err)
		}
		inner, err := pionv4.NewPacketListener(pc)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := dtls.NewListener(inner, serverOptions(t)...)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		closed := make(chan struct{}, 1)
		accepted := make(chan net.Addr, 4)
		srv := dtlstest.Serve(handshaking{acceptSpy{ln, accepted}}, false, func(net.Conn) { closed <- struct{}{} })
		s := closedSession(t, ln, func() { srv.CloseOpen() }, closed)
		s.relay.Inject(udprelay.ToServer, s.local, s.late(t))
		b := dial(t, s.relay.Addr())
		dtlstest.EchoOnce(t, b, "next client")
		b.Close()
		if n := len(accepted); n != 2 {
			t.Fatalf("application saw %d connections, want 2", n)
		}
		dtlstest.WaitFor(t, "the stray dropped", func() bool { return strays(inner.Stats()) >= 1 })
		ln.Close()
		srv.Stop()
	})
}

// handshaking completes each connection's handshake in Accept, as pion's
// examples do before using one.
type handshaking struct{ net.Listener }

func (h handshaking) Accept() (net.Conn, error) {
	c, err := h.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), fixture.HandshakeTimeout)
	defer cancel()
	if err := c.(*dtls.Conn).HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
