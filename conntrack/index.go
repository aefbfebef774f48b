package conntrack

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"sync/atomic"
)

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
