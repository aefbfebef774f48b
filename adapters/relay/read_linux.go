package relay

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// upstreamReader reads an upstream socket without holding a buffer while
// it waits: the goroutine parks in the netpoller with none, and only a
// wake-up borrows buffers from the pool, returning those it did not fill.
// So an idle association (or a forged one waiting to be evicted) costs its
// goroutine and socket, not 64 KiB. One recvmmsg takes every datagram
// already queued, up to a batch, so that the relay learns of a server's
// close_notify queued behind its last reply before the client sees that
// reply and answers it, without a second system call to find the queue
// empty.
func upstreamReader(c net.Conn) func(*batch) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return bufferedReader(c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return bufferedReader(c)
	}
	r := &mmsgReader{rc: rc}
	// One method value for the reader's life: a closure made per read
	// would be two allocations per datagram relayed.
	r.fn = r.readFD
	return r.read
}

// mmsghdr is struct mmsghdr; Go pads it like C on every Linux port.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

type mmsgReader struct {
	rc   syscall.RawConn
	fn   func(fd uintptr) bool
	b    *batch
	err  error
	hdrs [len(batch{}.bufs)]mmsghdr
	iovs [len(batch{}.bufs)]unix.Iovec
}

func (r *mmsgReader) read(b *batch) error {
	r.b, r.err = b, nil
	err := r.rc.Read(r.fn)
	r.b = nil
	if err != nil {
		return err
	}
	if b.n > 0 {
		return nil
	}
	return r.err
}

// readFD reads what is queued; it returns false to park in the netpoller
// when nothing was.
func (r *mmsgReader) readFD(fd uintptr) bool {
	b := r.b
	for i := range r.hdrs {
		buf := getBuf()
		b.bufs[i] = buf
		r.iovs[i].Base = &buf[0]
		r.iovs[i].SetLen(len(buf))
		h := &r.hdrs[i].hdr
		*h = unix.Msghdr{Iov: &r.iovs[i]}
		h.SetIovlen(1)
		r.hdrs[i].len = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	got := 0
	if errno == 0 {
		got = int(n)
	}
	for i := range r.hdrs {
		if i < got {
			b.lens[i] = int(r.hdrs[i].len)
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
