package strayfilter

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// msgTrunc is the message flag the kernel sets on a datagram it cut short.
const msgTrunc = unix.MSG_TRUNC

// mmsghdr is struct mmsghdr; Go pads it like C on every Linux port.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

type batchSys struct {
	ok    bool
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for IPv4 and IPv6
	n     int                     // result of the last syscall
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
	errno unix.Errno
	read  func(fd uintptr) bool // bound once: a closure per call would allocate
}

func (s *batchSys) init(n int) {
	s.ok = true
	s.hdrs = make([]mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.names = make([]unix.RawSockaddrInet6, n)
	s.dirty = n // none set yet
	s.want = 1
	s.read = func(fd uintptr) bool {
		// Raw: MSG_DONTWAIT cannot block, so the runtime's system-call
		// bookkeeping (which wakes its monitor thread when that sleeps)
		// is cost without purpose; waiting is the netpoller's.
		r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.want), unix.MSG_DONTWAIT, 0, 0)
		s.n, s.errno = int(r), errno
		return errno != unix.EAGAIN && errno != unix.EWOULDBLOCK
	}
}

func (c *Conn) recvmmsg(b *Batch) (int, error) {
	s := &b.sys
	// Reset what the kernel overwrote last time, in the headers it
	// filled, and point it at the buffers where they moved (strays go to
	// the back): work for the datagrams of the last read, not for the whole
	// batch, which costs a reader of one datagram at a time (an echo) a few
	// per cent.
	for i := range s.dirty {
		h := &s.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(s.names[i]))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		h.Control = nil
		h.SetControllen(0)
		h.Flags = 0
		s.hdrs[i].len = 0
	}
	for i := range s.iovs {
		if p := unsafe.SliceData(b.Bufs[i]); s.iovs[i].Base != p || uint64(s.iovs[i].Len) != uint64(len(b.Bufs[i])) {
			s.iovs[i].Base = p
			s.iovs[i].SetLen(len(b.Bufs[i]))
		}
	}
	s.dirty = len(s.hdrs) // until the call says how many it filled
	if err := c.raw.Read(s.read); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, unix.Errno(s.errno)
	}
	s.dirty = s.n
	if s.n == s.want {
		s.want = min(2*s.want, len(s.hdrs))
	} else {
		s.want = max(s.n, 1)
	}
	for i := range s.n {
		b.N[i] = int(s.hdrs[i].len)
		b.Addrs[i] = sockaddrToAddrPort(&s.names[i])
		b.trunc[i] = s.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0
	}
	return s.n, nil
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// zones maps interface indexes to names, so that a link-local peer read by
// recvmmsg carries the zone the standard library gives it ("eth0", not
// "2"): the quiet-peer table and the demultiplexer key on the whole
// address, and the same peer must look the same whichever read path saw
// it. Reads are one atomic load and a map lookup; a miss (an interface not
// seen before) asks the kernel once and copies the map.
var zones struct {
	m  atomic.Pointer[map[uint32]string]
	mu sync.Mutex
}

func zoneName(index uint32) string {
	if m := zones.m.Load(); m != nil {
		if name, ok := (*m)[index]; ok {
			return name
		}
	}
	zones.mu.Lock()
	defer zones.mu.Unlock()
	old := zones.m.Load()
	if old != nil {
		if name, ok := (*old)[index]; ok {
			return name
		}
	}
	// As the standard library: the interface's name, or the number when
	// there is no such interface (it went away). The kernel sets the index
	// to the receiving interface, so a failure is rare and not cached.
	ifi, err := net.InterfaceByIndex(int(index))
	if err != nil {
		return strconv.FormatUint(uint64(index), 10)
	}
	name := ifi.Name
	m := make(map[uint32]string, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[index] = name
	zones.m.Store(&m)
	return name
}
