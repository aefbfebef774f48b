package strayfilter_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/straydtls/straydtls/record"
	"github.com/straydtls/straydtls/strayfilter"
)

func newMessages(n int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	return ms
}

// TestReadBatchDropsStraysInPlace interleaves strays from a quiet peer with
// live datagrams and checks that one batch read returns exactly the live
// ones, in order, each in a buffer the caller gave, with nothing copied.
func TestReadBatchDropsStraysInPlace(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1"
			if network == "udp6" {
				host = "[::1]"
			}
			raw, err := net.ListenPacket(network, host+":0")
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			c, err := strayfilter.New(raw)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			quiet, _ := net.ListenPacket(network, host+":0")
			live, _ := net.ListenPacket(network, host+":0")
			defer quiet.Close()
			defer live.Close()
			c.MarkClosed(quiet.LocalAddr())
			stray := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
			var want [][]byte
			for i := range 10 {
				quiet.WriteTo(stray, raw.LocalAddr())
				d := []byte(fmt.Sprintf("live %d", i))
				want = append(want, d)
				live.WriteTo(d, raw.LocalAddr())
			}
			ms := newMessages(32)
			buffers := map[*byte]bool{}
			for i := range ms {
				buffers[&ms[i].Buffers[0][0]] = true
			}
			var got [][]byte
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for len(got) < len(want) {
				n, err := c.ReadBatch(ms, 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range ms[:n] {
					if m.Addr.String() != live.LocalAddr().String() {
						t.Fatalf("batch returned a datagram from %v", m.Addr)
					}
					got = append(got, bytes.Clone(m.Buffers[0][:m.N]))
				}
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("datagram %d = %q, want %q: order or bytes changed", i, got[i], want[i])
				}
			}
			for i := range ms {
				if !buffers[&ms[i].Buffers[0][0]] {
					t.Fatal("ReadBatch replaced a caller's buffer")
				}
			}
			if s := c.Stats(); s.Strays[record.ReasonAlert] != 10 || s.Passed != 10 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestReadBatchAllStraysHonoursDeadline(t *testing.T) {
	raw := listenLoopback(t)
	c, _ := strayfilter.New(raw)
	quiet := listenLoopback(t)
	c.MarkClosed(quiet.LocalAddr())
	stray := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	for range 20 {
		quiet.WriteTo(stray, raw.LocalAddr())
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	n, err := c.ReadBatch(newMessages(8), 0)
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadBatch of strays only = %d, %v; want a deadline error", n, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("ReadBatch ignored its deadline")
	}
	if c.Stats().Strays[record.ReasonAlert] != 20 {
		t.Fatalf("stats %+v", c.Stats())
	}
}

func TestWriteBatchLearnsCloses(t *testing.T) {
	raw := listenLoopback(t)
	c, _ := strayfilter.New(raw)
	peer := listenLoopback(t)
	alert := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
	ms := []ipv4.Message{
		{Buffers: [][]byte{[]byte("data")}, Addr: peer.LocalAddr()},
		{Buffers: [][]byte{alert}, Addr: peer.LocalAddr()},
	}
	if n, err := c.WriteBatch(ms, 0); n != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if !c.Table().Quiet(peer.LocalAddr().(*net.UDPAddr).AddrPort()) {
		t.Fatal("an alert sent in a batch did not quiet the peer")
	}
}

// TestReadBatchFallback: a conn that is not a *net.UDPConn reads one
// datagram per call and still filters.
func TestReadBatchFallback(t *testing.T) {
	fc := newFakeConn()
	c, _ := strayfilter.New(fc)
	quiet, live := udpAddr("192.0.2.1:1"), udpAddr("192.0.2.2:2")
	c.MarkClosed(quiet)
	fc.push(loadRecord(t, "pion-v2-08-client-alert-epoch1.hex"), quiet)
	fc.push([]byte("live"), live)
	ms := newMessages(4)
	n, err := c.ReadBatch(ms, 0)
	if err != nil || n != 1 || string(ms[0].Buffers[0][:ms[0].N]) != "live" {
		t.Fatalf("fallback ReadBatch = %d, %v, %q", n, err, ms[0].Buffers[0][:ms[0].N])
	}
}

func TestReadBatchAddrPort(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1"
			if network == "udp6" {
				host = "[::1]"
			}
			raw, err := net.ListenPacket(network, host+":0")
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			c, _ := strayfilter.New(raw)
			defer c.Close()
			quiet, _ := net.ListenPacket(network, host+":0")
			live, _ := net.ListenPacket(network, host+":0")
			defer quiet.Close()
			defer live.Close()
			c.MarkClosed(quiet.LocalAddr())
			stray := loadRecord(t, "pion-v2-08-client-alert-epoch1.hex")
			const n = 20
			for i := range n {
				quiet.WriteTo(stray, raw.LocalAddr())
				live.WriteTo([]byte(fmt.Sprintf("live %d", i)), raw.LocalAddr())
			}
			b := strayfilter.NewBatch(8, 2048)
			liveAddr := live.LocalAddr().(*net.UDPAddr).AddrPort()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for got := 0; got < n; {
				k, err := c.ReadBatchAddrPort(b)
				if err != nil {
					t.Fatal(err)
				}
				for i := range k {
					if b.Addrs[i] != liveAddr {
						t.Fatalf("batch returned a datagram from %v, want %v", b.Addrs[i], liveAddr)
					}
					if want := fmt.Sprintf("live %d", got); string(b.Bufs[i][:b.N[i]]) != want {
						t.Fatalf("datagram %q, want %q", b.Bufs[i][:b.N[i]], want)
					}
					got++
				}
			}
			if s := c.Stats(); s.Strays[record.ReasonAlert] != n {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestReadBatchAddrPortDoesNotAllocate(t *testing.T) {
	raw := listenLoopback(t)
	c, _ := strayfilter.New(raw)
	for i := range 100 {
		c.MarkClosed(&net.UDPAddr{IP: net.IPv4(10, 0, 0, byte(i)), Port: 1})
	}
	sender := listenLoopback(t)
	const runs = 50
	for range (runs + 1) * 4 {
		sender.WriteTo([]byte("live datagram"), raw.LocalAddr())
	}
	b := strayfilter.NewBatch(4, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if a := testing.AllocsPerRun(runs, func() {
		if _, err := c.ReadBatchAddrPort(b); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("ReadBatchAddrPort allocates %v times per batch", a)
	}
}

func TestReadBatchAddrPortFallback(t *testing.T) {
	fc := newFakeConn()
	c, _ := strayfilter.New(fc)
	quiet, live := udpAddr("192.0.2.1:1"), udpAddr("192.0.2.2:2")
	c.MarkClosed(quiet)
	fc.push(loadRecord(t, "pion-v2-08-client-alert-epoch1.hex"), quiet)
	fc.push([]byte("live"), live)
	b := strayfilter.NewBatch(4, 2048)
	n, err := c.ReadBatchAddrPort(b)
	if err != nil || n != 1 || string(b.Bufs[0][:b.N[0]]) != "live" || b.Addrs[0] != live.AddrPort() {
		t.Fatalf("fallback = %d, %v", n, err)
	}
}
