package udprelay

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Chaos is a Hook that drops, duplicates and delays datagrams at random;
// random delays reorder them. Every decision comes from one generator
// seeded with Seed, so the fate of the n-th datagram to reach the hook is
// fixed by the seed: a failing run is replayed by running it again with the
// seed it logged (goroutine scheduling can still change which datagram is
// n-th, so replays are faithful for one client and close for many).
type Chaos struct {
	Seed      uint64
	Drop      float64       // probability a datagram is dropped
	Duplicate float64       // probability it is sent twice
	Reorder   float64       // probability it is delayed by up to MaxDelay
	MaxDelay  time.Duration //

	mu  sync.Mutex
	rng *rand.Rand

	// The chaos network's own log, by direction: what it was given, what
	// it dropped, and how many datagrams it sent on (copies included).
	Seen, Dropped, Sent [2]atomic.Uint64
}

// NewChaos returns a Chaos with the given seed and rates.
func NewChaos(seed uint64, drop, duplicate, reorder float64, maxDelay time.Duration) *Chaos {
	return &Chaos{Seed: seed, Drop: drop, Duplicate: duplicate, Reorder: reorder, MaxDelay: maxDelay,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Hook is the Hook.
func (c *Chaos) Hook(p Packet) Verdict {
	c.mu.Lock()
	drop := c.rng.Float64() < c.Drop
	dup := c.rng.Float64() < c.Duplicate
	var delay time.Duration
	if c.rng.Float64() < c.Reorder && c.MaxDelay > 0 {
		delay = time.Duration(c.rng.Int64N(int64(c.MaxDelay))) + 1
	}
	c.mu.Unlock()
	c.Seen[p.Dir].Add(1)
	if drop {
		c.Dropped[p.Dir].Add(1)
		return Verdict{Drop: true}
	}
	v := Verdict{Delay: delay}
	if dup {
		v.Copies = 1
	}
	c.Sent[p.Dir].Add(uint64(1 + v.Copies))
	return v
}
