package relay

import (
	"net"
	"net/netip"

	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/internal/udpio"
	"github.com/straydtls/straydtls/record"
)

// OnEnded has the relay call f with the upstream address of every
// association once it has ended: from then on nothing is forwarded on it.
func OnEnded(r *Relay, f func(upstream netip.AddrPort)) {
	r.ended = func(a net.Addr) {
		ap := a.(*net.UDPAddr).AddrPort()
		f(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
}

// handleOne handles one client datagram as a batch of one.
func (r *Relay) handleOne(d []byte, from netip.AddrPort) {
	b := &clientReads{bufs: [][]byte{d}, lens: []int{len(d)}, addrs: []netip.AddrPort{from}, parsed: make([]record.Parsed, 1), n: 1}
	var routes [1]assoc.Route[*upstreamConn]
	var w upstreamWriter
	r.handleClients(&w, b, 1, routes[:])
}

// ListeningSockets returns every socket the relay reads clients from.
func ListeningSockets(r *Relay) []*net.UDPConn { return append([]*net.UDPConn{r.pc}, r.extra...) }

// SocketBuffersOf is SocketBuffers for any socket.
func SocketBuffersOf(c *net.UDPConn) (rcv, snd int) { return udpio.Buffers(c) }

// HandleOne handles one client datagram as the readers do, for tests that
// forge sources no socket can bind.
func HandleOne(r *Relay, d []byte, from netip.AddrPort) { r.handleOne(d, from) }
