package demux

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
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
	m.dispatch(m.now(), old, hello)
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
	m.dispatch(m.now(), old, appData) // sets up the lock-free route
	c.ReadFrom(buf)
	m.dispatch(m.now(), moved, cidRecord(cid, 7))
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
	m.dispatch(m.now(), moved, appData)
	m.dispatch(m.now(), moved, appData) // the lock-free route, now for the new address
	for range 2 {
		if _, from, err := c.ReadFrom(buf); err != nil || from.(*net.UDPAddr).AddrPort() != moved {
			t.Fatalf("read from %v (%v); want %v", from, err, moved)
		}
	}
	// The lock-free route's table still names the Conn under the old
	// address; it must not take the old address's datagrams.
	m.dispatch(m.now(), old, appData)
	if s := m.snapshot(); s.UnknownPeer != before+1 {
		t.Fatalf("the old address's datagram: unknown-peer %d, want %d", s.UnknownPeer, before+1)
	}
	rec := cidRecord(cid, 9)
	if a := testing.AllocsPerRun(100, func() {
		m.dispatch(m.now(), moved, rec)
		c.ReadFrom(buf)
	}); a != 0 {
		t.Fatalf("a CID record costs %v allocations", a)
	}
	m.dispatch(m.now(), moved, cidRecord([]byte("cid-none"), 1))
	if s := m.snapshot(); s.UnknownCID != 1 {
		t.Fatalf("unknown CIDs %d", s.UnknownCID)
	}
}
