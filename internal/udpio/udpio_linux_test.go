package udpio_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/straydtls/straydtls/internal/udpio"
)

// TestRecvAndSend sends three datagrams with one sendmmsg and reads them
// with one Recv, each with its length and source; a Recv reads no more
// than it has buffers for, and flags a datagram cut short.
func TestRecvAndSend(t *testing.T) {
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	src, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer src.Close()
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	from := src.LocalAddr().(*net.UDPAddr).AddrPort()

	m := udpio.NewMsgs(3, true)
	for i := range 3 {
		m.SetSend(i, []byte(fmt.Sprintf("datagram %d%s", i, make([]byte, 10*i))), to, false)
	}
	rc, _ := src.SyscallConn()
	var sent int
	rc.Write(func(fd uintptr) bool {
		n, errno := m.Send(fd, 0, 3)
		if errno != 0 {
			t.Fatal(errno)
		}
		sent = n
		return true
	})
	if sent != 3 {
		t.Fatalf("sendmmsg sent %d of 3", sent)
	}

	r := udpio.NewRecv(4)
	drc, _ := dst.SyscallConn()
	bufs := [][]byte{make([]byte, 64), make([]byte, 64), make([]byte, 12)} // the third cuts its datagram short
	ns, addrs, trunc := make([]int, 3), make([]netip.AddrPort, 3), make([]bool, 3)
	got := 0
	for got < 3 {
		n, err := r.Read(drc, bufs[got:], ns[got:], addrs[got:], trunc[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	for i := range 3 {
		want := fmt.Sprintf("datagram %d", i)
		if string(bufs[i][:min(ns[i], len(want))]) != want || addrs[i] != from {
			t.Errorf("datagram %d: %q from %v; want %q from %v", i, bufs[i][:ns[i]], addrs[i], want, from)
		}
		if trunc[i] != (i == 2) {
			t.Errorf("datagram %d: truncated = %v", i, trunc[i])
		}
	}
}
