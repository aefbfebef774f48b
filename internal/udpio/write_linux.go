package udpio

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writer writes datagrams to connected sockets with a raw write(2) on the
// non-blocking descriptor. Go's net.Conn.Write wraps every call in the
// runtime's system-call bookkeeping, which wakes the runtime's monitor
// thread whenever it sleeps: with a write per relayed record that thread
// woke tens of thousands of times a second (benchmarks/README.md). A write
// that cannot block needs none of it. It belongs to one goroutine.
type Writer struct {
	d     []byte
	errno unix.Errno
	fn    func(fd uintptr) bool // w.writeFD, bound once: a method value per call would allocate
}

// Write writes d as one datagram to rc's socket, waiting in the netpoller
// while the socket is full.
func (w *Writer) Write(rc syscall.RawConn, d []byte) error {
	if w.fn == nil {
		w.fn = w.writeFD
	}
	w.d, w.errno = d, 0
	err := rc.Write(w.fn)
	w.d = nil
	if err != nil {
		return err
	}
	if w.errno != 0 {
		return os.NewSyscallError("write", w.errno)
	}
	return nil
}

func (w *Writer) writeFD(fd uintptr) bool {
	_, _, w.errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.d))), uintptr(len(w.d)))
	switch w.errno {
	case unix.EAGAIN:
		return false
	case unix.EINTR:
		return w.writeFD(fd)
	}
	return true
}
