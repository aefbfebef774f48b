package demux

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/straydtls/straydtls/record"
)

// idleConn is a PacketConn that nobody reads: the benchmark drives
// dispatch itself.
type idleConn struct{}

func (idleConn) ReadFrom([]byte) (int, net.Addr, error)    { select {} }
func (idleConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (idleConn) Close() error                              { return nil }
func (idleConn) LocalAddr() net.Addr                       { return &net.UDPAddr{} }
func (idleConn) SetDeadline(time.Time) error               { return nil }
func (idleConn) SetReadDeadline(time.Time) error           { return nil }
func (idleConn) SetWriteDeadline(time.Time) error          { return nil }

// establishedMux returns a mux (not reading) with n established peers.
func establishedMux(tb testing.TB, n int) (*mux, []netip.AddrPort) {
	tb.Helper()
	cfg, _ := buildConfig(nil)
	m, err := newMux(idleConn{}, cfg, false, func(*Conn) {})
	if err != nil {
		tb.Fatal(err)
	}
	hello := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	peers := make([]netip.AddrPort, n)
	for i := range peers {
		peers[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 5684)
		m.dispatchOne(m.now(), peers[i], hello)
	}
	m.sh.Lock()
	conns := make([]*Conn, 0, n)
	for c := range m.all {
		conns = append(conns, c)
	}
	m.sh.Unlock()
	for _, c := range conns {
		if !m.completed(c) {
			tb.Fatal("not completed")
		}
		c.buf.Read(make([]byte, 64)) // the ClientHello
	}
	return m, peers
}

// BenchmarkDispatch is the demultiplexer's per-datagram cost for
// established peers, routing and delivery into the peer's buffer, with no
// socket: what the read loop adds to recvmmsg. Readers drain the buffers
// outside the timer.
func BenchmarkDispatch(b *testing.B) {
	const n = 256
	m, peers := establishedMux(b, n)
	appData := []byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 7, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}
	buf := make([]byte, 64)
	var parsed record.Parsed
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		parsed.Reset() // as the read loop does
		m.dispatch(0, peers[i%n], appData, &parsed)
		i++
		if i%(n*64) == 0 {
			b.StopTimer()
			for _, ap := range peers {
				c := m.sole[ap]
				for range 64 {
					c.buf.Read(buf)
				}
			}
			b.StartTimer()
		}
	}
	if s := m.snapshot(); s.BufferFull != 0 {
		b.Fatal(fmt.Sprint("buffers overflowed: ", s.BufferFull))
	}
}

// TestSoleRouteFollowsTheMachine: the lock-free route for an established
// peer is taken only while the machine would route the same way, and is
// dropped when a handshake opens beside the association or it ends.
func TestSoleRouteFollowsTheMachine(t *testing.T) {
	m, peers := establishedMux(t, 1)
	ap := peers[0]
	appData := []byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 7, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}
	m.dispatchOne(m.now(), ap, appData)
	c := m.sole[ap]
	if c == nil || !c.sole.Load() {
		t.Fatal("an established peer alone has no sole route")
	}
	// A ClientHello with a new random opens a handshake beside it: the
	// route goes, and the next datagram asks the machine.
	hello := make([]byte, 13+12+38)
	copy(hello, []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12 + 38, 1, 0, 0, 38, 0, 0, 0, 0, 0, 0, 0, 38, 0xfe, 0xfd})
	hello[30] = 0x77
	m.dispatchOne(m.now(), ap, hello)
	if _, ok := m.sole[ap]; ok {
		t.Fatal("the sole route outlived a handshake beside it")
	}
	// The plaintext alert a sole route must not deliver.
	if m.sm.SoleTakes([]byte{0x15, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0}) {
		t.Fatal("an epoch-0 alert would take the sole route")
	}
	c.Close()
	if c.sole.Load() {
		t.Fatal("a closed Conn keeps its sole flag")
	}
}

// BenchmarkDispatchCID is BenchmarkDispatch for tls12_cid records under
// WithConnectionIDs: routed by CID, with the source appended for the
// reader. Each CID's first record takes the locked path; the rest take the
// lock-free route (mux.soleCID) it sets up.
func BenchmarkDispatchCID(b *testing.B) {
	m, conns, peers, recs := completedPeers(b, []Option{WithConnectionIDs(8)}, func(c *Conn, cid []byte) []byte {
		c.Write(serverHelloCID(cid))
		// Room behind it, as in the read loop's batch buffers.
		return append(make([]byte, 0, 64), cidRecord(cid, 1)...)
	})
	dispatchLoop(b, m, conns, peers, recs)
	if s := m.snapshot(); s.BufferFull != 0 || s.UnknownCID != 0 {
		b.Fatalf("buffers overflowed (%d) or CIDs unknown (%d)", s.BufferFull, s.UnknownCID)
	}
}

