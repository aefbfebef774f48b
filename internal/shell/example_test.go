package shell_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/straydtls/straydtls/internal/assoc"
	"github.com/straydtls/straydtls/internal/shell"
)

// adapter is the I/O side of a toy adapter: its handles are names, and it
// closes nothing but says what it would do.
type adapter struct{ released chan string }

func (adapter) Settled(*assoc.Machine[string]) {}

func (adapter) Ended(e assoc.Ending[string]) bool {
	fmt.Println("ended:", e.Assoc.Handle, e.Why, "quiet:", e.Quiet)
	return true
}

func (a adapter) Release(h string) { a.released <- h }

// A ClientHello opens an unverified association; nobody answers, and the
// Shell's timer ends it at its timeout with no further event, then hands
// its handle back to be released.
func ExampleShell() {
	m, _ := assoc.New[string](assoc.Config{
		MaxUnverified:     16,
		UnverifiedTimeout: 20 * time.Millisecond,
		HandshakeTimeout:  time.Second,
	})
	ad := adapter{released: make(chan string, 1)}
	s := shell.New(m, shell.Handler[string](ad))

	sm := s.Lock()
	a := sm.Client(s.Now(), netip.MustParseAddrPort("192.0.2.7:5684"), clientHello()).Open
	a.Handle = "first client"
	s.Unlock()

	fmt.Println("released:", <-ad.released)
	// Output:
	// ended: first client unverified-timeout quiet: false
	// released: first client
}

func clientHello() []byte {
	body := append([]byte{0xfe, 0xfd}, make([]byte, 32)...) // version, random
	body = append(body, 0, 0, 0, 2, 0xc0, 0x2b, 1, 0)       // session, cookie, suites, compression
	n := len(body)
	h := []byte{1, 0, byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)}
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte((n + 12) >> 8), byte(n + 12)}
	return append(append(rec, h...), body...)
}
