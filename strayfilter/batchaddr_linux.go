package strayfilter

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
	errno unix.Errno
	read  func(fd uintptr) bool // bound once: a closure per call would allocate
}

func (s *batchSys) init(n int) {
	s.ok = true
	s.hdrs = make([]mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.names = make([]unix.RawSockaddrInet6, n)
	s.read = func(fd uintptr) bool {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		s.n, s.errno = int(r), errno
		return errno != unix.EAGAIN && errno != unix.EWOULDBLOCK
	}
}

func (c *Conn) recvmmsg(b *Batch) (int, error) {
	s := &b.sys
	for i := range s.hdrs {
		// Buffers move between reads (strays go to the back); point the
		// kernel at the current ones and reset what it overwrites.
		s.iovs[i].Base = unsafe.SliceData(b.Bufs[i])
		s.iovs[i].SetLen(len(b.Bufs[i]))
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
	if err := c.raw.Read(s.read); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, unix.Errno(s.errno)
	}
	for i := range s.n {
		b.N[i] = int(s.hdrs[i].len)
		b.Addrs[i] = sockaddrToAddrPort(&s.names[i])
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
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}
