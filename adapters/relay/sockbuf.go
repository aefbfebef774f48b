package relay

import (
	"net"

	"github.com/straydtls/straydtls/internal/udpio"
)

// setBuffers asks for the configured buffers on every listening socket
// (WithReaders opens several) and warns when the kernel grants less.
func (r *Relay) setBuffers() {
	// Errors are the kernel's to report through what it grants, which is
	// the same for every socket.
	for _, pc := range append([]*net.UDPConn{r.pc}, r.extra...) {
		pc.SetReadBuffer(r.cfg.rcvbuf)
		pc.SetWriteBuffer(r.cfg.sndbuf)
	}
	rcv, snd := r.SocketBuffers()
	if rcv > 0 && rcv < r.cfg.rcvbuf {
		r.log.Warn("the kernel capped the listening socket's receive buffer; raise net.core.rmem_max (Linux) to get what was asked",
			"asked", r.cfg.rcvbuf, "granted", rcv)
	}
	if snd > 0 && snd < r.cfg.sndbuf {
		r.log.Warn("the kernel capped the listening socket's send buffer; raise net.core.wmem_max (Linux) to get what was asked",
			"asked", r.cfg.sndbuf, "granted", snd)
	}
}

// SocketBuffers reports the receive and send buffer sizes the kernel
// granted the listening socket, in the bytes that were asked for (Linux
// reports twice that, counting its bookkeeping), or zeros where it cannot
// tell.
func (r *Relay) SocketBuffers() (rcv, snd int) {
	return udpio.Buffers(r.pc)
}
