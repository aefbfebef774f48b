package shell

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/straydtls/straydtls/internal/assoc"
)

// handler records what the Shell hands it, and whether the lock was held.
type handler struct {
	s        *Shell[string]
	mu       sync.Mutex // the test reads what the timer's goroutine wrote
	settled  int
	ended    []string // "handle why quiet locked"
	released []string // "handle locked"
}

func (h *handler) locked() bool {
	if h.s.mu.TryLock() {
		h.s.mu.Unlock()
		return false
	}
	return true
}

func (h *handler) Settled(*assoc.Machine[string]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settled++
}

func (h *handler) Ended(e assoc.Ending[string]) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = append(h.ended, e.Assoc.Handle+" "+e.Why.String()+" "+yes(e.Quiet, "quiet")+" "+yes(h.locked(), "locked"))
	return e.Why != assoc.EndClosed
}

func (h *handler) Release(hd string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.released = append(h.released, hd+" "+yes(h.locked(), "locked"))
}

// got returns what the handler saw so far.
func (h *handler) got() (settled int, ended, released []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.settled, slices.Clone(h.ended), slices.Clone(h.released)
}

func yes(b bool, s string) string {
	if b {
		return s
	}
	return "not-" + s
}

const unverifiedTimeout = 5 * time.Second

func newShell(t *testing.T) (*Shell[string], *handler) {
	m, err := assoc.New[string](assoc.Config{
		MaxUnverified:     4,
		UnverifiedTimeout: unverifiedTimeout,
		HandshakeTimeout:  30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &handler{}
	s := New(m, Handler[string](h))
	h.s = s
	return s, h
}

// open sends a ClientHello with random rnd from peer and names the
// association it opens.
func open(s *Shell[string], peer netip.AddrPort, rnd byte, name string) *assoc.Assoc[string] {
	m := s.Lock()
	a := m.Client(s.Now(), peer, hello(rnd)).Open
	a.Handle = name
	s.Unlock()
	return a
}

// TestTimeoutsEndWithoutTraffic: the timer works off the machine's
// timeouts with no event to prompt it; the Handler hears of the ending
// under the lock and releases the handle after it.
func TestTimeoutsEndWithoutTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := newShell(t)
		open(s, netip.MustParseAddrPort("192.0.2.1:1000"), 1, "a")
		time.Sleep(unverifiedTimeout - time.Millisecond)
		synctest.Wait()
		if _, ended, _ := h.got(); len(ended) != 0 {
			t.Fatalf("ended before its timeout: %v", ended)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		_, ended, released := h.got()
		if want := []string{"a unverified-timeout not-quiet locked"}; !slices.Equal(ended, want) {
			t.Errorf("ended %v, want %v", ended, want)
		}
		if want := []string{"a not-locked"}; !slices.Equal(released, want) {
			t.Errorf("released %v, want %v", released, want)
		}
	})
}

// TestUnlockHeld: the handles of what an event ended come back to the
// caller, and are released only when it says so; Ended reports only what
// is to be released.
func TestUnlockHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := newShell(t)
		peer := netip.MustParseAddrPort("192.0.2.1:1000")
		a := open(s, peer, 1, "a")
		b := open(s, netip.MustParseAddrPort("192.0.2.2:1000"), 2, "b")
		m := s.Lock()
		m.Abort(a)
		m.Closed(b) // the handle's own close: nothing to release
		held := s.UnlockHeld()
		_, ended, released := h.got()
		if !slices.Equal(held, []string{"a"}) || len(released) != 0 {
			t.Fatalf("held %v, released %v; want [a] held, nothing released", held, released)
		}
		if want := []string{"a aborted not-quiet locked", "b closed not-quiet locked"}; !slices.Equal(ended, want) {
			t.Errorf("ended %v, want %v", ended, want)
		}
		s.Release(held)
		settled, _, released := h.got()
		if want := []string{"a not-locked"}; !slices.Equal(released, want) {
			t.Errorf("released %v, want %v", released, want)
		}
		if settled != 3 {
			t.Errorf("Settled called %d times, want once per Unlock (3)", settled)
		}
	})
}

// TestStopLocked: once stopped, the timer ends nothing.
func TestStopLocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, h := newShell(t)
		open(s, netip.MustParseAddrPort("192.0.2.1:1000"), 1, "a")
		s.Lock()
		s.StopLocked()
		s.Unlock()
		time.Sleep(2 * unverifiedTimeout)
		synctest.Wait()
		if _, ended, _ := h.got(); len(ended) != 0 {
			t.Errorf("ended after StopLocked: %v", ended)
		}
	})
}

// hello is an epoch-0 ClientHello with random rnd and no cookie.
func hello(rnd byte) []byte {
	body := []byte{0xfe, 0xfd}
	for range 32 {
		body = append(body, rnd)
	}
	body = append(body, 0, 0, 0, 2, 0xc0, 0x2b, 1, 0)
	n := len(body)
	h := []byte{1, byte(n >> 16), byte(n >> 8), byte(n), 0, 0, 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte((n + 12) >> 8), byte(n + 12)}
	return append(append(rec, h...), body...)
}
