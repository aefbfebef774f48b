package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
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
	// mu, touch it: readers' entries stay four words.
	echo map[uint32]*echoState
}

// Bounds on the closing alerts a Table keeps and sends again.
const (
	// MaxAlert is the longest closing alert kept: a DTLS 1.2 close_notify
	// is 39 bytes with AES-GCM, 77 with AES-CBC and SHA-256.
	MaxAlert = 96
	// MaxEchoes caps how often one quiet peer's alert is sent again: on
	// its 1st, 2nd, 4th, 8th, 16th and 32nd stray.
	MaxEchoes = 6
)

type echoState struct {
	alert   [MaxAlert]byte
	n       uint8  // alert length
	echoes  uint8  // times sent again
	strays  uint32 // strays seen in this quiet period
	bytesIn uint64 // their bytes: never send more than that
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

// entry is one quiet peer. Readers see only the atomic fields; prev and next
// belong to the writer holding Table.mu.
type entry struct {
	hi, lo   atomic.Uint64 // the 16-byte address (IPv4 in mapped form)
	meta     atomic.Uint64 // port | present bit | zone hash << 32; 0 = free
	deadline atomic.Int64  // end of the quiet period, ns since Table.base
	prev     uint32
	next     uint32
	// hello is a hash of the closed association's client random (never
	// 0), or 0 for none: writers and LateHello only, under Table.mu.
	hello uint64
}

// state is what readers need for a lookup: the entries and an open-addressing
// index sized to at least twice the entries so probes stay short. It is
// replaced when it grows. An index slot holds the top 32 bits of the key's
// hash (which also choose its home slot) above the entry number + 1; 0 is
// empty. A probe compares hash bits first and reads an entry only on a
// match, so a miss touches only the contiguous index, not scattered entries.
type state struct {
	entries []entry
	index   []atomic.Uint64
	mask    uint64
	seed    uint64
}

func slotValue(idx uint32, h uint64) uint64 { return h&^0xffffffff | uint64(idx+1) }

func (s *state) home(h uint64) uint64 { return (h >> 32) & s.mask }

type key struct{ hi, lo, meta uint64 }

func (e *entry) key() key { return key{e.hi.Load(), e.lo.Load(), e.meta.Load()} }

const presentBit = 1 << 16

var zoneSeed = maphash.MakeSeed()

func makeKey(p netip.AddrPort) key {
	a := p.Addr()
	meta := uint64(p.Port()) | presentBit
	if a.Is4() || a.Is4In6() {
		// The common case, built straight from the four bytes: the same
		// key as the mapped form's sixteen, at a fraction of the cost.
		v4 := a.Unmap().As4()
		return key{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(v4[:])), meta}
	}
	b := a.As16()
	if z := a.Zone(); z != "" {
		// Link-local peers on different interfaces are different peers; a
		// 32-bit hash of the zone keeps the entry at four words.
		meta |= uint64(uint32(maphash.String(zoneSeed, z))) << 32
	}
	return key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), meta}
}

// hash mixes the key with a per-table seed. Only its top 32 bits are used,
// and two multiplications reach them from every key bit. Keys are only
// ever inserted by local closes, so this needs spread, not resistance to
// chosen inputs.
func (k key) hash(seed uint64) uint64 {
	h := (k.hi ^ bits.RotateLeft64(k.meta, 29) ^ seed) * 0x9e3779b97f4a7c15
	h = (h ^ h>>29 ^ k.lo) * 0xbf58476d1ce4e5b9
	return h ^ h>>31
}

// Option configures a Table.
type Option func(*Table) error

