package dtlstest

import (
	"bytes"
	"net"
	"slices"
	"testing"
	"time"
)

// Epoch0Forgery is a datagram anyone can write to a server from a client's
// address: records at epoch 0 need no keys.
type Epoch0Forgery struct {
	Name     string
	Datagram []byte
}

// epoch0Record is a DTLSPlaintext record at epoch 0 with a sequence number
// far past anything a handshake used, so no replay window hides it.
func epoch0Record(ct byte, body ...byte) []byte {
	return append([]byte{ct, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0x7f, 0, 1, 0, byte(len(body))}, body...)
}

// Epoch0Forgeries are records no stack accepts on an established
// association, alone and behind a record of the current epoch (stacks act
// on every record of a datagram in turn).
func Epoch0Forgeries() []Epoch0Forgery {
	garbage := append([]byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0x7f, 0, 1, 0, 24}, bytes.Repeat([]byte{0x5a}, 24)...)
	return []Epoch0Forgery{
		{"heartbeat", epoch0Record(24, 1, 0, 1, 0)},
		{"tls12_cid", epoch0Record(25, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"ack", epoch0Record(26, 0, 0)},
		{"unassigned-type-27", epoch0Record(27, 0, 0)},
		{"application-data", epoch0Record(23, 1, 2, 3)},
		{"close_notify", epoch0Record(21, 1, 0)},
		{"heartbeat-behind-epoch-1", append(append([]byte(nil), garbage...), epoch0Record(24, 1, 0, 1, 0)...)},
		{"close_notify-behind-epoch-1", append(append([]byte(nil), garbage...), epoch0Record(21, 2, 0)...)},
	}
}

// Epoch0Survives runs one client of the server at addr: a handshake, an
// echo, then f written from the client's own address, then another echo.
// It reports whether the association survived the forgery. The forgery
// and the second echo leave the same socket for the same server, so on
// loopback the server reads them in that order.
func Epoch0Survives(t *testing.T, addr *net.UDPAddr, dial func(uc *net.UDPConn) (net.Conn, error), f Epoch0Forgery) bool {
	t.Helper()
	uc, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(uc)
	if err != nil {
		uc.Close()
		t.Fatalf("%s: handshake: %v", f.Name, err)
	}
	defer c.Close()
	EchoOnce(t, c, "before")
	if _, err := uc.Write(f.Datagram); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("after")); err != nil {
		return false
	}
	// A killed association answers at once with a fatal alert or a
	// close_notify; a live one echoes within a loopback round trip.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "after"
}

// Epoch0Suite sends every forgery to a client's association through an
// adapter, which must survive them all, and through pion's own listener,
// where Kills lists the forgeries it must die of: the contrast shows the
// forgeries reach pion and what the adapter spares it.
type Epoch0Suite struct {
	Listen, PionListen func(t *testing.T) net.Listener
	Dial               func(uc *net.UDPConn) (net.Conn, error)
	Kills              []string
}

// Run runs both sides as subtests.
func (s Epoch0Suite) Run(t *testing.T) {
	for _, side := range []struct {
		name   string
		listen func(t *testing.T) net.Listener
	}{{"adapter", s.Listen}, {"pion", s.PionListen}} {
		t.Run(side.name, func(t *testing.T) {
			ln := side.listen(t)
			srv := Serve(ln, false, nil)
			t.Cleanup(func() {
				ln.Close()
				srv.Stop()
			})
			for _, f := range Epoch0Forgeries() {
				survived := Epoch0Survives(t, ln.Addr().(*net.UDPAddr), s.Dial, f)
				t.Logf("%s: %s: survived %v", side.name, f.Name, survived)
				want := side.name == "adapter" || !slices.Contains(s.Kills, f.Name)
				if survived != want {
					t.Errorf("%s: association survived a forged %s: %v, want %v", side.name, f.Name, survived, want)
				}
			}
		})
	}
}
