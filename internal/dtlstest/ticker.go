package dtlstest

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// CountReads counts the datagrams c reads, until c is closed: what reaches
// a server that must see none.
func CountReads(c *net.UDPConn) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return &n
}

// SendEvery sends payload to to once per interval, from each of from in
// turn, until stop is called; stop returns how many it sent.
func SendEvery(from []*net.UDPConn, to netip.AddrPort, payload []byte, interval time.Duration) (stop func() int) {
	quit, sent := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				sent <- n
				return
			case <-tick.C:
				from[n%len(from)].WriteToUDPAddrPort(payload, to)
				n++
			}
		}
	}()
	return func() int {
		close(quit)
		return <-sent
	}
}
