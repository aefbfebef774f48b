package pionv4_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv4"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/udprelay"
)

// cidModes are both versions with CIDs, pion following an authenticated
// record's new address at once (Unsafe) or after a return routability
// check (RRC, RFC 9853).
var cidModes = []mode{
	{version: protocol.Version1_2, cid: true, policy: dtls.CIDPathMigrationUnsafe},
	{version: protocol.Version1_3, cid: true, policy: dtls.CIDPathMigrationUnsafe},
	{version: protocol.Version1_2, cid: true, policy: dtls.CIDPathMigrationRRC},
	{version: protocol.Version1_3, cid: true, policy: dtls.CIDPathMigrationRRC},
}

func policyName(p dtls.CIDPathMigrationPolicy) string {
	switch p {
	case dtls.CIDPathMigrationUnsafe:
		return "unsafe"
	case dtls.CIDPathMigrationRRC:
		return "rrc"
	}
	return "reject"
}

// inCIDModes is inModes with the policy in the subtest name.
func inCIDModes(t *testing.T, modes []mode, f func(t *testing.T)) {
	for _, m := range modes {
		t.Run(m.String()+"-"+policyName(m.policy), func(t *testing.T) {
			cur = m
			defer func() { cur = mode{version: protocol.Version1_2} }()
			f(t)
		})
	}
}

// dialThrough runs the mode's client handshake through relay.
func dialThrough(t *testing.T, relay *udprelay.Relay) (*net.UDPConn, net.Conn) {
	t.Helper()
	return dtlstest.DialThrough(t, relay, dialV4(t, 5*time.Second))
}

// TestRebindingClient: a pion v4 client with CIDs behind a NAT that
// rebinds its port mid-association keeps its association, in DTLS 1.2 and
// 1.3, whether pion follows its new address at once or after a return
// routability check: through pionv4.Listen as through pion's own
// listener. Without CIDs on the server the association cannot follow.
func TestRebindingClient(t *testing.T) {
	const before, after = 3, 10
	inCIDModes(t, cidModes, func(t *testing.T) {
		for _, c := range []struct {
			name   string
			listen func(t *testing.T) net.Listener
			want   int
		}{
			{"adapter", func(t *testing.T) net.Listener { return listen(t) }, after},
			{"pion", pionListen, after},
		} {
			t.Run(c.name, func(t *testing.T) {
				ln := c.listen(t)
				srv := dtlstest.Serve(ln, false, nil)
				t.Cleanup(func() {
					ln.Close()
					srv.Stop()
				})
				got := dtlstest.RebindingClient(t, ln.Addr(), dialV4(t, 5*time.Second), before, after)
				t.Logf("%s: %d of %d messages after the rebinding echoed", c.name, got, after)
				if got != c.want {
					t.Fatalf("%d of %d messages after the rebinding echoed; want %d", got, after, c.want)
				}
				if dl, ok := ln.(*demux.Listener); ok {
					// The client has closed by now: the association may be
					// over.
					if s := dl.Stats(); s.Moved != 1 || s.Created != 1 || s.MovedDetached != 0 {
						t.Fatalf("stats %+v; want one association, moved once", s)
					}
				}
			})
		}
	})
}

// TestPathMigration: a DTLS 1.3 client with CIDs moves itself to a new
// socket with pion's path API (Conn.AddPath, Path.Probe, Path.Switch):
// its probe uses a CID the server issued in a NewConnectionID message,
// encrypted, and the server checks the new path (RFC 9853) before it
// takes it. The association follows through pionv4.Listen as through
// pion's own listener; the probe alone moves nothing.
func TestPathMigration(t *testing.T) {
	inCIDModes(t, []mode{{version: protocol.Version1_3, cid: true, policy: dtls.CIDPathMigrationRRC}}, func(t *testing.T) {
		for _, side := range []struct {
			name   string
			listen func(t *testing.T) net.Listener
		}{
			{"adapter", func(t *testing.T) net.Listener { return listen(t) }},
			{"pion", pionListen},
		} {
			t.Run(side.name, func(t *testing.T) {
				ln := side.listen(t)
				srv := dtlstest.Serve(ln, false, nil)
				t.Cleanup(func() {
					ln.Close()
					srv.Stop()
				})
				pc, err := net.ListenUDP("udp", loopback)
				if err != nil {
					t.Fatal(err)
				}
				c, err := dtls.Client(pc, ln.Addr(), clientOptions(t)...)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := c.HandshakeContext(ctx); err != nil {
					t.Fatal(err)
				}
				dtlstest.EchoOnce(t, c, "on the first path")
				next, err := net.ListenUDP("udp", loopback)
				if err != nil {
					t.Fatal(err)
				}
				path, err := c.AddPath(next)
				if err != nil {
					t.Fatal(err)
				}
				if err := path.Probe(ctx); err != nil {
					t.Fatalf("probe of %v: %v", next.LocalAddr(), err)
				}
				dl, _ := ln.(*demux.Listener)
				if dl != nil {
					if s := dl.Stats(); s.Moved != 0 {
						t.Fatalf("the probe moved the association: %+v", s)
					}
				}
				if err := path.Switch(); err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					dtlstest.EchoOnce(t, c, fmt.Sprint("on the new path ", i))
				}
				if dl != nil {
					s := dl.Stats()
					if s.Moved != 1 || s.Conns != 1 || s.Created != 1 || s.UnknownCID != 0 {
						t.Fatalf("stats %+v; want one association, moved once to the new path", s)
					}
				}
			})
		}
	})
}

