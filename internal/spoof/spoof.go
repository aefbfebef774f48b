// Package spoof sends test datagrams from forged loopback source
// addresses, as an off-path attacker would from anywhere: every datagram
// from its own 127.x.y.z address (a fresh socket, closed at once, so
// nothing answers what the target sends back). Only 127.0.0.0/8 is ever
// used as a source, and tests only aim it at their own loopback servers.
package spoof

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Source returns the i-th forged source address: 127.a.b.c with a, b, c
// from i, never 127.0.0.1 (where the tests' real peers live), port 0 (the
// kernel picks one).
func Source(i int) netip.Addr {
	i = i%(254*254*254) + 254*254 // skip 127.0.x.y and 127.1.0.x
	return netip.AddrFrom4([4]byte{127, byte(1 + i/(254*254)%254), byte(1 + i/254%254), byte(1 + i%254)})
}

// Send sends payload to dst from the forged source addr (any port).
func Send(src netip.Addr, dst netip.AddrPort, payload []byte) error {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	if err != nil {
		return fmt.Errorf("spoof: binding %v: %w", src, err)
	}
	defer c.Close()
	_, err = c.WriteToUDPAddrPort(payload, dst)
	return err
}

// Flood sends n datagrams to dst at rate per second, the i-th from
// Source(i % sources) and with payload(i). It returns when all are sent or
// stop is closed, and reports how many it sent.
func Flood(dst netip.AddrPort, n, sources int, rate float64, payload func(i int) []byte, stop <-chan struct{}) (int, error) {
	start := time.Now()
	sent := 0
	for sent < n {
		select {
		case <-stop:
			return sent, nil
		default:
		}
		due := min(n, int(time.Since(start).Seconds()*rate)+1)
		for ; sent < due; sent++ {
			if err := Send(Source(sent%sources), dst, payload(sent)); err != nil {
				return sent, err
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	return sent, nil
}
