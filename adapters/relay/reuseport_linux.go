package relay

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort lets several sockets bind the listening address (WithReaders).
// golang.org/x/sys comes with golang.org/x/net; the syscall package does
// not name SO_REUSEPORT, whose value differs between architectures.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
