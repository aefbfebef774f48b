package dtlstest

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
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

// Sender sends one datagram per interval until stopped (SendEvery).
type Sender struct {
	sent atomic.Int64
	quit chan struct{}
	done chan struct{}
}

// SendEvery sends payload to to once per interval, from each of from in
// turn, until Stop.
func SendEvery(from []*net.UDPConn, to netip.AddrPort, payload []byte, interval time.Duration) *Sender {
	s := &Sender{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-s.quit:
				return
			case <-tick.C:
				from[n%len(from)].WriteToUDPAddrPort(payload, to)
				s.sent.Add(1)
			}
		}
	}()
	return s
}

// Await waits until k more datagrams have gone out, failing t after 10 s:
// so that a test phase (a restart, a gap) provably saw traffic.
func (s *Sender) Await(t testing.TB, k int64) {
	t.Helper()
	want := s.sent.Load() + k
	WaitFor(t, fmt.Sprintf("%d more datagrams sent", k), func() bool { return s.sent.Load() >= want })
}

// Stop stops sending and returns how many datagrams went out.
func (s *Sender) Stop() int {
	close(s.quit)
	<-s.done
	return int(s.sent.Load())
}
