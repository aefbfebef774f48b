package relay

import (
	"github.com/straydtls/straydtls/internal/udpio"
	"golang.org/x/sys/unix"
)

// readerSys is the recvmmsg headers: one system call takes the whole
// queue, without a second one to find it empty (+15 % records/s through
// the relay, benchmarks/README.md).
type readerSys struct {
	m *udpio.Msgs
}

// readFD reads what is queued; it returns false to park in the netpoller
// when nothing was.
func (r *rawReader) readFD(fd uintptr) bool {
	b, s := r.b, &r.sys
	if s.m == nil {
		s.m = udpio.NewMsgs(len(b.bufs), false) // a connected socket: no addresses
	}
	for i := range b.bufs {
		buf := getBuf()
		b.bufs[i] = buf
		s.m.SetRecv(i, buf[:])
	}
	got, errno := s.m.Recv(fd, len(b.bufs))
	for i := range b.bufs {
		if i < got {
			b.lens[i] = s.m.Len(i)
			continue
		}
		putBuf(b.bufs[i])
		b.bufs[i] = nil
	}
	b.n = got
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return false
	case errno != 0:
		// On a connected UDP socket: an ICMP report, which ends nothing
		// but is worth a warning.
		r.err = errno
	}
	return true
}