// TestLateCIDRecordsOfAClosedAssociation: once the server closed an
// association with CIDs, its client's records that carry the CID,
// replayed from a new port and from the old one, make no connection and
// reach nothing, and the next client is served at once.
func TestLateCIDRecordsOfAClosedAssociation(t *testing.T) {
	inCIDModes(t, cidModes[:2], func(t *testing.T) {
		ln := listen(t)
		closed := make(chan struct{}, 2)
		srv := dtlstest.Serve(ln, false, func(net.Conn) { closed <- struct{}{} })
		t.Cleanup(func() {
			ln.Close()
			srv.Stop()
		})
		capt := &dtlstest.InFlight{}
		relay, err := udprelay.New(addrPort(ln.Addr()), capt.Hook)
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		uc, a := dialThrough(t, relay)
		dtlstest.EchoOnce(t, a, "the only message")
		if n := srv.CloseOpen(); n != 1 {
			t.Fatalf("the server had %d connections open, want 1", n)
		}
		<-closed
		a.Close()
		if err := relay.Flush(); err != nil {
			t.Fatal(err)
		}
		dtlstest.RunLateRecordsOfAClosedAssociation(t, ln, relay, uc.LocalAddr().(*net.UDPAddr).AddrPort(), capt.WithCID(), func() net.Conn {
			return dial(t, addrPort(ln.Addr()))
		})
	})
}

// liveCIDClient starts an echo server on the adapter and one client of
// the mode through a capturing relay, which has echoed once; it returns
// the datagrams with a CID the client sent so far.
func liveCIDClient(t *testing.T) (*demux.Listener, net.Conn, [][]byte) {
	t.Helper()
	ln := listen(t)
	srv := dtlstest.Serve(ln, false, nil)
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	capt := &dtlstest.InFlight{}
	relay, err := udprelay.New(addrPort(ln.Addr()), capt.Hook)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	_, c := dialThrough(t, relay)
	t.Cleanup(func() { c.Close() })
	dtlstest.EchoOnce(t, c, "first")
	sent := capt.WithCID()
	if len(sent) == 0 {
		t.Fatal("the client sent no record with a CID")
	}
	return ln, c, sent
}

// cidOf is the CID a captured client datagram carries.
func cidOf(t *testing.T, d []byte) []byte {
	cid, ok := record.ConnectionID(d, fixture.CIDLength)
	if !ok {
		t.Fatalf("% x carries no CID", d[:min(len(d), 16)])
	}
	return cid
}

// forgedCIDRecord is a record that carries cid, in the mode's format, with
// garbage for ciphertext.
func forgedCIDRecord(cid []byte, seq int, fill byte) []byte {
	if cur.version == protocol.Version1_3 {
		// 0b00111011: CID, 16-bit sequence number, length, epoch bits 3.
		d := append([]byte{0x3f}, cid...)
		d = append(d, byte(seq>>8), byte(seq), 0, 40)
		return append(d, bytes.Repeat([]byte{fill}, 40)...)
	}
	d := append([]byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, byte(seq >> 16), byte(seq >> 8), byte(seq)}, cid...)
	return append(append(d, 0, 40), bytes.Repeat([]byte{fill}, 40)...)
}

// TestForgedCIDRecordFromANewAddress: a record carrying a live
// association's CID from a new address, forged or a replay of the
// client's own, reaches pion, which cannot authenticate it (or has seen
// it), and moves nothing: the server's answers still go to the client.
func TestForgedCIDRecordFromANewAddress(t *testing.T) {
	inCIDModes(t, cidModes, func(t *testing.T) {
		ln, c, genuine := liveCIDClient(t)
		forged := forgedCIDRecord(cidOf(t, genuine[0]), 0x7f00, 0xa5)
		dtlstest.RunCIDRecordsFromANewAddress(t, ln, c, append(genuine, forged))
	})
}

// TestForgedCIDFlood: 5,000 forged records with CIDs from 1,000 loopback
// addresses at 5,000 a second, half with random CIDs and half with a live
// client's own, leave no state behind and do not move or disturb the live
// client, which keeps echoing throughout.
func TestForgedCIDFlood(t *testing.T) {
	inCIDModes(t, cidModes[:2], func(t *testing.T) {
		ln, c, genuine := liveCIDClient(t)
		cid := cidOf(t, genuine[0])
		dtlstest.RunForgedCIDFlood(t, ln, c, 5000, func(i int) []byte {
			id := cid
			if i%2 == 1 {
				id = []byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 0xee, 0xee, 0xee, 0xee}
			}
			return forgedCIDRecord(id, i, byte(i))
		})
	})
}

// TestConnectionIDOptionIsRead: pionv4 reads dtls.WithConnectionID out of
// pion's opaque options, so that it learns every CID pion issues: the
// guard for a pion release that changes what options are.
func TestConnectionIDOptionIsRead(t *testing.T) {
	calls := 0
	gen := func() []byte { calls++; return []byte("cid-1234") }
	got, ok := pionv4.PeekConnectionID(append(fixture.ServerV4(t), dtls.WithConnectionID(gen, dtls.CIDPathMigrationRRC)))
	if !ok || got.Policy != dtls.CIDPathMigrationRRC {
		t.Fatalf("dtls.WithConnectionID not read: %+v %v", got, ok)
	}
	before := calls
	if id := got.Generator(); string(id) != "cid-1234" || calls != before+1 {
		t.Fatalf("the generator read is not the one given: %q", id)
	}
	if _, ok := pionv4.PeekConnectionID(fixture.ServerV4(t)); ok {
		t.Fatal("a generator read where none was given")
	}
}
