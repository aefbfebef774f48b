package relay

import (
	"net"
	"net/netip"
)

// OnEnded has the relay call f with the upstream address of every
// association once it has ended: from then on nothing is forwarded on it.
func OnEnded(r *Relay, f func(upstream netip.AddrPort)) {
	r.ended = func(a net.Addr) {
		ap := a.(*net.UDPAddr).AddrPort()
		f(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
}
