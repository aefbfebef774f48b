//go:build unix

package relay

import (
	"net"
	"syscall"
)

// upstreamReader reads an upstream socket without holding a buffer while
// it waits: the goroutine parks in the netpoller with none, and only a
// wake-up borrows buffers from the pool. So an idle association (or a
// forged one waiting to be evicted) costs its goroutine and socket, not
// 64 KiB. A wake-up takes every datagram already queued, up to a batch, so
// that the relay learns of a server's close_notify queued behind its last
// reply before the client sees that reply and answers it.
func upstreamReader(c net.Conn) func(*batch) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return bufferedReader(c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return bufferedReader(c)
	}
	r := &rawReader{rc: rc}
	// One method value for the reader's life: a closure made per read
	// would be two allocations per datagram relayed.
	r.fn = r.readFD
	return r.read
}

// rawReader reads a socket's queue in the netpoller's callback; readFD,
// per system, fills r.b and says whether to stop waiting.
type rawReader struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	b   *batch
	err error
	sys readerSys
}

func (r *rawReader) read(b *batch) error {
	r.b, r.err = b, nil
	err := r.rc.Read(r.fn)
	r.b = nil
	if err != nil {
		return err
	}
	if b.n > 0 {
		// An error after datagrams is dropped: on a connected UDP socket
		// it is an ICMP report, which ends nothing.
		return nil
	}
	return r.err
}
