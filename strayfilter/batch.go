package strayfilter

import (
	"net"
	"unsafe"

	"github.com/straydtls/straydtls/internal/udpio"
	"github.com/straydtls/straydtls/record"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchConn is what x/net's ipv4.PacketConn and ipv6.PacketConn offer:
// recvmmsg and sendmmsg on Linux, one datagram per call elsewhere.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// newBatchConn picks the x/net wrapper for the socket's family. An IPv6
// socket (dual-stack ones included) needs ipv6's, whose control messages
// match its family; the message type is the same.
func newBatchConn(uc *net.UDPConn) batchConn {
	if a, ok := uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return ipv6.NewPacketConn(uc)
	}
	return ipv4.NewPacketConn(uc)
}

// ReadBatch reads datagrams into ms, like x/net's ipv4.PacketConn.ReadBatch
// and pion/transport's BatchReader: one recvmmsg on Linux for a
// *net.UDPConn. Strays are removed in place: the messages that pass are
// moved to the front of ms in their order, and the dropped ones, with their
// buffers, to the back; no payload is copied, except a quiet peer's
// datagram spread over several buffers, which is gathered to be read. A
// datagram the kernel truncated (MSG_TRUNC) passes. If a whole batch was
// strays the read goes on, within the read deadline. For other conns it
// reads one datagram per call, through ReadFrom.
func (c *Conn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if c.batch == nil {
		return c.readOne(ms)
	}
	for {
		n, err := c.batch.ReadBatch(ms, flags)
		if err != nil {
			return 0, c.readErr(err) // x/net reports -1 with the error
		}
		if !c.table.Empty() {
			n = c.compact(ms[:n])
		}
		if n > 0 {
			// The slice's address picks the stripe: each reader has its own.
			c.passed[uintptr(unsafe.Pointer(&ms[0]))>>7%passStripes].n.Add(uint64(n))
			return n, nil
		}
	}
}

// compact keeps the messages that pass at the front of ms, in order, and
// returns how many there are.
func (c *Conn) compact(ms []ipv4.Message) int {
	clock := batchClock{t: c.table}
	var drops batchDrops
	k := 0
	for i := range ms {
		m := &ms[i]
		if ap, ok := addrPort(m.Addr); ok && m.Flags&udpio.MsgTrunc == 0 && clock.quiet(ap) {
			var parsed record.Parsed // x/net's Message has no room to pass it on
			if reason, drop := c.judge(ap, c.datagram(m), &parsed); drop {
				drops.count(ap, reason)
				continue
			}
		}
		if k != i {
			ms[k], ms[i] = ms[i], ms[k]
		}
		k++
	}
	c.addDrops(&drops)
	return k
}

// datagram returns the bytes of a received message, gathered into one
// buffer when the message was spread over several (only ever for a quiet
// peer's datagram, which is about to be judged).
func (c *Conn) datagram(m *ipv4.Message) []byte {
	if len(m.Buffers) == 0 {
		return nil
	}
	if first := m.Buffers[0]; m.N <= len(first) || len(m.Buffers) == 1 {
		return first[:min(m.N, len(first))]
	}
	d := make([]byte, 0, m.N)
	for _, b := range m.Buffers {
		d = append(d, b[:min(len(b), m.N-len(d))]...)
	}
	return d
}

func (c *Conn) readOne(ms []ipv4.Message) (int, error) {
	m := &ms[0]
	if len(m.Buffers) == 0 {
		return 0, nil
	}
	n, addr, err := c.ReadFrom(m.Buffers[0])
	if err != nil {
		return 0, err
	}
	m.N, m.NN, m.Flags, m.Addr = n, 0, 0, addr
	c.passed[uintptr(unsafe.Pointer(&ms[0]))>>7%passStripes].n.Add(1)
	return 1, nil
}

// WriteBatch writes the messages in ms (one sendmmsg on Linux for a
// *net.UDPConn), learning closes from their alerts like WriteTo. It returns
// how many were sent. For other conns it writes one per call.
func (c *Conn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	if c.learnAlerts {
		for i := range ms {
			if len(ms[i].Buffers) > 0 && record.CarriesClosingAlert(ms[i].Buffers[0]) {
				if ap, ok := addrPort(ms[i].Addr); ok {
					c.closeFromAlert(ap, ms[i].Buffers[0])
				}
			}
		}
	}
	if c.batch != nil {
		return c.batch.WriteBatch(ms, flags)
	}
	for i := range ms {
		if len(ms[i].Buffers) == 0 {
			continue
		}
		n, err := c.pc.WriteTo(ms[i].Buffers[0], ms[i].Addr)
		if err != nil {
			return i, err
		}
		ms[i].N = n
	}
	return len(ms), nil
}
