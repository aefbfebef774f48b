//go:build unix

package relay

import (
	"net"
	"syscall"
)

// upstreamReader reads an upstream socket without holding a buffer while
// it waits: the goroutine parks in the netpoller with none, and only a
// datagram that has arrived borrows one from the pool. So an idle
// association (or a forged one waiting to be evicted) costs its goroutine
// and socket, not 64 KiB.
func upstreamReader(c net.Conn) func(handle func([]byte)) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return bufferedReader(c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return bufferedReader(c)
	}
	return func(handle func([]byte)) error {
		var (
			buf  *[maxDatagram]byte
			n    int
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			b := getBuf()
			n, rerr = syscall.Read(int(fd), b[:])
			if rerr == syscall.EAGAIN || rerr == syscall.EINTR {
				putBuf(b)
				return false // park until the next datagram
			}
			if rerr == nil {
				buf = b
			} else {
				putBuf(b)
			}
			return true
		})
		if buf != nil {
			// Outside the read: handle may close the socket, and a close
			// waits for reads in progress to finish.
			handle(buf[:n])
			putBuf(buf)
		}
		if err != nil {
			return err
		}
		return rerr
	}
}
