//go:build unix && !linux

package relay

import "syscall"

type readerSys struct{}

// readFD reads datagram by datagram until the queue is empty; it returns
// false to park in the netpoller when nothing was read.
func (r *rawReader) readFD(fd uintptr) bool {
	b := r.b
	for b.n < len(b.bufs) {
		buf := getBuf()
		n, err := syscall.Read(int(fd), buf[:])
		if err != nil {
			putBuf(buf)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				return b.n > 0
			}
			r.err = err
			return true
		}
		b.bufs[b.n], b.lens[b.n] = buf, n
		b.n++
	}
	return true
}
