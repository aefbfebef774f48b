package benchmarks

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// growReadBuffer asks for a receive buffer beyond net.core.rmem_max when
// running as root (SO_RCVBUFFORCE), which a chunk of datagrams needs.
func growReadBuffer(b *testing.B, c *net.UDPConn, size int) {
	rc, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) })
	if serr != nil {
		c.SetReadBuffer(size)
	}
}
