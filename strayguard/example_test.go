package strayguard_test

import (
	"log"
	"time"

	"github.com/straydtls/straydtls/strayguard"
)

// A DTLS server on port 4433 of eth0 keeps its socket; the programs drop
// its closed clients' strays for 10 s. Pinned, they outlive this process:
// the next Attach with the same directory adopts them.
func ExampleAttach() {
	g, err := strayguard.Attach("eth0", []uint16{4433},
		strayguard.WithQuietPeriod(10*time.Second),
		strayguard.WithPinDir(strayguard.PinDir("eth0")))
	if err != nil {
		log.Fatal(err) // not root, no such interface, Linux before 6.6, ...
	}
	defer g.Close() // leaves the pinned programs filtering; g.Detach removes them

	s, err := g.Stats()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%d quiet clients, %d strays dropped", s.QuietClients, s.TotalStrays())
}

// Remove takes away what a stopped daemon left pinned (strayguard -detach).
func ExampleRemove() {
	if err := strayguard.Remove(strayguard.PinDir("eth0")); err != nil {
		log.Fatal(err)
	}
}
