package strayfilter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/straydtls/straydtls/record"
)

// The methods in this file keep *net.UDPConn's typed, allocation-free and
// tuning paths reachable through the wrapper. When the wrapped conn is not
// a *net.UDPConn they fall back to the generic path or report
// errors.ErrUnsupported.

// ReadFromUDPAddrPort is ReadFrom returning a netip.AddrPort, without
// allocating when the wrapped conn is a *net.UDPConn.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.udp == nil {
		n, addr, err := c.ReadFrom(b)
		if err != nil {
			return n, netip.AddrPort{}, err
		}
		ap, ok := addrPort(addr)
		if !ok {
			return n, ap, fmt.Errorf("strayfilter: ReadFromUDPAddrPort: source %v is not an IP address and port: %w", addr, errors.ErrUnsupported)
		}
		return n, ap, nil
	}
	for {
		n, ap, err := c.udp.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, ap, c.readErr(err)
		}
		if c.table.Empty() || n >= len(b) || !c.drop(ap, b[:n]) {
			return n, ap, nil
		}
	}
}

// ReadFromUDP is ReadFrom returning a *net.UDPAddr.
func (c *Conn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	if c.udp == nil {
		n, ap, err := c.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		return n, net.UDPAddrFromAddrPort(ap), nil
	}
	for {
		n, addr, err := c.udp.ReadFromUDP(b)
		if err != nil {
			return n, addr, c.readErr(err)
		}
		if c.table.Empty() || n >= len(b) || !c.drop(addr.AddrPort(), b[:n]) {
			return n, addr, nil
		}
	}
}

// ReadMsgUDPAddrPort reads a datagram and its out-of-band data (ECN, packet
// info, GRO segments), dropping strays like ReadFrom. It needs a wrapped
// *net.UDPConn.
func (c *Conn) ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error) {
	if c.udp == nil {
		return 0, 0, 0, addr, c.unsupported("ReadMsgUDPAddrPort")
	}
	for {
		n, oobn, flags, addr, err = c.udp.ReadMsgUDPAddrPort(b, oob)
		if err != nil {
			return n, oobn, flags, addr, c.readErr(err)
		}
		if c.table.Empty() || n >= len(b) || !c.drop(addr, b[:n]) {
			return n, oobn, flags, addr, nil
		}
	}
}

// ReadMsgUDP is ReadMsgUDPAddrPort returning a *net.UDPAddr.
func (c *Conn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	if c.udp == nil {
		return 0, 0, 0, nil, c.unsupported("ReadMsgUDP")
	}
	for {
		n, oobn, flags, addr, err = c.udp.ReadMsgUDP(b, oob)
		if err != nil {
			return n, oobn, flags, addr, c.readErr(err)
		}
		if c.table.Empty() || n >= len(b) || !c.drop(addr.AddrPort(), b[:n]) {
			return n, oobn, flags, addr, nil
		}
	}
}

// WriteToUDPAddrPort is WriteTo for a netip.AddrPort, allocation-free when
// the wrapped conn is a *net.UDPConn.
func (c *Conn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.learnAlerts && record.CarriesClosingAlert(b) {
		c.closeFromAlert(addr, b)
	}
	if c.udp == nil {
		return c.pc.WriteTo(b, net.UDPAddrFromAddrPort(addr))
	}
	return c.udp.WriteToUDPAddrPort(b, addr)
}

// WriteToUDP is WriteTo for a *net.UDPAddr.
func (c *Conn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	return c.WriteTo(b, addr)
}

// WriteMsgUDPAddrPort writes a datagram with out-of-band data, learning
// closes like WriteTo. It needs a wrapped *net.UDPConn.
func (c *Conn) WriteMsgUDPAddrPort(b, oob []byte, addr netip.AddrPort) (n, oobn int, err error) {
	if c.udp == nil {
		return 0, 0, c.unsupported("WriteMsgUDPAddrPort")
	}
	if c.learnAlerts && record.CarriesClosingAlert(b) {
		c.closeFromAlert(addr, b)
	}
	return c.udp.WriteMsgUDPAddrPort(b, oob, addr)
}

// WriteMsgUDP is WriteMsgUDPAddrPort for a *net.UDPAddr.
func (c *Conn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	if c.udp == nil {
		return 0, 0, c.unsupported("WriteMsgUDP")
	}
	if c.learnAlerts && record.CarriesClosingAlert(b) {
		if ap, ok := addrPort(addr); ok {
			c.closeFromAlert(ap, b)
		}
	}
	return c.udp.WriteMsgUDP(b, oob, addr)
}

// SetReadBuffer sets the socket receive buffer of the wrapped conn.
func (c *Conn) SetReadBuffer(bytes int) error {
	if s, ok := c.pc.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(bytes)
	}
	return c.unsupported("SetReadBuffer")
}

// SetWriteBuffer sets the socket send buffer of the wrapped conn.
func (c *Conn) SetWriteBuffer(bytes int) error {
	if s, ok := c.pc.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(bytes)
	}
	return c.unsupported("SetWriteBuffer")
}

// SyscallConn returns the wrapped socket's raw conn, for socket options.
// Datagrams read through it bypass the filter.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if s, ok := c.pc.(syscall.Conn); ok {
		return s.SyscallConn()
	}
	return nil, c.unsupported("SyscallConn")
}

func (c *Conn) unsupported(method string) error {
	return fmt.Errorf("strayfilter: %s: wrapped %T is not a *net.UDPConn: %w", method, c.pc, errors.ErrUnsupported)
}
