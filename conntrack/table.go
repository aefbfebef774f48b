package conntrack

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for a Table built without options.
const (
	DefaultQuietPeriod   = 10 * time.Second
	DefaultMaxQuietPeers = 1 << 16
)

// Errors returned by this package; match them with errors.Is.
var (
	ErrInvalidPeer   = errors.New("invalid peer address")
	ErrInvalidOption = errors.New("invalid option")
)

// Table remembers peers whose association was closed locally, each for the
// same quiet period. Queries are lock-free and write no shared memory;
// MarkClosed and Forget serialise on a mutex. A Table may be shared by any number
// of conns and goroutines.
type Table struct {
	// n is the number of stored entries (expired ones included until the
	// next write sweeps them). Zero makes Quiet a single atomic load.
	n atomic.Int64
	// seq is a sequence lock: odd while a writer changes index or entries.
	// Readers retry when it moved, so they never write shared memory.
	seq atomic.Uint64
	st  atomic.Pointer[state]

	quiet int64 // nanoseconds
	max   int
	clock func() time.Time
	base  time.Time
	seed  uint64
	// helloSeed hashes the client randoms entries keep (entry.hello).
	helloSeed maphash.Seed

	mu    sync.Mutex // serialises writers; guards everything below
	count int        // live entries in the FIFO
	head  uint32     // oldest entry, or none
	tail  uint32     // newest entry, or none
	free  uint32     // free-list head, linked through entry.next
	stats Stats
	// echo holds the closing alert of the entries that have one, and what
	// their strays have earned (see Stray). Only writers and Stray, under
	// mu, touch it, so the entries readers probe stay small.
	echo map[uint32]*echoState
}

// Stats are a Table's counters since it was created.
type Stats struct {
	Closes     uint64 // MarkClosed calls that started or restarted a quiet period
	Forgets    uint64 // entries removed by Forget
	Evictions  uint64 // entries removed early because the table was at its cap
	Expired    uint64 // entries removed lazily after their quiet period
	Echoes     uint64 // closing alerts Stray said to send again
	QuietPeers int    // peers quiet now, as Table.Len
}

const none = ^uint32(0)

// Option configures a Table. strayfilter, the relay and strayguard take
// the same settings as options of their own, and check them with these.
type Option func(*Table) error

// WithQuietPeriod sets how long a closed peer stays quiet (default 10 s).
func WithQuietPeriod(d time.Duration) Option {
	return func(t *Table) error {
		if d <= 0 {
			return fmt.Errorf("quiet period %v must be positive", d)
		}
		t.quiet = int64(d)
		return nil
	}
}

// WithMaxQuietPeers caps the number of quiet peers (default 65,536). At the cap
// the peer closed longest ago is evicted, which only ends its filtering early.
func WithMaxQuietPeers(n int) Option {
	return func(t *Table) error {
		if n < 1 || n > 1<<30 {
			return fmt.Errorf("max quiet peers %d must be between 1 and %d", n, 1<<30)
		}
		t.max = n
		return nil
	}
}

// WithClock replaces time.Now, so tests can move time without sleeping. The
// clock must not go backwards.
func WithClock(now func() time.Time) Option {
	return func(t *Table) error {
		if now == nil {
			return errors.New("clock is nil")
		}
		t.clock = now
		return nil
	}
}

// New returns an empty Table. It allocates its storage lazily, growing with
// the number of quiet peers up to the cap.
func New(opts ...Option) (*Table, error) {
	t := &Table{
		quiet: int64(DefaultQuietPeriod),
		max:   DefaultMaxQuietPeers,
		head:  none,
		tail:  none,
		free:  none,
		seed:  new(maphash.Hash).Sum64(),

		helloSeed: maphash.MakeSeed(),
	}
	for _, o := range opts {
		if err := o(t); err != nil {
			return nil, fmt.Errorf("conntrack: %w: %w", err, ErrInvalidOption)
		}
	}
	t.base = time.Now()
	if t.clock != nil {
		t.base = t.clock()
	}
	// One empty slot and no entries: every lookup misses until the first MarkClosed.
	t.st.Store(&state{index: make([]atomic.Uint64, 1), seed: t.seed})
	return t, nil
}

