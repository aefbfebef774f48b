package pionv3_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/straydtls/straydtls/adapters/demux"
	"github.com/straydtls/straydtls/adapters/pionv3"
	"github.com/straydtls/straydtls/internal/dtlstest"
	"github.com/straydtls/straydtls/internal/fixture"
	"github.com/straydtls/straydtls/udprelay"
)

func listenCID(t *testing.T, opts ...demux.Option) *demux.Listener {
	t.Helper()
	ln, err := pionv3.Listen("udp", loopback, fixture.ServerV3CID(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// cidClient runs a pion client with CIDs to ln through a relay that
// captures what it sends; the relay closes with the test.
func cidClient(t *testing.T, ln net.Listener) (*udprelay.Relay, *dtlstest.InFlight, *net.UDPConn, net.Conn) {
	t.Helper()
	capt := &dtlstest.InFlight{}
	relay, err := udprelay.New(ln.Addr().(*net.UDPAddr).AddrPort(), capt.Hook)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	uc, c := dtlstest.DialThrough(t, relay, dtlstest.DialV3With(fixture.ClientV3CID(t), 5*time.Second))
	return relay, capt, uc, c
}

// TestRebindingClient: a pion v3 client with Connection IDs behind a NAT
// that rebinds its port mid-association keeps its association: once the
// server has answered at the new port (dtlstest.RebindingClient's probe), every
// message is echoed through pionv3.Listen, as through pion's own
// dtls.Listen, and through pion's dtls.NewListener over
// pionv3.NewPacketListener. Without CIDs the association cannot follow,
// and no probe is answered.
func TestRebindingClient(t *testing.T) {
	const before, after = 3, 10
	for _, c := range []struct {
		name   string
		listen func(t *testing.T) net.Listener
		client func(t testing.TB) *dtls.Config
		want   int
	}{
		{"adapter", func(t *testing.T) net.Listener { return listenCID(t) }, fixture.ClientV3CID, after},
		{"pion", func(t *testing.T) net.Listener {
			ln, err := dtls.Listen("udp", loopback, fixture.ServerV3CID(t))
			if err != nil {
				t.Fatal(err)
			}
			return ln
		}, fixture.ClientV3CID, after},
		{"packet-listener-under-pion", func(t *testing.T) net.Listener {
			pc, err := net.ListenUDP("udp", loopback)
			if err != nil {
				t.Fatal(err)
			}
			cfg := fixture.ServerV3CID(t)
			inner, err := pionv3.NewPacketListener(pc, pionv3.ConnectionIDs(cfg))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := dtls.NewListener(inner, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return ln
		}, fixture.ClientV3CID, after},
		{"adapter-without-cids", func(t *testing.T) net.Listener { return listen(t) }, fixture.ClientV3CID, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln := c.listen(t)
			srv := dtlstest.Serve(ln, false, nil)
			t.Cleanup(func() {
				ln.Close()
				srv.Stop()
			})
			got := dtlstest.RebindingClient(t, ln.Addr(), dtlstest.DialV3With(c.client(t), 5*time.Second), before, after)
			t.Logf("%s: %d of %d messages after the rebinding echoed", c.name, got, after)
			if got != c.want {
				t.Fatalf("%d of %d messages after the rebinding echoed; want %d", got, after, c.want)
			}
			if dl, ok := ln.(*demux.Listener); ok && c.want > 0 {
				if s := dl.Stats(); s.Moved != 1 || s.Conns != 1 || s.Created != 1 {
					t.Fatalf("stats %+v; want one association, moved once", s)
				}
			}
		})
	}
}

// TestLateCIDRecordsOfAClosedAssociation: once the server closed an
// association with CIDs, its client's tls12_cid records, replayed from a
// new port and from the old one, make no connection and reach nothing,
// and the next client is served at once.
func TestLateCIDRecordsOfAClosedAssociation(t *testing.T) {
	ln := listenCID(t)
	closed := make(chan struct{}, 2)
	// The server closes once the client has read its echo (CloseOpen), not
	// at once: a pion v3 client with the echo and the close_notify both
	// queued reads one of the two at random (Conn.Read selects on both).
	srv := dtlstest.Serve(ln, false, func(net.Conn) { closed <- struct{}{} })
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	relay, capt, uc, a := cidClient(t, ln)
	dtlstest.EchoOnce(t, a, "the only message")
	if n := srv.CloseOpen(); n != 1 {
		t.Fatalf("the server had %d connections open, want 1", n)
	}
	<-closed
	a.Close()
	if err := relay.Flush(); err != nil {
		t.Fatal(err)
	}
	dtlstest.RunLateRecordsOfAClosedAssociation(t, ln, relay, uc.LocalAddr().(*net.UDPAddr).AddrPort(), capt.All(), func() net.Conn {
		return dial(t, addrPort(ln.Addr()))
	})
}

// liveCIDClient starts an echo server on the adapter with CIDs and one
// client through a capturing relay, which has echoed once; it returns the
// tls12_cid datagrams the client sent so far. Everything ends with t.
func liveCIDClient(t *testing.T) (*demux.Listener, net.Conn, [][]byte) {
	t.Helper()
	ln := listenCID(t)
	srv := dtlstest.Serve(ln, false, nil)
	t.Cleanup(func() {
		ln.Close()
		srv.Stop()
	})
	_, capt, _, c := cidClient(t, ln)
	t.Cleanup(func() { c.Close() })
	dtlstest.EchoOnce(t, c, "first")
	sent := capt.WithCID()
	if len(sent) == 0 {
		t.Fatal("the client sent no tls12_cid record")
	}
	return ln, c, sent
}

// TestForgedCIDRecordFromANewAddress: a tls12_cid record carrying a live
// association's CID from a new address, forged or a replay of the
// client's own, reaches pion, which cannot authenticate it (or has seen
// it), and changes nothing: the server's answers still go to the client.
func TestForgedCIDRecordFromANewAddress(t *testing.T) {
	ln, c, genuine := liveCIDClient(t)
	cid := genuine[0][11 : 11+fixture.CIDLength]
	forged := append(append([]byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0x7f, 0}, cid...), 0, 40)
	forged = append(forged, bytes.Repeat([]byte{0xa5}, 40)...)
	dtlstest.RunCIDRecordsFromANewAddress(t, ln, c, append(genuine, forged))
}

// TestForgedCIDFlood: 5,000 forged tls12_cid records from 1,000 loopback
// addresses at 5,000 a second, half with random CIDs and half with a live
// client's own, leave no state behind and do not move or disturb the live
// client, which keeps echoing throughout.
func TestForgedCIDFlood(t *testing.T) {
	ln, c, genuine := liveCIDClient(t)
	cid := genuine[0][11 : 11+fixture.CIDLength]
	dtlstest.RunForgedCIDFlood(t, ln, c, 5000, func(i int) []byte {
		d := []byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		if i%2 == 0 {
			d = append(d, cid...)
		} else {
			d = append(d, byte(i>>24), byte(i>>16), byte(i>>8), byte(i), 0xee, 0xee, 0xee, 0xee)
		}
		return append(append(d, 0, 32), bytes.Repeat([]byte{byte(i)}, 32)...)
	})
}
