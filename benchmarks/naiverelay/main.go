// Command naiverelay is the relay anyone would write first, for the relay
// benchmark to compare against: one datagram per system call both ways, a
// connected upstream socket and a goroutine per client address, nothing
// inspected, nothing ever closed. It prints its address on stdout.
//
//	naiverelay -listen 127.0.0.1:0 -upstream 127.0.0.1:4434
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address clients send to")
	upstream := flag.String("upstream", "", "server host:port")
	flag.Parse()
	up, err := net.ResolveUDPAddr("udp", *upstream)
	if err != nil {
		log.Fatal(err)
	}
	la, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", la)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pc.LocalAddr())
	clients := map[netip.AddrPort]*net.UDPConn{}
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			log.Fatal(err)
		}
		c := clients[from]
		if c == nil {
			if c, err = net.DialUDP("udp", nil, up); err != nil {
				log.Print(err)
				continue
			}
			clients[from] = c
			go func() {
				b := make([]byte, 65535)
				for {
					n, err := c.Read(b)
					if err != nil {
						continue // ICMP: the server may come back
					}
					pc.WriteToUDPAddrPort(b[:n], from)
				}
			}()
		}
		c.Write(buf[:n])
	}
}
