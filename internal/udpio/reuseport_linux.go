package udpio

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// ReusePort sets SO_REUSEPORT, so that several sockets bind one address
// and the kernel spreads their peers among them; it has the signature of
// net.ListenConfig.Control. The syscall package does not name
// SO_REUSEPORT, whose value differs between architectures.
func ReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