// QuietPeriod returns the configured quiet period.
func (t *Table) QuietPeriod() time.Duration { return time.Duration(t.quiet) }

// Cap returns the maximum number of entries.
func (t *Table) Cap() int { return t.max }

// now is nanoseconds since the table was made. The default clock reads only
// the monotonic clock (time.Since), half the cost of time.Now.
func (t *Table) now() int64 {
	if t.clock == nil {
		return int64(time.Since(t.base))
	}
	return int64(t.clock().Sub(t.base))
}

// Quiet reports whether peer is in its quiet period now. It never blocks and
// never writes memory other readers share; on an empty table it is one
// atomic load, and only a peer found in the table costs a clock reading.
func (t *Table) Quiet(peer netip.AddrPort) bool {
	deadline, ok := t.Deadline(peer)
	return ok && t.now() < deadline
}

// Deadline returns when peer's quiet period ends, on the table's clock
// (see Now), if peer is in the table; it may have ended already. A reader
// that asks about a batch of peers compares each deadline with one Now.
func (t *Table) Deadline(peer netip.AddrPort) (int64, bool) {
	if t.n.Load() == 0 {
		return 0, false
	}
	return t.lookup(makeKey(peer))
}

// Now reads the table's clock: nanoseconds since the table was made, on
// the injected clock if there is one.
func (t *Table) Now() int64 { return t.now() }

func (t *Table) lookup(k key) (deadline int64, found bool) {
	h := k.hash(t.seed)
	for spin := 0; ; spin++ {
		s := t.seq.Load()
		if s&1 == 0 {
			deadline, found = t.st.Load().find(k, h)
			if t.seq.Load() == s {
				return deadline, found
			}
		}
		if spin >= 16 {
			// A writer was descheduled inside its section; let it finish.
			runtime.Gosched()
		}
	}
}

// MarkClosed starts the quiet period of peer now, or restarts it if the peer is
// already quiet. An IPv4-mapped IPv6 address is the same peer as its IPv4
// form. It fails only for an invalid address.
func (t *Table) MarkClosed(peer netip.AddrPort) error { return t.Close(peer, Closure{}) }

// MarkClosedWithAlert is MarkClosed that also keeps alert, the closing
// alert (close_notify or fatal) the local side sent the peer, to be sent
// again when the peer's strays show it missed it (see Stray). An alert
// longer than MaxAlert, or none, is not kept; a restart replaces it.
func (t *Table) MarkClosedWithAlert(peer netip.AddrPort, alert []byte) error {
	return t.Close(peer, Closure{Alert: alert})
}

// Close is MarkClosed with what the local side knows of the association
// that ended; a restart replaces what an earlier one kept.
func (t *Table) Close(peer netip.AddrPort, c Closure) error {
	if !peer.IsValid() {
		return fmt.Errorf("conntrack: close %v: %w", peer, ErrInvalidPeer)
	}
	k := makeKey(peer)
	h := k.hash(t.seed)

	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.stats.Closes++
	st := t.st.Load()
	i := st.slot(k, h)
	if t.head != none && st.entries[t.head].deadline.Load() <= now || i < 0 && t.count >= t.max {
		// Removing entries (expiry, eviction) moves index slots and frees
		// entries for reuse, which a reader must not see half done: only
		// that goes under the sequence lock. Restarting a peer's period and
		// adding a peer do not disturb a reader, so they stay out of it.
		t.beginWrite()
		t.expire(now)
		i = st.slot(k, h)
		if i < 0 && t.count >= t.max {
			t.remove(st, t.head)
			t.stats.Evictions++
		}
		t.endWrite()
	}
	if i >= 0 {
		// One atomic word: a reader sees the old deadline or the new.
		idx := uint32(st.index[i].Load()) - 1
		st.entries[idx].deadline.Store(t.until(now, c))
		t.unlink(st, idx)
		t.pushBack(st, idx)
		t.keep(st, idx, c)
		return nil
	}
	if t.free == none {
		// Readers on the old state go on reading it unchanged; new ones
		// find the copy.
		st = t.grow(st)
	}
	idx := t.free
	e := &st.entries[idx]
	t.free = e.next
	e.hi.Store(k.hi)
	e.lo.Store(k.lo)
	e.meta.Store(k.meta)
	e.deadline.Store(t.until(now, c))
	t.pushBack(st, idx)
	st.insert(idx, h) // publishes the entry, whose fields are written
	t.count++
	t.n.Store(int64(t.count))
	t.keep(st, idx, c)
	return nil
}