// completedPeers opens a mux with opts and completes a handshake from each
// of 256 peers (10.1.x.y:5684), letting record write what the server says
// (a ServerHello naming cid, say) and return the record that peer sends
// once established.
func completedPeers(b *testing.B, opts []Option, record func(c *Conn, cid []byte) []byte) (*mux, []*Conn, []netip.AddrPort, [][]byte) {
	const n = 256
	cfg, err := buildConfig(opts)
	if err != nil {
		b.Fatal(err)
	}
	var conns []*Conn
	m, err := newMux(idleConn{}, cfg, false, func(c *Conn) { conns = append(conns, c) })
	if err != nil {
		b.Fatal(err)
	}
	hello := []byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	recs := make([][]byte, n)
	peers := make([]netip.AddrPort, n)
	buf := make([]byte, 128)
	for i := range n {
		peers[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 5684)
		m.dispatchOne(m.now(), peers[i], hello)
		c := conns[i]
		c.ReadFrom(buf)
		recs[i] = record(c, []byte{'c', 'i', 'd', 0, 0, 0, byte(i >> 8), byte(i)})
		if !m.completed(c) {
			b.Fatal("not completed")
		}
	}
	return m, conns, peers, recs
}

// dispatchLoop times dispatching recs[i] from peers[i] in turn, each to
// its Conn (conns[i]), and empties the Conns' buffers off the clock before
// they fill: the timed work is the routing alone.
func dispatchLoop(b *testing.B, m *mux, conns []*Conn, peers []netip.AddrPort, recs [][]byte) {
	n := len(peers)
	buf := make([]byte, 256)
	var parsed record.Parsed
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		parsed.Reset() // as the read loop does
		m.dispatch(0, peers[i%n], recs[i%n], &parsed)
		i++
		if i%(n*64) == 0 {
			b.StopTimer()
			for _, c := range conns {
				for range 64 {
					c.ReadFrom(buf)
				}
			}
			b.StartTimer()
		}
	}
}

// BenchmarkDispatchV4 is BenchmarkDispatch under the pion v4 listener's
// options (DTLS 1.3, CIDs of a learned length, so every datagram carries
// its source to the reader), for a DTLS 1.2 record, a DTLS 1.3 one, and a
// DTLS 1.3 one routed by its CID: 0 allocations each.
func BenchmarkDispatchV4(b *testing.B) {
	for _, kind := range []string{"dtls12", "dtls13", "dtls13-cid"} {
		b.Run("record="+kind, func(b *testing.B) {
			m, conns, peers, recs := completedPeers(b, []Option{WithDTLS13(true), WithConnectionIDs(LearnLength)}, func(c *Conn, cid []byte) []byte {
				var rec []byte
				switch kind {
				case "dtls12":
					rec = []byte{0x17, 0xfe, 0xfd, 0x00, 0x01, 0, 0, 0, 0, 0, 7, 0x00, 0x18}
				case "dtls13":
					rec = []byte{0x2f, 0, 7, 0x00, 0x18} // epoch 3, 16-bit sequence, length
				default:
					c.Write(serverHelloCID(cid))
					rec = append(append([]byte{0x3f}, cid...), 0, 7, 0x00, 0x18)
				}
				// Room behind it, as in the read loop's batch buffers.
				return append(append(make([]byte, 0, 96), rec...), make([]byte, 24)...)
			})
			dispatchLoop(b, m, conns, peers, recs)
			if s := m.snapshot(); s.BufferFull != 0 || s.UnknownCID != 0 || s.Invalid != 0 {
				b.Fatalf("buffers overflowed (%d), CIDs unknown (%d) or records invalid (%d)", s.BufferFull, s.UnknownCID, s.Invalid)
			}
		})
	}
}

// dispatchOne dispatches p as the read loop does, with nothing parsed yet.
func (m *mux) dispatchOne(now int64, ap netip.AddrPort, p []byte) {
	var parsed record.Parsed
	m.dispatch(now, ap, p, &parsed)
}