// WithQuietPeriod sets how long a closed peer stays quiet (default 10 s).
func WithQuietPeriod(d time.Duration) Option {
	return func(t *Table) error {
		if d <= 0 {
			return fmt.Errorf("conntrack: quiet period %v: must be positive: %w", d, ErrInvalidOption)
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
			return fmt.Errorf("conntrack: max quiet peers %d: must be between 1 and %d: %w", n, 1<<30, ErrInvalidOption)
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
			return fmt.Errorf("conntrack: clock is nil: %w", ErrInvalidOption)
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
			return nil, err
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

// find probes for k. It may run concurrently with a writer, so it bounds its
// probe count instead of trusting the index to contain an empty slot.
func (s *state) find(k key, h uint64) (int64, bool) {
	i := s.home(h)
	for range len(s.index) {
		v := s.index[i].Load()
		if v == 0 {
			return 0, false
		}
		if v>>32 == h>>32 {
			if n := int(uint32(v)); n >= 1 && n <= len(s.entries) {
				e := &s.entries[n-1]
				if e.meta.Load() == k.meta && e.lo.Load() == k.lo && e.hi.Load() == k.hi {
					return e.deadline.Load(), true
				}
			}
		}
		i = (i + 1) & s.mask
	}
	return 0, false
}

// slot returns the index position that holds k, or -1. Writer only.
func (s *state) slot(k key, h uint64) int {
	i := s.home(h)
	for range len(s.index) {
		v := s.index[i].Load()
		if v == 0 {
			return -1
		}
		if v>>32 == h>>32 {
			e := &s.entries[uint32(v)-1]
			if e.meta.Load() == k.meta && e.lo.Load() == k.lo && e.hi.Load() == k.hi {
				return int(i)
			}
		}
		i = (i + 1) & s.mask
	}
	return -1
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

// Closure is what the local side knows of the association whose close
// starts a peer's quiet period.
type Closure struct {
	// Alert is the closing alert the local side sent the peer, kept for
	// Stray; longer than MaxAlert, or none, it is not kept.
	Alert []byte
	// ClientRandom is the client random of the association's handshake,
	// when HasRandom: a late copy of its ClientHello carries it, and
	// LateHello tells that copy from a new handshake.
	ClientRandom [32]byte
	HasRandom    bool
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
		st.entries[idx].deadline.Store(t.until(now))
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
	e.deadline.Store(t.until(now))
	t.pushBack(st, idx)
	st.insert(idx, h) // publishes the entry, whose fields are written
	t.count++
	t.n.Store(int64(t.count))
	t.keep(st, idx, c)
	return nil
}

// keep stores what a close knew in entry idx; with mu held.
func (t *Table) keep(st *state, idx uint32, c Closure) {
	st.entries[idx].hello = 0
	if c.HasRandom {
		st.entries[idx].hello = maphash.Comparable(t.helloSeed, c.ClientRandom) | 1
	}
	t.keepAlert(idx, c.Alert)
}

// LateHello reports whether a ClientHello with client random rnd from peer
// is a late copy of the ClientHello of the association whose close put
// peer into its quiet period (a retransmission or a network duplicate
// delayed past the close): a stack would take it for a new connection,
// though no client starts a new handshake with an old random. Any other
// ClientHello is the client starting afresh (RFC 6347 §4.2.8).
func (t *Table) LateHello(peer netip.AddrPort, rnd [32]byte) bool {
	if t.n.Load() == 0 || !peer.IsValid() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	idx, ok := t.quietLocked(peer)
	if !ok {
		return false
	}
	hello := t.st.Load().entries[idx].hello
	return hello != 0 && hello == maphash.Comparable(t.helloSeed, rnd)|1
}

// quietLocked returns the index of peer's entry if its quiet period is
// running; with mu held, so the entry stays put.
func (t *Table) quietLocked(peer netip.AddrPort) (uint32, bool) {
	k := makeKey(peer)
	st := t.st.Load()
	i := st.slot(k, k.hash(t.seed))
	if i < 0 {
		return 0, false
	}
	idx := uint32(st.index[i].Load()) - 1
	if st.entries[idx].deadline.Load() <= t.now() {
		return 0, false
	}
	return idx, true
}

// keepAlert starts entry idx's echo bookkeeping afresh; with mu held.
func (t *Table) keepAlert(idx uint32, alert []byte) {
	if len(alert) == 0 || len(alert) > MaxAlert {
		delete(t.echo, idx)
		return
	}
	if t.echo == nil {
		t.echo = make(map[uint32]*echoState)
	}
	es := t.echo[idx]
	if es == nil {
		es = new(echoState)
		t.echo[idx] = es
	}
	*es = echoState{n: uint8(len(alert))}
	copy(es.alert[:], alert)
}

// Stray tells the table that a datagram of size bytes from peer was
// dropped during its quiet period, and reports whether the closing alert
// kept for peer (MarkClosedWithAlert) is due to be sent to it again,
// copying it into buf, which must hold MaxAlert bytes. It is due on the
// 1st, 2nd, 4th, 8th... stray, at most MaxEchoes times, and only while the
// peer has sent at least as many bytes as the echoes add up to: a forged
// source gets at most the old alert back, never more than it sent, and the
// alert authenticates nothing new. (quic-go answers a closed connection's
// packets so: closed_conn.go.)
func (t *Table) Stray(peer netip.AddrPort, size int, buf []byte) (int, bool) {
	if t.n.Load() == 0 || !peer.IsValid() || size < 0 {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.echo) == 0 {
		return 0, false
	}
	idx, ok := t.quietLocked(peer)
	es := t.echo[idx]
	if !ok || es == nil {
		return 0, false
	}
	es.strays++
	es.bytesIn += uint64(size)
	due := es.strays&(es.strays-1) == 0 && es.echoes < MaxEchoes &&
		es.bytesIn >= uint64(es.echoes+1)*uint64(es.n)
	if !due || len(buf) < int(es.n) {
		return 0, false
	}
	es.echoes++
	t.stats.Echoes++
	return copy(buf, es.alert[:es.n]), true
}

// until is when a quiet period that starts now ends. It saturates: a quiet
// period as long as time.Duration allows must not wrap into the past.
func (t *Table) until(now int64) int64 {
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

func (s *state) insert(idx uint32, h uint64) {
	i := s.home(h)
	for s.index[i].Load() != 0 {
		i = (i + 1) & s.mask
	}
	s.index[i].Store(slotValue(idx, h))
}

// delete empties slot i with backward-shift deletion, so the index needs no
// tombstones and probe sequences stay short however many closes it has seen.
func (s *state) delete(i int) {
	if i < 0 {
		return
	}
	hole := uint64(i)
	for j := (hole + 1) & s.mask; ; j = (j + 1) & s.mask {
		v := s.index[j].Load()
		if v == 0 {
			break
		}
		home := (v >> 32) & s.mask
		// The entry at j may fill the hole only if the hole lies between
		// its home slot and j; otherwise a probe from home would miss it.
		if (j-home)&s.mask >= (j-hole)&s.mask {
			s.index[hole].Store(v)
			hole = j
		}
	}
	s.index[hole].Store(0)
}

// grow doubles the entry storage (up to the table's cap) and rebuilds the
// index. Readers keep using the old state until the pointer is swapped; the
// sequence lock makes them retry across the swap.
func (t *Table) grow(old *state) *state {
	n := 2 * len(old.entries)
	if n < 16 {
		n = 16
	}
	if n > t.max {
		n = t.max
	}
	slots := uint64(1) << bits.Len(uint(2*n-1))
	st := &state{
		entries: make([]entry, n),
		index:   make([]atomic.Uint64, slots),
		mask:    slots - 1,
		seed:    t.seed,
	}
	for i := range old.entries {
		o, e := &old.entries[i], &st.entries[i]
		e.hi.Store(o.hi.Load())
		e.lo.Store(o.lo.Load())
		e.meta.Store(o.meta.Load())
		e.deadline.Store(o.deadline.Load())
		e.prev, e.next, e.hello = o.prev, o.next, o.hello
		if o.meta.Load() != 0 {
			st.insert(uint32(i), o.key().hash(t.seed))
		}
	}
	for i := len(old.entries); i < n; i++ {
		st.entries[i].next = t.free
		t.free = uint32(i)
	}
	t.st.Store(st)
	return st
}

// Empty reports whether the table stores no peer: one atomic load, so a
// filter can skip even the address conversion while nothing is quiet.
func (t *Table) Empty() bool { return t.n.Load() == 0 }
