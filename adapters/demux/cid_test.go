package demux

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// serverHelloCID is a ServerHello whose connection_id extension names cid.
func serverHelloCID(cid []byte) []byte {
	body := append([]byte{0xfe, 0xfd}, bytes.Repeat([]byte{0x5e}, 32)...)
	ext := append([]byte{0, 54, 0, byte(1 + len(cid)), byte(len(cid))}, cid...)
	body = append(append(body, 0, 0xc0, 0x2b, 0, 0, byte(len(ext))), ext...)
	n := len(body)
	h := []byte{2, 0, 0, byte(n), 0, 1, 0, 0, 0, 0, 0, byte(n)}
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, byte(len(h) + n)}
	return append(append(rec, h...), body...)
}

func cidRecord(cid []byte, payload byte) []byte {
	d := append([]byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9}, cid...)
	return append(d, 0, 4, payload, payload, payload, payload)
}

// TestCIDRoutingAndMove: under WithConnectionIDs, a tls12_cid record goes
// to its CID's Conn from any address and ReadFrom reports that address;
// only the Conn's own write to a new address moves the peer, and then
// the old address's datagrams no longer reach it, lock-free route or not.
func TestCIDRoutingAndMove(t *testing.T) {
	cfg, err := buildConfig([]Option{WithConnectionIDs(8)})
	if err != nil {
		t.Fatal(err)
	}
	var c *Conn
	m, err := newMux(idleConn{}, cfg, false, func(nc *Conn) { c = nc })
	if err != nil {
		t.Fatal(err)
	}
	old := netip.MustParseAddrPort("10.0.0.1:5684")
	moved := netip.MustParseAddrPort("10.0.0.1:40000")
	hello := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	m.dispatchOne(m.now(), old, hello)
	buf := make([]byte, 256)
	if _, from, err := c.ReadFrom(buf); err != nil || from.(*net.UDPAddr).AddrPort() != old {
		t.Fatalf("ClientHello read from %v, %v", from, err)
	}
	cid := []byte("cid-0001")
	c.Write(serverHelloCID(cid))
	if !m.completed(c) {
		t.Fatal("not completed")
	}
	appData := []byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 7, 0x00, 0x02, 1, 2}
	m.dispatchOne(m.now(), old, appData) // sets up the lock-free route
	c.ReadFrom(buf)
	// With room behind it, as in the read loop's batch buffers, the source
	// goes in place; without (the other dispatches here), it is copied.
	m.dispatchOne(m.now(), moved, append(make([]byte, 0, 128), cidRecord(cid, 7)...))
	n, from, err := c.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], cidRecord(cid, 7)) || from.(*net.UDPAddr).AddrPort() != moved {
		t.Fatalf("read %x from %v (%v); want the CID record from %v", buf[:n], from, err, moved)
	}
	if c.Peer() != old {
		t.Fatal("a record moved the peer")
	}
	c.WriteTo([]byte("answer"), from)
	if c.Peer() != moved || m.snapshot().Moved != 1 {
		t.Fatalf("peer %v after the stack wrote to %v", c.Peer(), moved)
	}
	before := m.snapshot().UnknownPeer
	m.dispatchOne(m.now(), moved, appData)
	m.dispatchOne(m.now(), moved, appData) // the lock-free route, now for the new address
	for range 2 {
		if _, from, err := c.ReadFrom(buf); err != nil || from.(*net.UDPAddr).AddrPort() != moved {
			t.Fatalf("read from %v (%v); want %v", from, err, moved)
		}
	}
	// The lock-free route's table still names the Conn under the old
	// address; it must not take the old address's datagrams.
	m.dispatchOne(m.now(), old, appData)
	if s := m.snapshot(); s.UnknownPeer != before+1 {
		t.Fatalf("the old address's datagram: unknown-peer %d, want %d", s.UnknownPeer, before+1)
	}
	rec := cidRecord(cid, 9)
	if a := testing.AllocsPerRun(100, func() {
		m.dispatchOne(m.now(), moved, rec)
		c.ReadFrom(buf)
	}); a != 0 {
		t.Fatalf("a CID record costs %v allocations", a)
	}
	m.dispatchOne(m.now(), moved, cidRecord([]byte("cid-none"), 1))
	if s := m.snapshot(); s.UnknownCID != 1 {
		t.Fatalf("unknown CIDs %d", s.UnknownCID)
	}
}

// TestCIDSoleRouteFollowsTheMachine: the lock-free route by CID holds only
// while the machine would route the same way: not after its association
// ended, not once another association took the CID, and never for a
// record rule 5 drops.
func TestCIDSoleRouteFollowsTheMachine(t *testing.T) {
	cfg, err := buildConfig([]Option{WithConnectionIDs(8)})
	if err != nil {
		t.Fatal(err)
	}
	var conns []*Conn
	m, err := newMux(idleConn{}, cfg, false, func(c *Conn) { conns = append(conns, c) })
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	cid := []byte("cid-0001")
	establish := func(ap netip.AddrPort, rnd byte) *Conn {
		hello := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12 + 34, 1, 0, 0, 34, 0, 0, 0, 0, 0, 0, 0, 34, 0xfe, 0xfd}
		hello = append(hello, bytes.Repeat([]byte{rnd}, 32)...)
		m.dispatchOne(m.now(), ap, hello)
		c := conns[len(conns)-1]
		c.ReadFrom(buf)
		c.Write(serverHelloCID(cid))
		if !m.completed(c) {
			t.Fatal("not completed")
		}
		return c
	}
	read := func(c *Conn) bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, _, err := c.ReadFrom(buf)
		c.SetReadDeadline(time.Time{})
		return err == nil
	}
	a := establish(netip.MustParseAddrPort("10.0.0.1:1000"), 1)
	from := netip.MustParseAddrPort("10.0.0.9:9")
	m.dispatchOne(m.now(), from, cidRecord(cid, 1)) // takes the lock, sets the route
	m.dispatchOne(m.now(), from, cidRecord(cid, 2)) // the route
	if !read(a) || !read(a) {
		t.Fatal("a's CID records did not reach it")
	}
	// Rule 5 on the route: a plaintext heartbeat behind the CID record.
	withHeartbeat := append(cidRecord(cid, 3), 24, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0x7f, 0, 1, 0, 1, 1)
	m.dispatchOne(m.now(), from, withHeartbeat)
	if read(a) || m.snapshot().Invalid != 1 {
		t.Fatal("the lock-free route delivered an epoch-0 heartbeat")
	}
	// Another association names the same CID: it takes the route.
	b := establish(netip.MustParseAddrPort("10.0.0.2:2000"), 2)
	m.dispatchOne(m.now(), from, cidRecord(cid, 4))
	if read(a) || !read(b) {
		t.Fatal("the CID's record went to the association that lost it")
	}
	m.dispatchOne(m.now(), from, cidRecord(cid, 5)) // b's route now
	if !read(b) {
		t.Fatal("b's CID record did not reach it")
	}
	// b ends: its CID is unknown, the route with it.
	b.Close()
	m.dispatchOne(m.now(), from, cidRecord(cid, 6))
	if read(b) || read(a) || m.snapshot().UnknownCID != 1 {
		t.Fatalf("a closed association's CID record was delivered (unknown CIDs %d)", m.snapshot().UnknownCID)
	}
}
