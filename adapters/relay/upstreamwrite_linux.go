package relay

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// upstreamWriter writes client datagrams to the upstream sockets the pump
// loop reads, with a raw write(2) on the non-blocking descriptor. Go's
// net.Conn.Write wraps every call in the runtime's system-call
// bookkeeping, which wakes the runtime's monitor thread whenever it
// sleeps: with a write per relayed record that thread woke tens of
// thousands of times a second and took 12 % of the relay's CPU
// (benchmarks/README.md). A write that cannot block needs none of it.
// Each goroutine that reads clients has its own.
type upstreamWriter struct {
	d     []byte
	errno unix.Errno
	fn    func(fd uintptr) bool // w.writeFD, bound once: a method value per call would allocate
}

func (w *upstreamWriter) write(u *upstreamConn, d []byte) error {
	if u.rc == nil { // not in the loop: a goroutine reads it, or it is not a socket
		_, err := u.conn.Write(d)
		return err
	}
	if w.fn == nil {
		w.fn = w.writeFD
	}
	w.d, w.errno = d, 0
	err := u.rc.Write(w.fn) // waits in the netpoller while the socket is full
	w.d = nil
	if err != nil {
		return err
	}
	if w.errno != 0 {
		return os.NewSyscallError("write", w.errno)
	}
	return nil
}

func (w *upstreamWriter) writeFD(fd uintptr) bool {
	_, _, w.errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.d))), uintptr(len(w.d)))
	switch w.errno {
	case unix.EAGAIN:
		return false
	case unix.EINTR:
		return w.writeFD(fd)
	}
	return true
}
