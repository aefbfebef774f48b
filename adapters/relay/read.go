package relay

import (
	"net"
	"sync"
)

var bufPool = sync.Pool{New: func() any { return new([maxDatagram]byte) }}

func getBuf() *[maxDatagram]byte  { return bufPool.Get().(*[maxDatagram]byte) }
func putBuf(b *[maxDatagram]byte) { bufPool.Put(b) }

// batch is the datagrams one read of an upstream socket returned, in
// pooled buffers.
type batch struct {
	bufs [8]*[maxDatagram]byte
	lens [8]int
	n    int
}

func (b *batch) datagram(i int) []byte { return b.bufs[i][:b.lens[i]] }

// release returns the buffers to the pool.
func (b *batch) release() {
	for i := range b.n {
		if b.bufs[i] != nil { // nil: taken by a sendQueue
			putBuf(b.bufs[i])
			b.bufs[i] = nil
		}
	}
	b.n = 0
}

// bufferedReader reads c one datagram at a time: for conns that are not
// sockets (tests) and systems without raw reads.
func bufferedReader(c net.Conn) func(*batch) error {
	return func(b *batch) error {
		buf := getBuf()
		n, err := c.Read(buf[:])
		if err != nil {
			putBuf(buf)
			return err
		}
		b.bufs[0], b.lens[0], b.n = buf, n, 1
		return nil
	}
}