// until is when a quiet period that starts now ends, or the rest of one
// carried over (c.Remaining). It saturates: a quiet period as long as
// time.Duration allows must not wrap into the past.
func (t *Table) until(now int64, c Closure) int64 {
	if r := int64(c.Remaining); r > 0 && r < t.quiet {
		return now + r
	}
	if now > math.MaxInt64-t.quiet {
		return math.MaxInt64
	}
	return now + t.quiet
}

// Forget ends the quiet period of peer at once and reports whether it was
// quiet. The filter calls it when the peer opens a new association.
func (t *Table) Forget(peer netip.AddrPort) bool {
	if t.n.Load() == 0 || !peer.IsValid() {
		return false
	}
	k := makeKey(peer)
	h := k.hash(t.seed)

	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.st.Load()
	i := st.slot(k, h)
	if i < 0 {
		return false // nothing changes: readers are not disturbed
	}
	now := t.now()
	t.beginWrite()
	defer t.endWrite()
	t.expire(now) // an expired peer is not forgotten: it was not quiet
	if i = st.slot(k, h); i < 0 {
		return false
	}
	t.remove(st, uint32(st.index[i].Load())-1)
	t.stats.Forgets++
	return true
}

// Len returns the number of peers in their quiet period now.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep()
	return t.count
}

// Stats returns the table's counters; Len is as from Len.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep()
	s := t.stats
	s.QuietPeers = t.count
	return s
}

// sweep drops expired entries; the caller holds mu.
func (t *Table) sweep() {
	now := t.now()
	st := t.st.Load()
	if t.head == none || st.entries[t.head].deadline.Load() > now {
		return
	}
	t.beginWrite()
	t.expire(now)
	t.endWrite()
}

func (t *Table) beginWrite() { t.seq.Add(1) }

func (t *Table) endWrite() {
	t.n.Store(int64(t.count))
	t.seq.Add(1)
}

// expire removes entries whose quiet period is over. Every entry has the same
// quiet period, so the FIFO is in deadline order and expiry stops at the
// first live entry: O(1) per removed entry, nothing for a timer to do.
func (t *Table) expire(now int64) {
	st := t.st.Load()
	for t.head != none && st.entries[t.head].deadline.Load() <= now {
		t.remove(st, t.head)
		t.stats.Expired++
	}
}

func (t *Table) pushBack(st *state, idx uint32) {
	e := &st.entries[idx]
	e.prev, e.next = t.tail, none
	if t.tail != none {
		st.entries[t.tail].next = idx
	} else {
		t.head = idx
	}
	t.tail = idx
}

func (t *Table) unlink(st *state, idx uint32) {
	e := &st.entries[idx]
	if e.prev != none {
		st.entries[e.prev].next = e.next
	} else {
		t.head = e.next
	}
	if e.next != none {
		st.entries[e.next].prev = e.prev
	} else {
		t.tail = e.prev
	}
}

// remove unlinks entry idx from the FIFO and the index and frees it.
func (t *Table) remove(st *state, idx uint32) {
	delete(t.echo, idx)
	e := &st.entries[idx]
	k := e.key()
	st.delete(st.slot(k, k.hash(t.seed)))
	t.unlink(st, idx)
	e.meta.Store(0)
	e.hello = 0
	e.next = t.free
	t.free = idx
	t.count--
}

// Empty reports whether the table stores no peer: one atomic load, so a
// filter can skip even the address conversion while nothing is quiet.
func (t *Table) Empty() bool { return t.n.Load() == 0 }
