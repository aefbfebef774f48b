package udpio

import (
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Recv reads an unconnected socket's queue a batch at a time, with one
// recvmmsg: the state one reading goroutine keeps between reads.
type Recv struct {
	m *Msgs
	// dirty is how many headers the kernel wrote into since they were
	// last set (it writes only the ones it fills).
	dirty int
	// want is how many datagrams the next call asks for: after a call
	// that drained the socket, as many as it read; after one that filled
	// its ask, twice that, up to the batch. A recvmmsg that asks for more
	// than is queued tries the socket once more than it needs, and a
	// reader of one datagram at a time (an echo) paid that on every read:
	// 5 % of its rate.
	want  int
	n     int // result of the last system call
	errno unix.Errno
	read  func(fd uintptr) bool // bound once: a closure per call would allocate
}

// NewRecv returns a Recv for batches of up to n datagrams.
func NewRecv(n int) *Recv {
	r := &Recv{m: NewMsgs(n, true), dirty: n, want: 1}
	r.read = func(fd uintptr) bool {
		r.n, r.errno = r.m.Recv(fd, r.want)
		return r.errno != unix.EAGAIN && r.errno != unix.EWOULDBLOCK
	}
	return r
}

// OK reports whether Read works here (Linux: yes).
func (r *Recv) OK() bool { return r != nil }

// Read waits on rc for datagrams and reads what is queued, up to len(bufs)
// and the Recv's batch, into bufs: their lengths into ns, their sources
// into addrs, and whether the kernel cut them short into trunc. It
// returns how many it read.
func (r *Recv) Read(rc syscall.RawConn, bufs [][]byte, ns []int, addrs []netip.AddrPort, trunc []bool) (int, error) {
	m := r.m
	// Reset what the kernel overwrote last time, in the headers it filled,
	// and point it at the buffers where they moved (a filter moves strays
	// to the back): work for the datagrams of the last read, not for the
	// whole batch, which costs a reader of one datagram at a time (an
	// echo) a few per cent.
	for i := range r.dirty {
		m.resetHeader(i)
	}
	k := min(len(bufs), m.Cap())
	for i := range k {
		m.setBuf(i, bufs[i])
	}
	r.want = min(r.want, k)
	r.dirty = k // until the call says how many it filled
	if err := rc.Read(r.read); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, r.errno
	}
	r.dirty = r.n
	if r.n == r.want {
		r.want = min(2*r.want, k)
	} else {
		r.want = max(r.n, 1)
	}
	for i := range r.n {
		ns[i] = m.Len(i)
		addrs[i] = m.Addr(i)
		trunc[i] = m.Truncated(i)
	}
	return r.n, nil
}
