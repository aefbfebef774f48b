package udpio

import "net"

// Buffers reports the receive and send buffer sizes the kernel granted c,
// in the bytes that were asked for (Linux reports twice that, counting its
// bookkeeping), or zeros where it cannot tell.
func Buffers(c *net.UDPConn) (rcv, snd int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0
	}
	rc.Control(func(fd uintptr) {
		rcv, snd = getBuffers(fd)
	})
	return rcv, snd
}
