//go:build !linux

package benchmarks

import (
	"net"
	"testing"
)

// growReadBuffer asks for a receive buffer of size; only Linux lets root
// go beyond the system's cap.
func growReadBuffer(_ *testing.B, c *net.UDPConn, size int) { c.SetReadBuffer(size) }
