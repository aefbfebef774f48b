package relay_test

import (
	"fmt"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/adapters/relay"
)

// A relay in front of a DTLS server on 127.0.0.1:4434. A datagram that does
// not open an association, from a client that has none, never reaches the
// server.
func ExampleListen() {
	r, err := relay.Listen("udp", "127.0.0.1:0", "127.0.0.1:4434",
		relay.WithQuietPeriod(10*time.Second), relay.WithMaxAssociations(1000))
	if err != nil {
		log.Fatal(err)
	}
	go r.Serve()
	defer r.Close()

	c, err := net.Dial("udp", r.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// An epoch-1 application-data record: a stray of some old association.
	c.Write([]byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7, 0, 1, 0})
	for r.Stats().DroppedUnknown == 0 {
		time.Sleep(time.Millisecond)
	}
	s := r.Stats()
	fmt.Println("associations:", s.Associations, "dropped:", s.DroppedUnknown)
	// Output: associations: 0 dropped: 1
}

// A relay hands over to its successor, here in the same process: the
// successor reads the same listening socket and carries the associations
// on. Across processes the Handover's files are inherited descriptors and
// its State bytes on a pipe (cmd/strayrelay on SIGUSR2).
func ExampleRelay_Freeze() {
	old, err := relay.Listen("udp", "127.0.0.1:0", "127.0.0.1:4434")
	if err != nil {
		log.Fatal(err)
	}
	go old.Serve()
	h, err := old.Freeze()
	if err != nil {
		log.Fatal(err)
	}
	next, err := relay.Adopt(h, netip.MustParseAddrPort("127.0.0.1:4434"))
	if err != nil {
		old.Thaw() // the successor failed: serve on
		log.Fatal(err)
	}
	go next.Serve()
	defer next.Close()
	old.Close() // the old process exits
	fmt.Println("same address:", next.Addr().String() == old.Addr().String())
	// Output: same address: true
}
