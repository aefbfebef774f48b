package strayfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/straydtls/straydtls/internal/udpio"
	"github.com/straydtls/straydtls/record"
)

// Batch is reusable state for ReadBatchAddrPort: buffers for up to len(Bufs)
// datagrams, and what a read fills in. It belongs to one reading goroutine.
type Batch struct {
	// Bufs are the datagram buffers. A read may reorder them (strays go to
	// the back), never replaces them.
	Bufs [][]byte
	// N[i] and Addrs[i] are the length and source of the datagram in Bufs[i]
	// for the first n entries after a read returned n.
	N     []int
	Addrs []netip.AddrPort

	trunc []bool // the kernel cut the datagram short: it fills its buffer
	// parsed[i] is the first record of Bufs[i] when the filter read it (a
	// quiet peer's datagram that passed), so the reader parses it no more.
	parsed []record.Parsed
	used   int         // parsed[used:] are not Done
	stripe uint8       // which of the Conn's pass counters this batch adds to
	recv   *udpio.Recv // nil where there is no recvmmsg
}

var batches atomic.Uint32

// NewBatch returns a Batch of n buffers of size bytes each.
func NewBatch(n, size int) *Batch {
	b := &Batch{Bufs: make([][]byte, n), N: make([]int, n), Addrs: make([]netip.AddrPort, n), trunc: make([]bool, n), parsed: make([]record.Parsed, n)}
	for i := range b.Bufs {
		b.Bufs[i] = make([]byte, size)
	}
	b.stripe = uint8(batches.Add(1) % passStripes)
	b.recv = udpio.NewRecv(n)
	return b
}

// ReadBatchAddrPort reads up to len(b.Bufs) datagrams with one recvmmsg on
// Linux and reports their sources as netip.AddrPort, allocating nothing,
// which ReadBatch (through x/net) cannot: it allocates a *net.UDPAddr per
// datagram. Strays are dropped in place as in ReadBatch. Elsewhere, and for
// conns that are not a *net.UDPConn, it reads one datagram per call; a
// wrapped conn whose source address is not an IP address and port cannot
// be read this way, and the read fails with errors.ErrUnsupported.
func (c *Conn) ReadBatchAddrPort(b *Batch) (int, error) {
	if len(b.Bufs) == 0 {
		return 0, nil
	}
	for {
		var n int
		var err error
		if c.udp != nil && b.recv.OK() {
			n, err = b.recv.Read(c.raw, b.Bufs, b.N, b.Addrs, b.trunc)
		} else {
			n, b.Addrs[0], err = c.readOneAddrPort(b.Bufs[0])
			b.N[0], b.trunc[0] = n, n >= len(b.Bufs[0])
			if err == nil {
				n = 1
			}
		}
		if err != nil {
			return 0, c.readErr(err)
		}
		b.resetParsed()
		if !c.table.Empty() {
			n = c.compactBatch(b, n)
		}
		if n > 0 {
			c.passed[b.stripe].n.Add(uint64(n))
			return n, nil
		}
	}
}

// Parsed returns the first record of datagram i of the last read as the
// filter parsed it: a quiet peer's datagram that passed (a new ClientHello)
// is parsed already, and a reader that looks at its record again through
// Parsed (record.Parsed.Record) parses it once, not twice. For any other
// datagram it holds nothing yet, and parses on first use; the next read
// forgets it.
func (b *Batch) Parsed(i int) *record.Parsed {
	b.used = max(b.used, i+1)
	return &b.parsed[i]
}

// resetParsed forgets the last read's records: those a filter judged or a
// reader asked for, so a reader that never asks pays a branch.
func (b *Batch) resetParsed() {
	for i := range b.used {
		b.parsed[i].Reset()
	}
	b.used = 0
}

// readOneAddrPort reads one datagram without filtering; the caller filters.
func (c *Conn) readOneAddrPort(p []byte) (int, netip.AddrPort, error) {
	if c.udp != nil {
		return c.udp.ReadFromUDPAddrPort(p)
	}
	n, addr, err := c.pc.ReadFrom(p)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	ap, ok := addrPort(addr)
	if !ok {
		return 0, ap, fmt.Errorf("strayfilter: ReadBatchAddrPort: source %v is not an IP address and port (use ReadFrom): %w", addr, errors.ErrUnsupported)
	}
	return n, ap, nil
}

func (c *Conn) compactBatch(b *Batch, n int) int {
	clock := batchClock{t: c.table}
	var drops batchDrops
	k := 0
	for i := range n {
		if !b.trunc[i] && clock.quiet(b.Addrs[i]) {
			b.used = n // compaction may move a parsed record to any of them
			if reason, drop := c.judge(b.Addrs[i], b.Bufs[i][:b.N[i]], &b.parsed[i]); drop {
				drops.count(b.Addrs[i], reason)
				continue
			}
		}
		if k != i {
			b.Bufs[k], b.Bufs[i] = b.Bufs[i], b.Bufs[k]
			b.N[k], b.Addrs[k], b.trunc[k] = b.N[i], b.Addrs[i], b.trunc[i]
			b.parsed[k], b.parsed[i] = b.parsed[i], b.parsed[k]
		}
		k++
	}
	c.addDrops(&drops)
	return k
}
