package udpio

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

// mmsghdr is struct mmsghdr; Go pads it like C on every Linux port.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// Msgs is a vector of message headers for one recvmmsg or sendmmsg, each
// with one buffer and, when made with addresses, a socket address. It
// belongs to one goroutine.
type Msgs struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // nil for a connected socket; large enough for IPv4 and IPv6
}

// NewMsgs returns headers for n messages, with room for their addresses
// when addrs (an unconnected socket).
func NewMsgs(n int, addrs bool) *Msgs {
	m := &Msgs{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n)}
	if addrs {
		m.names = make([]unix.RawSockaddrInet6, n)
	}
	return m
}

// Cap is how many messages the headers hold.
func (m *Msgs) Cap() int { return len(m.hdrs) }

// SetRecv makes header i receive into buf.
func (m *Msgs) SetRecv(i int, buf []byte) {
	m.resetHeader(i)
	m.setBuf(i, buf)
}

// resetHeader undoes what the kernel wrote into header i.
func (m *Msgs) resetHeader(i int) {
	h := &m.hdrs[i].hdr
	*h = unix.Msghdr{Iov: &m.iovs[i]}
	if m.names != nil {
		h.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(m.names[i]))
	}
	h.SetIovlen(1)
	m.hdrs[i].len = 0
}

// setBuf points header i at buf, touching the iovec only when it moved.
func (m *Msgs) setBuf(i int, buf []byte) {
	if p := unsafe.SliceData(buf); m.iovs[i].Base != p || uint64(m.iovs[i].Len) != uint64(len(buf)) {
		m.iovs[i].Base = p
		m.iovs[i].SetLen(len(buf))
	}
}

// Recv is recvmmsg(2) into the first n headers, MSG_DONTWAIT: call it in
// a syscall.RawConn's Read callback. Raw, because it cannot block, so the
// runtime's system-call bookkeeping (which wakes its monitor thread when
// that sleeps) would be cost without purpose.
func (m *Msgs) Recv(fd uintptr, n int) (int, unix.Errno) {
	r, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), 0
}

// Len is the length of the datagram header i received (or sent).
func (m *Msgs) Len(i int) int { return int(m.hdrs[i].len) }

// Truncated reports whether the kernel cut header i's datagram short.
func (m *Msgs) Truncated(i int) bool { return m.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 }

// Addr is the source of header i's datagram (Msgs made with addresses).
func (m *Msgs) Addr(i int) netip.AddrPort { return sockaddrToAddrPort(&m.names[i]) }

// SetSend makes header i send buf to to, as a socket of the family six
// says (AF_INET6, dual-stack included, takes IPv4 addresses v4-mapped).
// to must have no zone: a scoped address needs its interface looked up,
// which the net package does.
func (m *Msgs) SetSend(i int, buf []byte, to netip.AddrPort, six bool) {
	sa := &m.names[i]
	m.iovs[i].Base = unsafe.SliceData(buf)
	m.iovs[i].SetLen(len(buf))
	h := &m.hdrs[i].hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(sa)), Iov: &m.iovs[i]}
	h.SetIovlen(1)
	port := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
	binary.BigEndian.PutUint16(port[:], to.Port())
	if six {
		sa.Family = unix.AF_INET6
		sa.Flowinfo, sa.Scope_id = 0, 0
		sa.Addr = to.Addr().As16() // v4-mapped for IPv4
		h.Namelen = unix.SizeofSockaddrInet6
		return
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	sa4.Family = unix.AF_INET
	sa4.Addr = to.Addr().As4()
	h.Namelen = unix.SizeofSockaddrInet4
}

// Send is sendmmsg(2) of headers [from, from+n), MSG_DONTWAIT, raw as
// Recv. It returns how many went; an error means none did (the first
// failed).
func (m *Msgs) Send(fd uintptr, from, n int) (int, unix.Errno) {
	r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[from])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), 0
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

// MsgTrunc is the message flag the kernel sets on a datagram it cut short
// (x/net's ipv4.Message.Flags carries it too); 0 where reads go one at a
// time, which report no such flag.
const MsgTrunc = unix.MSG_TRUNC
