package relay

import (
	"net"
	"net/netip"
	"syscall"

	"github.com/straydtls/straydtls/internal/udpio"
	"github.com/straydtls/straydtls/record"
)

// clientReads is what one goroutine reads a listening socket into: a
// batch of client datagrams (one recvmmsg on Linux, allocating nothing),
// each with the record the machine parses, which the drop path counts its
// reason from.
type clientReads struct {
	bufs   [][]byte
	lens   []int
	addrs  []netip.AddrPort
	trunc  []bool
	parsed []record.Parsed
	n      int // of the last read

	pc   *net.UDPConn
	rc   syscall.RawConn
	recv *udpio.Recv // nil where there is no recvmmsg: one datagram per read
}

func newClientReads(pc *net.UDPConn, n int) (*clientReads, error) {
	b := &clientReads{
		bufs: make([][]byte, n), lens: make([]int, n), addrs: make([]netip.AddrPort, n),
		trunc: make([]bool, n), parsed: make([]record.Parsed, n), pc: pc,
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, maxDatagram)
	}
	if b.recv = udpio.NewRecv(n); b.recv.OK() {
		rc, err := pc.SyscallConn()
		if err != nil {
			return nil, err
		}
		b.rc = rc
	}
	return b, nil
}

// read reads the next batch and returns how many datagrams it holds, with
// their sources unmapped (an IPv4 client on a dual-stack socket is the
// same client as on an IPv4 one).
func (b *clientReads) read() (int, error) {
	for i := range b.n {
		b.parsed[i].Reset()
	}
	b.n = 0
	var n int
	var err error
	if b.recv.OK() {
		n, err = b.recv.Read(b.rc, b.bufs, b.lens, b.addrs, b.trunc)
	} else {
		b.lens[0], b.addrs[0], err = b.pc.ReadFromUDPAddrPort(b.bufs[0])
		n = 1
	}
	if err != nil {
		return 0, err
	}
	for i := range n {
		b.addrs[i] = netip.AddrPortFrom(b.addrs[i].Addr().Unmap(), b.addrs[i].Port())
	}
	b.n = n
	return n, nil
}

func (b *clientReads) datagram(i int) []byte { return b.bufs[i][:b.lens[i]] }
