package relay

import (
	"sync"
	"time"
)

// freezer parks the goroutines that read sockets (the client readers, the
// pump loop, pumps) between two reads, with nothing in hand, while the
// relay hands over to a successor: Freeze sets it and puts a past read
// deadline on every socket; a reader whose read fails so parks, and wakes
// when the hand-over failed (Thaw) or when the relay closes (it returns).
type freezer struct {
	mu     sync.Mutex
	cond   sync.Cond
	frozen bool
	closed bool
	active int // reading goroutines running
	parked int // of those, parked
}

func (f *freezer) init() { f.cond.L = &f.mu }

// join counts a reading goroutine about to start; it calls leave when it
// returns.
func (f *freezer) join() {
	f.mu.Lock()
	f.active++
	f.mu.Unlock()
}

func (f *freezer) leave() {
	f.mu.Lock()
	f.active--
	f.cond.Broadcast()
	f.mu.Unlock()
}

// park is called by a reading goroutine whose read failed on its
// deadline. It reports whether to read on: at once if the relay is not
// frozen (a deadline of someone else's), after Thaw if it is, and false
// once the relay closed.
func (f *freezer) park() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozen || f.closed {
		return !f.closed
	}
	f.parked++
	f.cond.Broadcast()
	for f.frozen && !f.closed {
		f.cond.Wait()
	}
	f.parked--
	return !f.closed
}

// freeze marks the relay frozen; it reports false when it is already.
func (f *freezer) freeze() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen || f.closed {
		return false
	}
	f.frozen = true
	return true
}

// waitParkedReaders waits until n goroutines are parked, at most d: the
// client readers, which Freeze stops first.
func (f *freezer) waitParkedReaders(n int, d time.Duration) bool {
	return f.wait(func() bool { return f.parked >= n }, d)
}

// waitParked waits until every reading goroutine is parked, at most d.
func (f *freezer) waitParked(d time.Duration) bool {
	return f.wait(func() bool { return f.parked >= f.active }, d)
}

func (f *freezer) wait(done func() bool, d time.Duration) bool {
	t := time.AfterFunc(d, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer t.Stop()
	deadline := time.Now().Add(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	for !done() {
		if !time.Now().Before(deadline) {
			return false
		}
		f.cond.Wait()
	}
	return true
}

func (f *freezer) thaw() {
	f.mu.Lock()
	f.frozen = false
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *freezer) close() {
	f.mu.Lock()
	f.closed = true
	f.cond.Broadcast()
	f.mu.Unlock()
}
