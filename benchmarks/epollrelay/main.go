//go:build linux

// Command epollrelay is the fastest relay we could write in Go, for the
// relay benchmark to measure how far a different architecture would take
// strayrelay: nginx's design in Go. One OS thread runs one level-triggered
// epoll loop over the listening socket and every upstream socket, with no
// goroutine per socket and no Go netpoller; clients are read 64 at a time
// with recvmmsg, and everything the upstream sockets returned in one
// wake-up goes to the clients in one sendmmsg. It inspects nothing,
// filters nothing and never closes an upstream socket: it is a ceiling,
// not a relay to run. IPv4 only. It prints its address on stdout.
//
//	epollrelay -listen 127.0.0.1:0 -upstream 127.0.0.1:4434
package main

import (
	"flag"
	"fmt"
	"log"
	"net/netip"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	batch   = 64
	maxSize = 2048
)

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// msgs is a recvmmsg or sendmmsg vector with its buffers and addresses.
type msgs struct {
	hdrs  [batch]mmsghdr
	iovs  [batch]unix.Iovec
	addrs [batch]unix.RawSockaddrInet4
	bufs  [batch][maxSize]byte
}

func (m *msgs) prepare(i, size int) {
	m.iovs[i].Base = &m.bufs[i][0]
	m.iovs[i].SetLen(size)
	m.hdrs[i].hdr = unix.Msghdr{
		Name:    (*byte)(unsafe.Pointer(&m.addrs[i])),
		Namelen: unix.SizeofSockaddrInet4,
		Iov:     &m.iovs[i],
	}
	m.hdrs[i].hdr.SetIovlen(1)
	m.hdrs[i].len = 0
}

// The calls on sockets are raw: none can block (MSG_DONTWAIT, non-blocking
// sockets), and Go's system-call bookkeeping costs the relay CPU for
// nothing (strayrelay makes the same calls the same way). Only epoll_wait,
// which does block, goes through it.

func mmsg(trap uintptr, fd int, m *msgs, n int) (int, unix.Errno) {
	r, _, errno := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	return int(r), errno
}

func rawIO(trap uintptr, fd int, b []byte) (int, unix.Errno) {
	r, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(r), errno
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address clients send to (IPv4)")
	upstream := flag.String("upstream", "", "server address (IPv4 addr:port)")
	flag.Parse()
	la, err := netip.ParseAddrPort(*listen)
	if err != nil || !la.Addr().Is4() {
		log.Fatalf("-listen %q: want an IPv4 addr:port", *listen)
	}
	ua, err := netip.ParseAddrPort(*upstream)
	if err != nil || !ua.Addr().Is4() {
		log.Fatalf("-upstream %q: want an IPv4 addr:port", *upstream)
	}
	runtime.LockOSThread()

	lfd := socket()
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: int(la.Port()), Addr: la.Addr().As4()}); err != nil {
		log.Fatal(err)
	}
	unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		log.Fatal(err)
	}
	s4 := sa.(*unix.SockaddrInet4)
	fmt.Println(netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), uint16(s4.Port)))

	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	watch(ep, lfd)
	server := &unix.SockaddrInet4{Port: int(ua.Port()), Addr: ua.Addr().As4()}
	upstreams := map[unix.RawSockaddrInet4]int{}
	clients := map[int]unix.RawSockaddrInet4{}

	in, out := new(msgs), new(msgs)
	var events [256]unix.EpollEvent
	for {
		n, err := unix.EpollWait(ep, events[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		queued := 0
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				for i := range batch {
					in.prepare(i, maxSize)
				}
				got, errno := mmsg(unix.SYS_RECVMMSG, lfd, in, batch)
				if errno != 0 {
					continue
				}
				for i := range got {
					from := in.addrs[i]
					up, ok := upstreams[from]
					if !ok {
						up = socket()
						if err := unix.Connect(up, server); err != nil {
							log.Fatal(err)
						}
						watch(ep, up)
						upstreams[from], clients[up] = up, from
					}
					rawIO(unix.SYS_WRITE, up, in.bufs[i][:in.hdrs[i].len])
				}
				continue
			}
			// An upstream socket: one datagram per event; level-triggered
			// epoll reports it again if more are queued.
			if queued == batch {
				continue // next wake-up
			}
			r, errno := rawIO(unix.SYS_READ, fd, out.bufs[queued][:])
			if errno != 0 {
				continue
			}
			out.prepare(queued, r)
			out.addrs[queued] = clients[fd]
			queued++
		}
		for sent := 0; sent < queued; {
			// sendmmsg takes the vector from its start: move what is left.
			got, errno := mmsg(unix.SYS_SENDMMSG, lfd, out, queued-sent)
			if errno != 0 || got == 0 {
				break // a full buffer or an error: UDP may lose it
			}
			sent += got
			if sent < queued {
				copy(out.hdrs[:], out.hdrs[got:queued-sent+got])
			}
		}
	}
}

func socket() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	return fd
}

func watch(ep, fd int) {
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		log.Fatal(err)
	}
}
