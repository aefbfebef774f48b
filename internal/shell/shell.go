package shell

import (
	"sync"
	"time"

	"github.com/straydtls/straydtls/internal/assoc"
)

// Handler is the adapter's side of a Shell.
type Handler[T any] interface {
	// Settled is called with the lock held at the end of every event,
	// before Ended: the adapter copies what its lock-free paths read from
	// the machine.
	Settled(m *assoc.Machine[T])
	// Ended is called with the lock held for each association the machine
	// ended, in order. A quiet client's quiet period starts here, before
	// any later datagram can find the client unrouted. It reports whether
	// the association's handle is to be released.
	Ended(e assoc.Ending[T]) (release bool)
	// Release is called without the lock for each handle Ended asked for,
	// in order: the adapter closes the association's I/O.
	Release(h T)
}

// Shell serialises events into a Machine. Lock and Unlock bracket every
// call into it, and every use of the adapter state the same lock guards.
type Shell[T any] struct {
	h    Handler[T]
	base time.Time

	mu      sync.Mutex
	m       *assoc.Machine[T]
	ended   []assoc.Ending[T] // reused by every Unlock
	timer   *time.Timer
	timerAt int64 // the due the timer is armed for
	stopped bool  // no more timers
}

// New returns a Shell around m. Its clock starts now.
func New[T any](m *assoc.Machine[T], h Handler[T]) *Shell[T] {
	return &Shell[T]{h: h, base: time.Now(), m: m, timerAt: -1}
}

// Now is the machine's clock: nanoseconds since New.
func (s *Shell[T]) Now() int64 { return int64(time.Since(s.base)) }

// Lock takes the lock and returns the machine, to be used until Unlock.
func (s *Shell[T]) Lock() *assoc.Machine[T] {
	s.mu.Lock()
	return s.m
}

// Unlock ends an event: it tells the Handler what the machine ended,
// points the timer at the machine's next deadline, releases the lock, and
// then has the ended associations' handles released.
func (s *Shell[T]) Unlock() { s.Release(s.UnlockHeld()) }

// UnlockHeld is Unlock for a caller that must finish with the ended
// associations' I/O first (datagrams routed to them before they ended):
// it returns their handles, which the caller passes to Release.
func (s *Shell[T]) UnlockHeld() []T {
	s.h.Settled(s.m)
	s.ended = s.m.Ended(s.ended[:0])
	var release []T // allocated only when an association ends
	for _, e := range s.ended {
		if s.h.Ended(e) {
			release = append(release, e.Assoc.Handle)
		}
	}
	clear(s.ended) // keeps no ended association or alert alive
	s.arm()
	s.mu.Unlock()
	return release
}

// Release hands each of hs to the Handler's Release, in order.
func (s *Shell[T]) Release(hs []T) {
	for _, h := range hs {
		s.h.Release(h)
	}
}

// StopLocked stops the timer for good: the adapter's I/O is gone. Call it
// with the lock held.
func (s *Shell[T]) StopLocked() {
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
}

// arm points the timer at the machine's next deadline. Timeouts are
// worked off by the timer, not by reads, so an idle adapter still ends its
// stale handshakes.
func (s *Shell[T]) arm() {
	due, ok := s.m.NextDue()
	if !ok || due == s.timerAt || s.stopped {
		return
	}
	s.timerAt = due
	d := time.Duration(due - s.Now())
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.expire)
	} else {
		s.timer.Reset(d)
	}
}

func (s *Shell[T]) expire() {
	m := s.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.timerAt = -1
	m.Expire(s.Now())
	s.Unlock()
}
