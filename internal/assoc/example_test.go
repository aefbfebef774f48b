package assoc_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/internal/assoc"
)

// A Machine fed by hand: a forged ClientHello and a real one from the
// same address open two unverified associations; only the real client's
// cookie echo verifies its own, protected records go to it alone once its
// server answered, and the forged one times out leaving nothing behind. The shell's handles here are
// strings.
func ExampleMachine() {
	m, _ := assoc.New[string](assoc.Config{
		MaxUnverified:     1024,
		UnverifiedTimeout: 5 * time.Second,
		HandshakeTimeout:  30 * time.Second,
		Rehandshake:       true,
	})
	peer := netip.MustParseAddrPort("192.0.2.7:5684")
	var now int64

	forged := m.Client(now, peer, hello(0xf0, nil)).Open
	forged.Handle = "forged"
	real := m.Client(now, peer, hello(0x11, nil)).Open
	real.Handle = "real"
	m.Server(now, real, helloVerify([]byte("cookie")))
	r := m.Client(now, peer, hello(0x11, []byte("cookie")))
	fmt.Println("cookie echo to", r.To[0].Handle, "now", real.State())
	m.Server(now, real, handshake(2, append([]byte{0xfe, 0xfd}, make([]byte, 35)...))) // ServerHello
	r = m.Client(now, peer, []byte{23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0})
	fmt.Println("an encrypted record to", r.N, "association:", r.To[0].Handle)
	m.Expire(now + int64(5*time.Second))
	for _, e := range m.Ended(nil) {
		fmt.Println("ended", e.Assoc.Handle, e.Why, "quiet:", e.Quiet)
	}
	fmt.Println(forged.State(), real.State())
	// Output:
	// cookie echo to real now handshaking
	// an encrypted record to 1 association: real
	// ended forged unverified-timeout quiet: false
	// ended handshaking
}

func hello(random byte, cookie []byte) []byte {
	body := []byte{0xfe, 0xfd}
	for range 32 {
		body = append(body, random)
	}
	body = append(append(body, 0, byte(len(cookie))), cookie...)
	body = append(body, 0, 2, 0xc0, 0x2b, 1, 0)
	return handshake(1, body)
}

func helloVerify(cookie []byte) []byte {
	return handshake(3, append([]byte{0xfe, 0xff, byte(len(cookie))}, cookie...))
}

func handshake(msgType byte, body []byte) []byte {
	n := len(body)
	h := []byte{msgType, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte((n + 12) >> 8), byte(n + 12)}
	return append(append(rec, h...), body...)
}
