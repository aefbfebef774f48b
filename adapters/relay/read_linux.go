package relay

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr; Go pads it like C on every Linux port.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// readerSys is the recvmmsg headers: one system call takes the whole
// queue, without a second one to find it empty (+15 % records/s through
// the relay, benchmarks/README.md).
type readerSys struct {
	hdrs [len(batch{}.bufs)]mmsghdr
	iovs [len(batch{}.bufs)]unix.Iovec
}

// readFD reads what is queued; it returns false to park in the netpoller
// when nothing was.
func (r *rawReader) readFD(fd uintptr) bool {
	b, s := r.b, &r.sys
	for i := range s.hdrs {
		buf := getBuf()
		b.bufs[i] = buf
		s.iovs[i].Base = &buf[0]
		s.iovs[i].SetLen(len(buf))
		h := &s.hdrs[i].hdr
		*h = unix.Msghdr{Iov: &s.iovs[i]}
		h.SetIovlen(1)
		s.hdrs[i].len = 0
	}
	// Raw: it cannot block (MSG_DONTWAIT), so it needs none of the
	// runtime's system-call bookkeeping (see upstreamWriter).
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	got := 0
	if errno == 0 {
		got = int(n)
	}
	for i := range s.hdrs {
		if i < got {
			b.lens[i] = int(s.hdrs[i].len)
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
