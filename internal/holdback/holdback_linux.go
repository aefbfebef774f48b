// Package holdback makes a client's closing alert arrive late at a server
// on loopback without a relay in between, so the server still sees the
// client's own address: a BPF program first at tcx ingress of lo drops
// every alert datagram to the server's port as the client sends it, a
// packet socket keeps a copy, and Deliver sends the copy again later from
// the client's own address and port (with another TTL, which the program
// lets through). It is the seed's late close_notify, made deterministic,
// for servers a relay would hide the clients from. Linux only; needs root.
package holdback

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ttl marks what Deliver sends: the program drops only datagrams with the
// kernel's default TTL of 64.
const ttl = 63

// Held is a datagram the client sent and the server has not seen.
type Held struct {
	From    netip.AddrPort
	Payload []byte
	At      time.Time
}

// Holder holds back the alert datagrams sent to one IPv4 server on lo.
type Holder struct {
	server netip.AddrPort
	prog   *ebpf.Program
	link   link.Link
	fd     int
	held   chan Held
	done   chan struct{}
	exited chan struct{} // capture has returned; the socket is free to close
}

// New starts holding back every alert datagram (first byte 21) sent to
// server, an IPv4 address on lo, until Close.
func New(server netip.AddrPort) (*Holder, error) {
	if !server.Addr().Is4() || !server.Addr().IsLoopback() {
		return nil, fmt.Errorf("holdback: server %v: only IPv4 loopback servers", server)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "MIT",
		Instructions: dropAlerts(server.Port()),
	})
	if err != nil {
		return nil, fmt.Errorf("holdback: loading the program: %w", err)
	}
	h := &Holder{server: server, prog: prog, fd: -1, held: make(chan Held, 1024), done: make(chan struct{}), exited: make(chan struct{})}
	// The packet socket first, so nothing is dropped unseen.
	// ETH_P_ALL: only such taps see what lo sends (PACKET_OUTGOING), and
	// they see it before tcx ingress, where the program drops it.
	h.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err == nil {
		err = unix.Bind(h.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index})
	}
	if err == nil {
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		err = unix.SetsockoptTimeval(h.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	if err != nil {
		close(h.exited)
		h.Close()
		return nil, fmt.Errorf("holdback: packet socket on lo: %w", err)
	}
	go h.capture()
	h.link, err = link.AttachTCX(link.TCXOptions{Interface: lo.Index, Program: prog, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("holdback: attaching at tcx ingress of lo: %w", err)
	}
	return h, nil
}

// dropAlerts is the program: drop an IPv4 UDP datagram to port whose TTL
// is 64 and whose payload starts with 21 (an alert record), pass the rest
// to the next program.
func dropAlerts(port uint16) asm.Instructions {
	const eth, ip = 14, 20
	var be [2]byte
	binary.BigEndian.PutUint16(be[:], port)
	var ipv4 [2]byte
	binary.BigEndian.PutUint16(ipv4[:], unix.ETH_P_IP)
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 76, asm.Word), // skb->data
		asm.LoadMem(asm.R3, asm.R1, 80, asm.Word), // skb->data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, eth+ip+8+1),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, int32(binary.NativeEndian.Uint16(ipv4[:])), "pass"),
		asm.LoadMem(asm.R5, asm.R2, eth, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, "pass"),
		asm.LoadMem(asm.R5, asm.R2, eth+8, asm.Byte),
		asm.JNE.Imm(asm.R5, 64, "pass"),
		asm.LoadMem(asm.R5, asm.R2, eth+9, asm.Byte),
		asm.JNE.Imm(asm.R5, unix.IPPROTO_UDP, "pass"),
		asm.LoadMem(asm.R5, asm.R2, eth+ip+2, asm.Half),
		asm.JNE.Imm(asm.R5, int32(binary.NativeEndian.Uint16(be[:])), "pass"),
		asm.LoadMem(asm.R5, asm.R2, eth+ip+8, asm.Byte),
		asm.JNE.Imm(asm.R5, 21, "pass"),
		asm.Mov.Imm(asm.R0, 2), // TCX_DROP
		asm.Return(),
		asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"), // TCX_NEXT
		asm.Return(),
	}
}

// capture keeps what the program drops: the packet socket sees each
// datagram as lo sends it, before tcx ingress.
func (h *Holder) capture() {
	defer close(h.exited)
	buf := make([]byte, 65536)
	for {
		select {
		case <-h.done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(h.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype != unix.PACKET_OUTGOING || ll.Protocol != htons(unix.ETH_P_IP) {
			continue
		}
		p := buf[:n]
		if len(p) < 29 || p[0] != 0x45 || p[8] != 64 || p[9] != unix.IPPROTO_UDP || p[28] != 21 {
			continue
		}
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(p[20:]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(p[22:]))
		if dst != h.server {
			continue
		}
		end := min(len(p), 20+int(binary.BigEndian.Uint16(p[24:])))
		select {
		case h.held <- Held{From: src, Payload: append([]byte(nil), p[28:end]...), At: time.Now()}:
		default:
		}
	}
}

// Next returns the next datagram held back, waiting up to timeout.
func (h *Holder) Next(timeout time.Duration) (Held, error) {
	select {
	case d := <-h.held:
		return d, nil
	case <-time.After(timeout):
		return Held{}, fmt.Errorf("holdback: no alert to %v within %v", h.server, timeout)
	}
}

// Deliver sends d to the server from d.From, the client's own address and
// port, which its process must have released.
func (h *Holder) Deliver(d Held) error {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(d.From))
	if err != nil {
		return fmt.Errorf("holdback: sending from the client's address: %w", err)
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl) }); err != nil || serr != nil {
		return fmt.Errorf("holdback: setting the TTL: %w", errors.Join(err, serr))
	}
	_, err = c.WriteToUDPAddrPort(d.Payload, h.server)
	return err
}

// Close stops holding back.
func (h *Holder) Close() error {
	select {
	case <-h.done:
		return nil
	default:
	}
	close(h.done)
	if h.link != nil {
		h.link.Close()
	}
	h.prog.Close()
	<-h.exited
	if h.fd >= 0 {
		unix.Close(h.fd)
	}
	return nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
