package relay

import (
	"net"
	"sync"
)

var bufPool = sync.Pool{New: func() any { return new([maxDatagram]byte) }}

func getBuf() *[maxDatagram]byte  { return bufPool.Get().(*[maxDatagram]byte) }
func putBuf(b *[maxDatagram]byte) { bufPool.Put(b) }

// bufferedReader reads c with a buffer of its own: for conns that are not
// sockets (tests) and systems without raw reads.
func bufferedReader(c net.Conn) func(handle func([]byte)) error {
	var buf []byte
	return func(handle func([]byte)) error {
		if buf == nil {
			buf = make([]byte, maxDatagram)
		}
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		handle(buf[:n])
		return nil
	}
}
