package relay

import (
	"net"
	"net/netip"

	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/strayfilter"
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
	b := strayfilter.NewBatch(1, 0)
	b.Bufs[0], b.N[0], b.Addrs[0] = d, len(d), from
	var routes [1]assoc.Route[*upstreamConn]
	var w upstreamWriter
	r.handleClients(&w, b, 1, routes[:])
}

// ListeningSockets returns every socket the relay reads clients from.
func ListeningSockets(r *Relay) []*net.UDPConn { return append([]*net.UDPConn{r.pc}, r.extra...) }

// SocketBuffersOf is SocketBuffers for any socket.
func SocketBuffersOf(c *net.UDPConn) (rcv, snd int) { return socketBuffers(c) }
